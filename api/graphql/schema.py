"""Seed 003's GraphQL API at /graphql (strawberry), over the same services as REST.

Queries `aiTask`, `aiTasks`, `taskQueueStatus`, `taskStatistics`, `pipeline`; mutations `createAITask`,
`createAITasksBatch`, `cancelAITask`, `retryAITask`, `createPipeline`; subscriptions `aiTaskStatusChanged` and
`taskQueueUpdated` over WebSockets (`graphql-transport-ws` and the legacy `graphql-ws` subprotocol).

Auth as everywhere else: `X-API-Key` or `Authorization: Bearer <JWT>` (with JWT_SECRET) on the request; for
WebSockets also `?api_key=` or the `connection_init` payload (`apiKey`, `X-API-Key`, `Authorization`,
`token`, or those inside `headers`). Service errors become GraphQL errors whose `extensions` carry the REST
error body: `code` (e.g. `task_not_found`), `status` (the HTTP status REST would answer), `details`, ...

Every document is bounded before it runs (depth, aliases, tokens: a 5 000-alias query is refused while it
is parsed); with ENVIRONMENT=production introspection and the GraphiQL page are off.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping

import strawberry
from graphql import GraphQLError
from starlette.requests import HTTPConnection
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.fastapi import GraphQLRouter
from strawberry.types import ExecutionContext
from strawberry.types.unset import UnsetType

from api.domain.caller import Caller
from api.domain.errors import AuthenticationFailed, ServiceError, status_and_code
from api.graphql.ide_assets import graphiql_html
from api.graphql.pipelines import (
    CreatedPipelineType,
    PipelineType,
    resolve_create_pipeline,
    resolve_pipeline,
)
from api.graphql.resolvers import (
    GraphQLContext,
    resolve_ai_task,
    resolve_ai_task_status_changed,
    resolve_ai_tasks,
    resolve_cancel_ai_task,
    resolve_create_ai_task,
    resolve_create_ai_tasks_batch,
    resolve_retry_ai_task,
    resolve_task_queue_status,
    resolve_task_queue_updated,
    resolve_task_statistics,
)
from api.graphql.types import AITask, AITaskBatchResult, AITaskPage, TaskQueueStatus, TaskStatistics
from api.runtime import Services
from api.service.bulk import MAX_BATCH


@strawberry.type
class Query:
    ai_task: AITask | None = strawberry.field(
        resolver=resolve_ai_task,
        name="aiTask",
        description="One task by ID (error task_not_found if unknown).",
    )
    ai_tasks: AITaskPage = strawberry.field(
        resolver=resolve_ai_tasks,
        name="aiTasks",
        description="Tasks newest first, served from Temporal visibility.",
    )
    task_queue_status: TaskQueueStatus = strawberry.field(
        resolver=resolve_task_queue_status,
        name="taskQueueStatus",
        description="Backlog, workers and capacity per queue, and task totals.",
    )
    task_statistics: TaskStatistics = strawberry.field(
        resolver=resolve_task_statistics,
        name="taskStatistics",
        description="Counts by type and status of the tasks created in a window (default: last 24 h).",
    )
    pipeline: PipelineType = strawberry.field(
        resolver=resolve_pipeline, description="One pipeline by ID (error pipeline_not_found if unknown)."
    )


@strawberry.type
class Mutation:
    create_ai_task: AITask = strawberry.mutation(
        resolver=resolve_create_ai_task,
        name="createAITask",
        description="Start a task; idempotencyKey behaves as REST's Idempotency-Key.",
    )
    create_ai_tasks_batch: AITaskBatchResult = strawberry.mutation(
        resolver=resolve_create_ai_tasks_batch,
        name="createAITasksBatch",
        description=f"Up to {MAX_BATCH} tasks; each one is created or fails on its own.",
    )
    cancel_ai_task: AITask = strawberry.mutation(
        resolver=resolve_cancel_ai_task,
        name="cancelAITask",
        description="Cancel (seed 001's state table) and return the task; finished ones: invalid_task_state.",
    )
    retry_ai_task: AITask = strawberry.mutation(
        resolver=resolve_retry_ai_task,
        name="retryAITask",
        description="A new task with the same inputs (finished tasks only); retryOf names the original.",
    )
    create_pipeline: CreatedPipelineType = strawberry.mutation(
        resolver=resolve_create_pipeline,
        name="createPipeline",
        description="Start a pipeline: steps are tasks, any taskData value may reference an earlier step.",
    )


@strawberry.type
class Subscription:
    ai_task_status_changed: AsyncGenerator[AITask, None] = strawberry.subscription(
        resolver=resolve_ai_task_status_changed,
        name="aiTaskStatusChanged",
        description="The task now and at every change (status, progress, step, attempt); ends once finished.",
    )
    task_queue_updated: AsyncGenerator[TaskQueueStatus, None] = strawberry.subscription(
        resolver=resolve_task_queue_updated,
        name="taskQueueUpdated",
        description="The queue status now and whenever it changes.",
    )


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Service errors are answers, not faults: log only what escaped as an unexpected exception.
        unexpected = [
            e
            for e in errors
            if e.original_error is not None and not isinstance(e.original_error, GraphQLError)
        ]
        if unexpected:
            super().process_errors(unexpected, execution_context)


# The deepest document the schema needs is ~5 levels; a batch of MAX_BATCH inline tasks ~2 000 tokens.
MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 5_000


def build_schema(*, production: bool) -> strawberry.Schema:
    """The schema with its limits; production also hides it from introspection."""
    # Factories: strawberry builds fresh extensions per request.
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
    ]
    if production:
        extensions.append(DisableIntrospection)
    return _Schema(query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions)


schema = build_schema(production=False)


# --- the router --------------------------------------------------------------------------------------


class TaskGraphQLRouter(GraphQLRouter[GraphQLContext, None]):
    @property
    def graphql_ide_html(self) -> str:
        # Strawberry's page loads GraphiQL from a CDN; ours from the API itself (offline, like /docs).
        return graphiql_html()

    async def on_ws_connect(self, context: GraphQLContext) -> UnsetType | dict[str, object] | None:
        params = context.connection_params
        if isinstance(params, Mapping):
            try:
                caller = context.services.auth.from_params(params)
            except ServiceError as err:
                raise ConnectionRejectionError(
                    {"message": err.message, "code": status_and_code(err)[1]}
                ) from None
            if caller is not None:
                context.caller, context.auth_error = caller, None
        if context.caller is None:
            failure = context.auth_error or AuthenticationFailed("Invalid or missing API key")
            raise ConnectionRejectionError({"message": failure.message, "code": status_and_code(failure)[1]})
        return None


def graphql_router(services: Services) -> GraphQLRouter[GraphQLContext, None]:
    """The /graphql router (GraphiQL on GET from a browser outside production; POST/GET queries; WebSocket
    subscriptions)."""

    async def get_context(connection: HTTPConnection) -> GraphQLContext:
        api_key = connection.headers.get("x-api-key") or connection.query_params.get("api_key")
        authorization = connection.headers.get("authorization")
        try:
            caller: Caller | None = services.auth.authenticate(api_key, authorization)
            error: ServiceError | None = None
        except ServiceError as err:
            caller, error = None, err
        is_http = connection.scope["type"] == "http"
        wants_ide = (
            is_http
            and connection.scope.get("method") == "GET"
            and "query" not in connection.query_params
            and "text/html" in connection.headers.get("accept", "")
        )
        if error is not None and is_http and not wants_ide:
            # 401 with the REST error body, before any GraphQL runs.
            raise error
        return GraphQLContext(services, caller, error)

    production = services.settings.environment == "production"
    return TaskGraphQLRouter(
        build_schema(production=production),
        path="/graphql",
        graphql_ide=None if production else "graphiql",
        context_getter=get_context,
        # Credentials are explicit (key or token), never cookies, so any origin may open a socket.
        allowed_origins=("*",),
        # GraphQL describes itself (introspection, GraphiQL); the OpenAPI document is the REST contract.
        include_in_schema=False,
    )
