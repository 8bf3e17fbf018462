"""Seed 003's GraphQL API at /graphql (strawberry), over the same TaskService and Temporal state as REST.

Queries `aiTask`, `aiTasks`, `taskQueueStatus`, `taskStatistics`; mutations `createAITask`,
`createAITasksBatch`, `cancelAITask`, `retryAITask`; subscriptions `aiTaskStatusChanged` and
`taskQueueUpdated` over WebSockets (`graphql-transport-ws` and the legacy `graphql-ws` subprotocol).

Auth as everywhere else: `X-API-Key` or `Authorization: Bearer <JWT>` (with JWT_SECRET) on the request; for
WebSockets also `?api_key=` or the `connection_init` payload (`apiKey`, `X-API-Key`, `Authorization`,
`token`, or those inside `headers`). Service errors become GraphQL errors whose `extensions` carry the REST
error body: `code` (e.g. `task_not_found`), `status` (the HTTP status REST would answer), `details`, ...
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Annotated, Any, Literal

import strawberry
from graphql import GraphQLError
from pydantic import ValidationError
from starlette.requests import HTTPConnection
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.scalars import JSON
from strawberry.types import ExecutionContext
from strawberry.types.unset import UnsetType
from temporalio.service import RPCError, RPCStatusCode

from api.caller import Caller
from api.deps import Services, authenticate_credentials
from api.errors import AuthenticationFailed, RateLimited, ServiceError, ServiceUnavailable, ValidationFailed
from api.events import QUEUE_POLL_S, watch_task
from api.schemas import SubmitTaskRequest
from api.service import Submitted, TaskService
from api.taskstore import TaskStore, TaskView, filter_query, status_query
from api.validation import pydantic_details
from taskservice.catalog import CATALOG
from taskservice.contracts import TaskStatus
from taskservice.queues import Queue
from taskservice.settings import Settings

log = logging.getLogger("taskservice.api")

UNAVAILABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}
MAX_PAGE_SIZE = 100
MAX_BATCH = 100
BATCH_PARALLELISM = 8
DEFAULT_STATISTICS_WINDOW_H = 24.0
# A queue whose waiting tasks exceed this many times its running capacity reads as `warning`.
BACKLOG_WARNING_FACTOR = 10


# --- enums and types ---------------------------------------------------------------------------------


@strawberry.enum(name="AITaskStatus", description="Where a task is, as read from Temporal.")
class AITaskStatus(Enum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @classmethod
    def of(cls, status: TaskStatus) -> AITaskStatus:
        return cls[status.name]

    def to_status(self) -> TaskStatus:
        return TaskStatus[self.name]


@strawberry.enum(name="AITaskPriority", description="Temporal task priority (URGENT runs first).")
class AITaskPriority(Enum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    URGENT = "URGENT"


@strawberry.type(name="AITask", description="A task (one Temporal workflow).")
class AITask:
    id: strawberry.ID
    project_id: str
    agent_id: str = strawberry.field(description="Seed 003's agentId: the task's project.")
    task_type: str
    status: AITaskStatus
    priority: AITaskPriority
    progress: float = strawberry.field(description="0 to 1, from the activity's heartbeats.")
    current_step: str | None
    input_data: JSON = strawberry.field(description="The task's inputs (`task_data`).")
    result: JSON | None
    output_data: JSON | None = strawberry.field(description="Same as `result` (seed 003's name).")
    error: str | None
    metadata: JSON
    callback_url: str | None
    queue: str
    attempt: int
    retry_of: strawberry.ID | None
    estimated_duration: int = strawberry.field(description="Typical run time of the type, seconds.")
    queue_position: int | None = strawberry.field(description="Set on the answer of a create mutation.")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    processing_time: float | None = strawberry.field(description="Seconds.")


@strawberry.type(name="AITaskPage")
class AITaskPage:
    items: list[AITask]
    total: int
    page: int
    limit: int
    total_pages: int
    has_more: bool


@strawberry.type(name="AITaskError", description="Why one item of a batch was not created.")
class AITaskError:
    code: str
    message: str
    status: int
    details: JSON | None


@strawberry.type(name="AITaskBatchItem")
class AITaskBatchItem:
    index: int
    success: bool
    task: AITask | None
    error: AITaskError | None


@strawberry.type(name="AITaskBatchResult")
class AITaskBatchResult:
    created: int
    failed: int
    tasks: list[AITask] = strawberry.field(description="The created tasks, in input order.")
    results: list[AITaskBatchItem] = strawberry.field(description="One per input, in input order.")


@strawberry.type(name="QueueInfo", description="One Temporal task queue.")
class QueueInfo:
    name: str
    backlog: int = strawberry.field(description="Temporal's approximate backlog of the task queue.")
    queued_tasks: int
    processing_tasks: int
    pollers: list[str]
    worker_count: int
    configured_concurrency: int = strawberry.field(description="Parallel tasks per worker.")
    capacity: int = strawberry.field(description="worker_count × configured_concurrency.")
    task_types: list[str]
    health: str = strawberry.field(description="healthy, warning or critical.")


@strawberry.type(name="TaskQueueStatus")
class TaskQueueStatus:
    queued_tasks: int
    processing_tasks: int
    completed_tasks: int = strawberry.field(description="Cumulative (survives the retention window).")
    failed_tasks: int = strawberry.field(description="Cumulative.")
    cancelled_tasks: int = strawberry.field(description="Cumulative.")
    retried_tasks: int = strawberry.field(description="Cumulative.")
    worker_count: int
    queue_health: str = strawberry.field(description="healthy, warning or critical (worst queue).")
    queues: list[QueueInfo]
    timestamp: datetime


@strawberry.type(name="StatusCount")
class StatusCount:
    status: AITaskStatus
    count: int


@strawberry.type(name="TaskTypeStatistics")
class TaskTypeStatistics:
    task_type: str
    total: int
    queued: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    success_rate: float = strawberry.field(description="Percent of finished tasks that completed.")


@strawberry.type(name="TaskStatistics", description="Tasks created in the window, counted in Temporal.")
class TaskStatistics:
    total_tasks: int
    queued_tasks: int
    processing_tasks: int
    completed_tasks: int
    failed_tasks: int
    cancelled_tasks: int
    success_rate: float = strawberry.field(description="Percent of finished tasks that completed.")
    failure_rate: float = strawberry.field(description="Percent of finished tasks that failed.")
    by_status: list[StatusCount]
    by_type: list[TaskTypeStatistics]
    since: datetime
    until: datetime | None
    window_hours: float


# --- inputs ------------------------------------------------------------------------------------------


@strawberry.input(name="CreateAITaskInput")
class CreateAITaskInput:
    task_type: str
    project_id: str | None = strawberry.field(default=None, description="Required unless agentId is given.")
    agent_id: str | None = strawberry.field(default=None, description="Seed 003: used as the project.")
    input_data: JSON | None = strawberry.field(default=None, description="The task type's inputs.")
    task_data: JSON | None = strawberry.field(default=None, description="Same as inputData (seed 001).")
    priority: AITaskPriority = AITaskPriority.NORMAL
    callback_url: str | None = None
    metadata: JSON | None = None
    estimated_cost: float | None = strawberry.field(default=None, description="Kept in metadata.")
    workflow_step_id: str | None = strawberry.field(default=None, description="Kept in metadata.")


@strawberry.input(name="AITaskFilter")
class AITaskFilter:
    project_id: str | None = None
    agent_id: str | None = strawberry.field(default=None, description="Same as projectId.")
    status: AITaskStatus | None = None
    task_type: str | None = None
    mine: bool = strawberry.field(default=False, description="Only tasks created with the caller's key.")


@strawberry.input(name="PaginationInput")
class PaginationInput:
    page: int = 1
    limit: int = 20


@strawberry.input(name="TaskStatisticsFilter")
class TaskStatisticsFilter:
    project_id: str | None = None
    agent_id: str | None = strawberry.field(default=None, description="Same as projectId.")
    task_type: str | None = None
    start_date: datetime | None = strawberry.field(default=None, description="Default: windowHours ago.")
    end_date: datetime | None = None
    window_hours: float | None = strawberry.field(default=None, description="Default 24.")


# --- context, auth and errors ------------------------------------------------------------------------


class GraphQLContext(BaseContext):
    def __init__(self, services: Services, caller: Caller | None, auth_error: ServiceError | None) -> None:
        super().__init__()
        self.services = services
        self.caller = caller
        self.auth_error = auth_error


Info = strawberry.Info[GraphQLContext, None]


def graphql_error(err: ServiceError) -> GraphQLError:
    return GraphQLError(err.message, extensions={"code": err.error, "status": err.status_code, **err.extra})


def _translate(err: ServiceError | RPCError) -> ServiceError:
    if isinstance(err, ServiceError):
        return err
    if err.status in UNAVAILABLE:
        return ServiceUnavailable("Temporal is unreachable or overloaded; try again shortly")
    log.error("Temporal call failed", extra={"status": err.status.name, "error": err.message})
    return ServiceError("Temporal call failed")


@contextmanager
def service_errors() -> Iterator[None]:
    """ServiceError (and Temporal's RPCError) → a GraphQL error with the REST error body in `extensions`."""
    try:
        yield
    except (ServiceError, RPCError) as err:
        raise graphql_error(_translate(err)) from None


def _authorize(info: Info, quota: Literal["read", "submit"]) -> Caller:
    context = info.context
    if context.caller is None:
        raise graphql_error(context.auth_error or AuthenticationFailed("Invalid or missing API key"))
    services = context.services
    limiter = services.submit_limiter if quota == "submit" else services.status_limiter
    wait = limiter.acquire(context.caller.key_id)
    if wait is not None:
        limit = (
            services.settings.rate_limit_submit_per_min
            if quota == "submit"
            else services.settings.rate_limit_status_per_min
        )
        raise graphql_error(RateLimited(f"{quota.title()} rate limit of {limit} per minute exceeded", wait))
    return context.caller


def _store(info: Info) -> TaskStore:
    with service_errors():
        return info.context.services.store()


def _task_service(info: Info) -> TaskService:
    return TaskService(_store(info), info.context.services.settings)


# --- conversions -------------------------------------------------------------------------------------


def ai_task(view: TaskView, queue_position: int | None = None) -> AITask:
    spec = CATALOG.get(view.task_type)
    return AITask(
        id=strawberry.ID(view.task_id),
        project_id=view.project_id,
        agent_id=view.project_id,
        task_type=view.task_type,
        status=AITaskStatus.of(view.status),
        priority=AITaskPriority[view.priority.value],
        progress=view.progress,
        current_step=view.current_step,
        input_data=JSON(view.task_data),
        result=JSON(view.result) if view.result is not None else None,
        output_data=JSON(view.result) if view.result is not None else None,
        error=view.error,
        metadata=JSON(view.metadata),
        callback_url=view.callback_url,
        queue=view.queue,
        attempt=view.attempt,
        retry_of=strawberry.ID(view.retry_of) if view.retry_of else None,
        estimated_duration=spec.estimated_duration_s if spec else 0,
        queue_position=queue_position,
        created_at=view.created_at,
        updated_at=view.updated_at,
        started_at=view.started_at,
        completed_at=view.completed_at,
        processing_time=view.processing_time,
    )


def _submitted(submitted: Submitted) -> AITask:
    return ai_task(submitted.view, queue_position=submitted.queue_position)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_json(value: Any) -> Any:
    """A GraphQL object as its JSON (camelCase keys, enum names, ISO-8601 times): Socket.IO payloads."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def _check_task_type(task_type: str | None, field: str = "taskType") -> None:
    if task_type is not None and task_type not in CATALOG:
        raise ValidationFailed(
            {field: f"Unknown task type '{task_type}'; expected one of: {', '.join(CATALOG)}"},
            message="Invalid arguments",
        )


def submit_request(item: CreateAITaskInput) -> SubmitTaskRequest:
    """Seed 003's input (agentId, inputData, estimatedCost, ...) as the service's submit body."""
    project_id = item.project_id or item.agent_id
    if not project_id:
        raise ValidationFailed({"projectId": "projectId (or agentId) is required"}, message="Invalid request")
    task_data: object = item.task_data if item.task_data is not None else item.input_data
    if task_data is None:
        task_data = {}
    if not isinstance(task_data, dict):
        raise ValidationFailed({"inputData": "inputData must be an object"}, message="Invalid request")
    metadata: object = item.metadata if item.metadata is not None else {}
    if not isinstance(metadata, dict):
        raise ValidationFailed({"metadata": "metadata must be an object"}, message="Invalid request")
    extra = {
        "agentId": item.agent_id,
        "estimatedCost": item.estimated_cost,
        "workflowStepId": item.workflow_step_id,
    }
    metadata = {**metadata, **{k: v for k, v in extra.items() if v is not None}}
    try:
        return SubmitTaskRequest.model_validate(
            {
                "project_id": project_id,
                "task_type": item.task_type,
                "task_data": task_data,
                "priority": item.priority.value,
                "callback_url": item.callback_url,
                "metadata": metadata,
            }
        )
    except ValidationError as err:
        raise ValidationFailed(pydantic_details(err), message="Invalid request") from None


def _z(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


# --- queue status and statistics (also used by Socket.IO) --------------------------------------------


def _queue_health(queued: int, workers: int, capacity: int) -> str:
    if workers == 0:
        return "critical" if queued else "warning"
    if queued > BACKLOG_WARNING_FACTOR * capacity:
        return "warning"
    return "healthy"


async def queue_status(store: TaskStore, settings: Settings) -> TaskQueueStatus:
    """Per queue: Temporal's backlog and live pollers, and task counts from visibility; totals."""
    types = {q: [s.name for s in CATALOG.values() if s.queue == q] for q in Queue}

    async def counts(queue: Queue) -> tuple[int, int]:
        in_types = "TaskType IN (" + ", ".join(f'"{t}"' for t in types[queue]) + ")"
        queued, running = await asyncio.gather(
            store.count(f"{in_types} AND {status_query(TaskStatus.QUEUED)}"),
            store.count(f"{in_types} AND {status_query(TaskStatus.PROCESSING)}"),
        )
        return queued, running

    states, metrics, per_queue = await asyncio.gather(
        store.all_queue_states(), store.metrics_state(), asyncio.gather(*(counts(q) for q in Queue))
    )
    queues = []
    for queue, (queued, running) in zip(Queue, per_queue, strict=True):
        state = states[queue.value]
        concurrency = settings.worker_concurrency(queue)
        workers = len(state.pollers)
        queues.append(
            QueueInfo(
                name=queue.value,
                backlog=state.backlog,
                queued_tasks=queued,
                processing_tasks=running,
                pollers=sorted(state.pollers),
                worker_count=workers,
                configured_concurrency=concurrency,
                capacity=workers * concurrency,
                task_types=types[queue],
                health=_queue_health(max(queued, state.backlog), workers, workers * concurrency),
            )
        )
    order = ["healthy", "warning", "critical"]
    return TaskQueueStatus(
        queued_tasks=sum(q.queued_tasks for q in queues),
        processing_tasks=sum(q.processing_tasks for q in queues),
        completed_tasks=metrics.completed,
        failed_tasks=metrics.failed,
        cancelled_tasks=metrics.cancelled,
        retried_tasks=metrics.retried,
        worker_count=sum(q.worker_count for q in queues),
        queue_health=max((q.health for q in queues), key=order.index),
        queues=queues,
        timestamp=datetime.now(UTC),
    )


def queue_fingerprint(status: TaskQueueStatus) -> Any:
    data = to_json(status)
    data.pop("timestamp", None)
    return data


async def watch_queue_status(
    store: TaskStore, settings: Settings, *, interval: float = QUEUE_POLL_S, last: Any = None
) -> AsyncGenerator[TaskQueueStatus, None]:
    """Yield the queue status now (unless it equals `last`) and whenever it changes, polling Temporal."""
    while True:
        status = await queue_status(store, settings)
        fingerprint = queue_fingerprint(status)
        if fingerprint != last:
            last = fingerprint
            yield status
        await asyncio.sleep(interval)


async def task_statistics(store: TaskStore, flt: TaskStatisticsFilter | None) -> TaskStatistics:
    flt = flt or TaskStatisticsFilter()
    _check_task_type(flt.task_type, "filter.taskType")
    now = datetime.now(UTC)
    hours = flt.window_hours
    if hours is not None and (not math.isfinite(hours) or hours <= 0):
        raise ValidationFailed({"filter.windowHours": "must be greater than 0"}, message="Invalid arguments")
    if flt.start_date is not None:
        since = flt.start_date if flt.start_date.tzinfo else flt.start_date.replace(tzinfo=UTC)
    else:
        since = now - timedelta(hours=hours or DEFAULT_STATISTICS_WINDOW_H)
    clauses = [f'StartTime >= "{_z(since)}"']
    if flt.end_date is not None:
        clauses.append(f'StartTime < "{_z(flt.end_date)}"')
    project = flt.project_id or flt.agent_id
    if project is not None:
        clauses.append(filter_query(project_id=project))
    window = " AND ".join(clauses)
    task_types = [flt.task_type] if flt.task_type else list(CATALOG)
    pairs = [(t, s) for t in task_types for s in TaskStatus]
    counts = await asyncio.gather(
        *(store.count(f"{window} AND {filter_query(task_type=t)} AND {status_query(s)}") for t, s in pairs)
    )
    table: dict[str, dict[TaskStatus, int]] = {t: dict.fromkeys(TaskStatus, 0) for t in task_types}
    for (task_type, status), count in zip(pairs, counts, strict=True):
        table[task_type][status] = count
    totals = {s: sum(row[s] for row in table.values()) for s in TaskStatus}
    finished = totals[TaskStatus.COMPLETED] + totals[TaskStatus.FAILED] + totals[TaskStatus.CANCELLED]
    by_type = []
    for task_type, row in table.items():
        total = sum(row.values())
        if not total and flt.task_type is None:
            continue
        done = row[TaskStatus.COMPLETED] + row[TaskStatus.FAILED] + row[TaskStatus.CANCELLED]
        by_type.append(
            TaskTypeStatistics(
                task_type=task_type,
                total=total,
                queued=row[TaskStatus.QUEUED],
                processing=row[TaskStatus.PROCESSING],
                completed=row[TaskStatus.COMPLETED],
                failed=row[TaskStatus.FAILED],
                cancelled=row[TaskStatus.CANCELLED],
                success_rate=_percent(row[TaskStatus.COMPLETED], done),
            )
        )
    until = flt.end_date
    return TaskStatistics(
        total_tasks=sum(totals.values()),
        queued_tasks=totals[TaskStatus.QUEUED],
        processing_tasks=totals[TaskStatus.PROCESSING],
        completed_tasks=totals[TaskStatus.COMPLETED],
        failed_tasks=totals[TaskStatus.FAILED],
        cancelled_tasks=totals[TaskStatus.CANCELLED],
        success_rate=_percent(totals[TaskStatus.COMPLETED], finished),
        failure_rate=_percent(totals[TaskStatus.FAILED], finished),
        by_status=[StatusCount(status=AITaskStatus.of(s), count=totals[s]) for s in TaskStatus],
        by_type=by_type,
        since=since,
        until=until if until is None or until.tzinfo else until.replace(tzinfo=UTC),
        window_hours=round(((until or now) - since).total_seconds() / 3600, 3),
    )


# --- resolvers ---------------------------------------------------------------------------------------

TaskIdArg = Annotated[strawberry.ID, strawberry.argument(name="id")]


async def resolve_ai_task(info: Info, task_id: TaskIdArg) -> AITask | None:
    _authorize(info, "read")
    store = _store(info)
    with service_errors():
        return ai_task(await store.get(task_id))


async def resolve_ai_tasks(
    info: Info,
    flt: Annotated[AITaskFilter | None, strawberry.argument(name="filter")] = None,
    pagination: PaginationInput | None = None,
) -> AITaskPage:
    caller = _authorize(info, "read")
    store = _store(info)
    flt = flt or AITaskFilter()
    page = pagination or PaginationInput()
    with service_errors():
        if page.page < 1 or not 1 <= page.limit <= MAX_PAGE_SIZE:
            raise ValidationFailed(
                {"pagination": f"page must be ≥ 1 and limit between 1 and {MAX_PAGE_SIZE}"},
                message="Invalid arguments",
            )
        _check_task_type(flt.task_type, "filter.taskType")
        clauses = ["TaskType IS NOT NULL"]
        equals = filter_query(
            project_id=flt.project_id or flt.agent_id,
            task_type=flt.task_type,
            owner=caller.key_id if flt.mine else None,
        )
        if equals:
            clauses.append(equals)
        if flt.status is not None:
            clauses.append(status_query(flt.status.to_status()))
        views, total = await store.list_tasks(" AND ".join(clauses), page=page.page, limit=page.limit)
    return AITaskPage(
        items=[ai_task(v) for v in views],
        total=total,
        page=page.page,
        limit=page.limit,
        total_pages=math.ceil(total / page.limit),
        has_more=page.page * page.limit < total,
    )


async def resolve_task_queue_status(info: Info) -> TaskQueueStatus:
    _authorize(info, "read")
    store = _store(info)
    with service_errors():
        return await queue_status(store, info.context.services.settings)


async def resolve_task_statistics(
    info: Info, flt: Annotated[TaskStatisticsFilter | None, strawberry.argument(name="filter")] = None
) -> TaskStatistics:
    _authorize(info, "read")
    store = _store(info)
    with service_errors():
        return await task_statistics(store, flt)


async def resolve_create_ai_task(
    info: Info, input: CreateAITaskInput, idempotency_key: str | None = None
) -> AITask:
    caller = _authorize(info, "submit")
    tasks = _task_service(info)
    with service_errors():
        return _submitted(await tasks.submit(caller, submit_request(input), idempotency_key))


async def resolve_create_ai_tasks_batch(info: Info, inputs: list[CreateAITaskInput]) -> AITaskBatchResult:
    caller = _authorize(info, "submit")
    tasks = _task_service(info)
    if not 1 <= len(inputs) <= MAX_BATCH:
        raise graphql_error(
            ValidationFailed({"inputs": f"give 1 to {MAX_BATCH} tasks"}, message="Invalid arguments")
        )
    gate = asyncio.Semaphore(BATCH_PARALLELISM)

    async def one(index: int, item: CreateAITaskInput) -> AITaskBatchItem:
        async with gate:
            try:
                submitted = await tasks.submit(caller, submit_request(item))
            except (ServiceError, RPCError) as err:
                failure = _translate(err)
                details = failure.extra.get("details")
                error = AITaskError(
                    code=failure.error,
                    message=failure.message,
                    status=failure.status_code,
                    details=JSON(details) if details is not None else None,
                )
                return AITaskBatchItem(index=index, success=False, task=None, error=error)
        return AITaskBatchItem(index=index, success=True, task=_submitted(submitted), error=None)

    results = await asyncio.gather(*(one(i, item) for i, item in enumerate(inputs)))
    created = [r.task for r in results if r.task is not None]
    return AITaskBatchResult(
        created=len(created), failed=len(results) - len(created), tasks=created, results=list(results)
    )


async def resolve_cancel_ai_task(info: Info, task_id: TaskIdArg) -> AITask:
    _authorize(info, "read")
    tasks = _task_service(info)
    with service_errors():
        return ai_task((await tasks.cancel(task_id)).after)


async def resolve_retry_ai_task(info: Info, task_id: TaskIdArg) -> AITask:
    caller = _authorize(info, "submit")
    tasks = _task_service(info)
    with service_errors():
        return ai_task(await tasks.retry(caller, task_id))


async def resolve_ai_task_status_changed(info: Info, task_id: strawberry.ID) -> AsyncGenerator[AITask, None]:
    _authorize(info, "read")
    store = _store(info)
    with service_errors():
        async for view in watch_task(store, task_id):
            yield ai_task(view)


async def resolve_task_queue_updated(info: Info) -> AsyncGenerator[TaskQueueStatus, None]:
    _authorize(info, "read")
    store = _store(info)
    with service_errors():
        async for status in watch_queue_status(store, info.context.services.settings):
            yield status


# --- root types --------------------------------------------------------------------------------------


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


schema = _Schema(query=Query, mutation=Mutation, subscription=Subscription)


# --- the router --------------------------------------------------------------------------------------


def credentials_caller(services: Services, params: Mapping[str, Any]) -> Caller | None:
    """The caller named by a connection_init payload or a Socket.IO auth dict (`apiKey`, `X-API-Key`,
    `Authorization`, `token` (a JWT, else tried as an API key), also inside `headers`); None if it names
    none; AuthenticationFailed if the credentials are wrong."""
    lowered = {str(k).lower(): v for k, v in params.items()}
    headers = lowered.get("headers")
    if isinstance(headers, Mapping):
        lowered = {**{str(k).lower(): v for k, v in headers.items()}, **lowered}

    def text(*names: str) -> str | None:
        return next((v for k in names if isinstance(v := lowered.get(k), str) and v), None)

    api_key, authorization, token = (
        text("x-api-key", "apikey", "api_key"),
        text("authorization"),
        text("token"),
    )
    if api_key or authorization:
        return authenticate_credentials(services, api_key, authorization)
    if token:
        try:
            return authenticate_credentials(services, None, f"Bearer {token}")
        except AuthenticationFailed:
            return authenticate_credentials(services, token, None)
    return None


class TaskGraphQLRouter(GraphQLRouter[GraphQLContext, None]):
    async def on_ws_connect(self, context: GraphQLContext) -> UnsetType | dict[str, object] | None:
        params = context.connection_params
        if isinstance(params, Mapping):
            try:
                caller = credentials_caller(context.services, params)
            except ServiceError as err:
                raise ConnectionRejectionError({"message": err.message, "code": err.error}) from None
            if caller is not None:
                context.caller, context.auth_error = caller, None
        if context.caller is None:
            failure = context.auth_error or AuthenticationFailed("Invalid or missing API key")
            raise ConnectionRejectionError({"message": failure.message, "code": failure.error})
        return None


def graphql_router(services: Services) -> GraphQLRouter[GraphQLContext, None]:
    """The /graphql router (GraphiQL on GET from a browser; POST/GET queries; WebSocket subscriptions)."""

    async def get_context(connection: HTTPConnection) -> GraphQLContext:
        api_key = connection.headers.get("x-api-key") or connection.query_params.get("api_key")
        authorization = connection.headers.get("authorization")
        try:
            caller: Caller | None = authenticate_credentials(services, api_key, authorization)
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

    return TaskGraphQLRouter(
        schema,
        path="/graphql",
        context_getter=get_context,
        # Credentials are explicit (key or token), never cookies, so any origin may open a socket.
        allowed_origins=("*",),
        # GraphQL describes itself (introspection, GraphiQL); the OpenAPI document is the REST contract.
        include_in_schema=False,
    )
