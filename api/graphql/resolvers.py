"""GraphQL resolvers: parse the arguments, call the service, render its answer."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import strawberry
from graphql import GraphQLError
from strawberry.fastapi import BaseContext
from strawberry.scalars import JSON
from temporalio.service import RPCError

from api.domain.caller import Caller
from api.domain.commands import StartTask
from api.domain.errors import AuthenticationFailed, ServiceError, error_body, from_temporal, status_and_code
from api.graphql import inputs as parse
from api.graphql.inputs import AITaskFilter, CreateAITaskInput, PaginationInput, TaskStatisticsFilter
from api.graphql.types import (
    AITask,
    AITaskBatchItem,
    AITaskBatchResult,
    AITaskError,
    AITaskPage,
    TaskQueueStatus,
    TaskStatistics,
    ai_task,
    queue_status,
    submitted_task,
    task_statistics,
)
from api.runtime import Services
from api.service.bulk import BatchItem


class GraphQLContext(BaseContext):
    def __init__(self, services: Services, caller: Caller | None, auth_error: ServiceError | None) -> None:
        super().__init__()
        self.services = services
        self.caller = caller
        self.auth_error = auth_error


Info = strawberry.Info[GraphQLContext, None]
TaskIdArg = Annotated[strawberry.ID, strawberry.argument(name="id")]


def graphql_error(err: ServiceError) -> GraphQLError:
    """The REST error body and status in `extensions` (`code` is the body's `error`)."""
    body = error_body(err)
    code = body.pop("error")
    body.pop("message")
    return GraphQLError(err.message, extensions={"code": code, "status": status_and_code(err)[0], **body})


@contextmanager
def service_errors() -> Iterator[None]:
    """ServiceError (and Temporal's RPCError) → a GraphQL error with the REST error body in `extensions`."""
    try:
        yield
    except ServiceError as err:
        raise graphql_error(err) from None
    except RPCError as err:
        raise graphql_error(from_temporal(err)) from None


def caller_of(info: Info) -> Caller:
    context = info.context
    if context.caller is None:
        raise graphql_error(context.auth_error or AuthenticationFailed("Invalid or missing API key"))
    return context.caller


async def resolve_ai_task(info: Info, task_id: TaskIdArg) -> AITask | None:
    caller = caller_of(info)
    with service_errors():
        tasks = info.context.services.tasks()
        view = await tasks.get(caller, task_id)
        return ai_task(view, estimate=await tasks.estimate(view))


async def resolve_ai_tasks(
    info: Info,
    flt: Annotated[AITaskFilter | None, strawberry.argument(name="filter")] = None,
    pagination: PaginationInput | None = None,
) -> AITaskPage:
    caller = caller_of(info)
    with service_errors():
        page = parse.page_of(pagination)
        views, total = await info.context.services.tasks().list_tasks(
            caller,
            parse.task_filter(flt),
            page=page.page,
            limit=page.limit,
            task_type_field="filter.taskType",
            message="Invalid arguments",
        )
    return AITaskPage(
        items=[ai_task(v) for v in views],
        total=total,
        page=page.page,
        limit=page.limit,
        total_pages=math.ceil(total / page.limit),
        has_more=page.page * page.limit < total,
    )


async def resolve_task_queue_status(info: Info) -> TaskQueueStatus:
    caller = caller_of(info)
    with service_errors():
        return queue_status(await info.context.services.insights().queues(caller))


async def resolve_task_statistics(
    info: Info, flt: Annotated[TaskStatisticsFilter | None, strawberry.argument(name="filter")] = None
) -> TaskStatistics:
    caller = caller_of(info)
    flt = flt or TaskStatisticsFilter()
    now = datetime.now(UTC)
    with service_errors():
        since, until = parse.statistics_window(flt, now)
        stats = await info.context.services.insights().statistics(
            caller,
            since,
            until,
            project_id=flt.project_id or flt.agent_id,
            task_type=flt.task_type,
            task_type_field="filter.taskType",
        )
    return task_statistics(stats, one_type=flt.task_type is not None, now=now)


async def resolve_create_ai_task(
    info: Info, input: CreateAITaskInput, idempotency_key: str | None = None
) -> AITask:
    caller = caller_of(info)
    with service_errors():
        command = parse.start_task(caller, input, idempotency_key)
        return submitted_task(await info.context.services.tasks().submit(caller, command))


def _parsed(caller: Caller, item: CreateAITaskInput) -> StartTask | ServiceError:
    """A batch item's task, or why it has none (reported in its place)."""
    try:
        return parse.start_task(caller, item)
    except ServiceError as err:
        return err


def _batch_item(item: BatchItem) -> AITaskBatchItem:
    if item.submitted is not None:
        return AITaskBatchItem(
            index=item.index, success=True, task=submitted_task(item.submitted), error=None
        )
    assert item.error is not None
    details = item.error.extra.get("details")
    status, code = status_and_code(item.error)
    error = AITaskError(
        code=code,
        message=item.error.message,
        status=status,
        details=JSON(details) if details is not None else None,
    )
    return AITaskBatchItem(index=item.index, success=False, task=None, error=error)


async def resolve_create_ai_tasks_batch(info: Info, inputs: list[CreateAITaskInput]) -> AITaskBatchResult:
    caller = caller_of(info)
    with service_errors():
        items = await info.context.services.bulk().submit_batch(
            caller, [_parsed(caller, i) for i in inputs], items_field="inputs"
        )
    results = [_batch_item(item) for item in items]
    created = [r.task for r in results if r.task is not None]
    return AITaskBatchResult(
        created=len(created), failed=len(results) - len(created), tasks=created, results=results
    )


async def resolve_cancel_ai_task(info: Info, task_id: TaskIdArg) -> AITask:
    caller = caller_of(info)
    with service_errors():
        return ai_task((await info.context.services.tasks().cancel(caller, task_id)).after)


async def resolve_retry_ai_task(info: Info, task_id: TaskIdArg) -> AITask:
    caller = caller_of(info)
    with service_errors():
        return ai_task(await info.context.services.tasks().retry(caller, task_id))


async def resolve_ai_task_status_changed(info: Info, task_id: strawberry.ID) -> AsyncGenerator[AITask, None]:
    caller = caller_of(info)
    with service_errors():
        async for view in await info.context.services.tasks().watch(caller, task_id):
            yield ai_task(view)


async def resolve_task_queue_updated(info: Info) -> AsyncGenerator[TaskQueueStatus, None]:
    caller = caller_of(info)
    with service_errors():
        async for overview in info.context.services.insights().queue_changes(caller):
            yield queue_status(overview)
