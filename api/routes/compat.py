"""Surfaces of the sibling task systems (seeds 002-004), on the same Temporal-backed state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import ValidationError

from api.deps import CallerDep, ReadCaller, StoreDep, SubmitCaller, TaskServiceDep
from api.errors import Forbidden, ServiceError, ValidationFailed
from api.routes.tasks import submit_response
from api.schemas import (
    PROJECT_ID_PATTERN,
    BatchItemResult,
    BatchSubmitRequest,
    BatchSubmitResponse,
    BulkFilter,
    BulkResponse,
    CleanupRequest,
    CleanupResponse,
    ErrorResponse,
    QueuesResponse,
    QueueStatus,
    StatisticsResponse,
    SubmitTaskRequest,
    TaskDetail,
    TaskError,
    WorkerInfo,
    WorkersHealthResponse,
    WorkersStatsResponse,
)
from api.service import worker_is_alive
from api.taskstore import TaskStore, TaskView, filter_query, started_since, status_query
from api.validation import pydantic_details
from taskservice.catalog import CATALOG
from taskservice.contracts import TaskStatus
from taskservice.queues import Queue

# Fixed paths; `task_router` (GET /tasks/{task_id}) is included after every fixed /tasks/... path.
router = APIRouter(prefix="/api/v1")
task_router = APIRouter(prefix="/api/v1", tags=["tasks"])

STATUS_MESSAGES = {
    TaskStatus.QUEUED: "Task is waiting for a worker",
    TaskStatus.PROCESSING: "Task processing started",
    TaskStatus.COMPLETED: "Task completed successfully",
    TaskStatus.FAILED: "Task failed",
    TaskStatus.CANCELLED: "Task was cancelled",
}


def task_detail(view: TaskView) -> TaskDetail:
    error = None
    if view.error is not None and view.status != TaskStatus.COMPLETED:
        kind, _, message = view.error.partition(": ")
        # Errors read "Type: message" when the failure carried a type (ApplicationError.type).
        error = (
            TaskError(type=kind, message=message)
            if message and kind.isidentifier()
            else TaskError(
                type="TaskCancelled" if view.status == TaskStatus.CANCELLED else "TaskError",
                message=view.error,
            )
        )
    return TaskDetail(
        task_id=view.task_id,
        project_id=view.project_id,
        task_type=view.task_type,
        status=view.status,
        progress=round(view.progress * 100),
        current_step=view.current_step,
        message=STATUS_MESSAGES[view.status],
        created_at=view.created_at,
        updated_at=view.updated_at,
        started_at=view.started_at,
        completed_at=view.completed_at,
        result=view.result,
        error=error,
        priority=view.priority.value,
        attempt=view.attempt,
    )


def _check_task_type(task_type: str | None) -> None:
    if task_type is not None and task_type not in CATALOG:
        raise ValidationFailed(
            {"task_type": f"Unknown task type '{task_type}'; expected one of: {', '.join(CATALOG)}"},
            message="Invalid query parameters",
        )


def _filters(
    project_id: str | None, task_type: str | None, status: TaskStatus | None, owner: str | None
) -> str:
    clauses = ["TaskType IS NOT NULL"]
    equals = filter_query(project_id=project_id, task_type=task_type, owner=owner)
    if equals:
        clauses.append(equals)
    if status is not None:
        clauses.append(status_query(status))
    return " AND ".join(clauses)


@router.get(
    "/tasks",
    response_model=list[TaskDetail],
    tags=["tasks"],
    summary="The caller's tasks (seed 002), newest first",
    description="A JSON array as seed 002 answers it; pagination in `X-Total-Count`, `X-Page`, `X-Limit` and "
    "`Link` headers. Tasks are those submitted with the same API key.",
)
async def list_my_tasks(
    caller: ReadCaller,
    store: StoreDep,
    response: Response,
    status: TaskStatus | None = None,
    task_type: str | None = None,
    project_id: Annotated[str | None, Query(pattern=PROJECT_ID_PATTERN)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[TaskDetail]:
    _check_task_type(task_type)
    views, total = await store.list_tasks(
        _filters(project_id, task_type, status, caller.key_id), page=page, limit=limit
    )
    response.headers["X-Total-Count"] = str(total)
    response.headers["X-Page"] = str(page)
    response.headers["X-Limit"] = str(limit)
    if page * limit < total:
        response.headers["Link"] = f'<?page={page + 1}&limit={limit}>; rel="next"'
    return [task_detail(v) for v in views]


@router.post(
    "/tasks/batch",
    response_model=BatchSubmitResponse,
    tags=["tasks"],
    summary="Submit up to 100 tasks; each item succeeds or fails on its own",
)
async def submit_batch(
    body: BatchSubmitRequest, caller: SubmitCaller, tasks: TaskServiceDep
) -> BatchSubmitResponse:
    async def one(index: int, item: dict[str, object]) -> BatchItemResult:
        try:
            try:
                request = SubmitTaskRequest.model_validate(item)
            except ValidationError as err:
                raise ValidationFailed(pydantic_details(err), message="Invalid request") from None
            submitted = await tasks.submit(caller, request)
        except ServiceError as err:
            return BatchItemResult(index=index, success=False, error=ErrorResponse(**err.body()))
        return BatchItemResult(index=index, success=True, task=submit_response(submitted))

    # Bounded fan-out: the items are independent, but Temporal and the API share the machine.
    gate = asyncio.Semaphore(8)

    async def bounded(index: int, item: dict[str, object]) -> BatchItemResult:
        async with gate:
            return await one(index, item)

    results = await asyncio.gather(*(bounded(i, item) for i, item in enumerate(body.tasks)))
    created = sum(r.success for r in results)
    return BatchSubmitResponse(created=created, failed=len(results) - created, results=list(results))


@router.get(
    "/queues", response_model=QueuesResponse, tags=["queues"], summary="Per-queue backlog and workers"
)
async def queue_status(caller: ReadCaller, tasks: TaskServiceDep) -> QueuesResponse:
    states = await tasks.store.all_queue_states()
    queues = []
    for queue in Queue:
        types = [s.name for s in CATALOG.values() if s.queue == queue]
        in_list = ", ".join(f'"{t}"' for t in types)
        running = await tasks.store.count(
            f"TaskType IN ({in_list}) AND {status_query(TaskStatus.PROCESSING)}"
        )
        state = states[queue.value]
        queues.append(
            QueueStatus(
                queue=queue.value,
                backlog=state.backlog,
                running=running,
                pollers=state.pollers,
                worker_count=len(state.pollers),
                configured_concurrency=tasks.settings.worker_concurrency(queue),
                task_types=types,
            )
        )
    return QueuesResponse(queues=queues, timestamp=datetime.now(UTC))


async def statistics(store: TaskStore, hours: float) -> StatisticsResponse:
    """Tasks created in the window, by type and status, counted in Temporal visibility."""
    now = datetime.now(UTC)
    since = now - timedelta(hours=hours)
    window = started_since(since)
    pairs = [(t, s) for t in CATALOG for s in TaskStatus]
    counts = await asyncio.gather(
        *(store.count(f"{window} AND {filter_query(task_type=t)} AND {status_query(s)}") for t, s in pairs)
    )
    by_type: dict[str, dict[str, int]] = {}
    by_status = {s.value: 0 for s in TaskStatus}
    for (task_type, status), count in zip(pairs, counts, strict=True):
        if count:
            by_type.setdefault(task_type, {})[status.value] = count
            by_status[status.value] += count
    return StatisticsResponse(
        window_hours=hours,
        since=since,
        total=sum(by_status.values()),
        by_status=by_status,
        by_type=by_type,
        timestamp=now,
    )


@router.get(
    "/tasks/statistics",
    response_model=StatisticsResponse,
    tags=["tasks"],
    summary="Counts by type and status",
)
async def task_statistics(
    caller: ReadCaller, store: StoreDep, hours: Annotated[float, Query(gt=0, le=24 * 30)] = 24.0
) -> StatisticsResponse:
    return await statistics(store, hours)


async def _matching(store: TaskStore, flt: BulkFilter) -> list[TaskView]:
    _check_task_type(flt.task_type)
    if flt.project_id is None and flt.task_type is None and flt.status is None:
        raise ValidationFailed({"body": "give at least one of project_id, task_type, status"})
    views, total = await store.list_tasks(
        _filters(flt.project_id, flt.task_type, flt.status, None), page=1, limit=10_000
    )
    return views


@router.post("/tasks/bulk/cancel", response_model=BulkResponse, tags=["tasks"], summary="Cancel by filter")
async def bulk_cancel(flt: BulkFilter, caller: ReadCaller, tasks: TaskServiceDep) -> BulkResponse:
    views = [v for v in await _matching(tasks.store, flt) if not v.status.is_terminal]
    errors: dict[str, str] = {}
    affected: list[str] = []

    async def cancel(view: TaskView) -> None:
        try:
            await tasks.cancel(view.task_id)
            affected.append(view.task_id)
        except ServiceError as err:
            errors[view.task_id] = err.message

    gate = asyncio.Semaphore(16)

    async def bounded(view: TaskView) -> None:
        async with gate:
            await cancel(view)

    await asyncio.gather(*(bounded(v) for v in views))
    return BulkResponse(matched=len(views), affected=len(affected), task_ids=affected, errors=errors)


@router.post("/tasks/bulk/retry", response_model=BulkResponse, tags=["tasks"], summary="Retry by filter")
async def bulk_retry(flt: BulkFilter, caller: SubmitCaller, tasks: TaskServiceDep) -> BulkResponse:
    views = [
        v for v in await _matching(tasks.store, flt) if v.status in (TaskStatus.FAILED, TaskStatus.CANCELLED)
    ]
    new_ids: list[str] = []
    errors: dict[str, str] = {}
    for view in views:
        try:
            new_ids.append((await tasks.retry(caller, view.task_id)).task_id)
        except ServiceError as err:
            errors[view.task_id] = err.message
    return BulkResponse(matched=len(views), affected=len(new_ids), task_ids=new_ids, errors=errors)


@router.post(
    "/admin/cleanup",
    response_model=CleanupResponse,
    tags=["admin"],
    summary="Delete old finished tasks, cancel stale queued ones (ADMIN_API_KEY)",
)
async def admin_cleanup(body: CleanupRequest, caller: CallerDep, tasks: TaskServiceDep) -> CleanupResponse:
    if not caller.is_admin:
        raise Forbidden("This endpoint needs the admin key (ADMIN_API_KEY)")
    store = tasks.store
    cutoff = datetime.now(UTC) - timedelta(hours=body.finished_older_than_hours)
    old = await store.task_ids(
        f'TaskType IS NOT NULL AND ExecutionStatus != "Running" AND CloseTime < "{_z(cutoff)}"'
    )
    stale: list[str] = []
    if body.cancel_queued_older_than_hours is not None:
        stale_cutoff = datetime.now(UTC) - timedelta(hours=body.cancel_queued_older_than_hours)
        stale = await store.task_ids(
            f'{status_query(TaskStatus.QUEUED)} AND StartTime < "{_z(stale_cutoff)}"'
        )
    if not body.dry_run:
        for task_id in old:
            await store.delete(task_id)
        for task_id in stale:
            await tasks.cancel(task_id)
    return CleanupResponse(deleted=len(old), cancelled=len(stale), dry_run=body.dry_run, task_ids=old + stale)


def _z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def _workers(store: TaskStore, interval: float) -> list[WorkerInfo]:
    now = datetime.now(UTC)
    reports = sorted(await store.worker_reports(), key=lambda w: (w.queue, w.identity))
    return [
        WorkerInfo(
            identity=w.identity,
            queue=w.queue,
            host=w.host,
            pid=w.pid,
            state=w.state if worker_is_alive(w.state, w.last_seen, now, interval) else "gone",
            alive=worker_is_alive(w.state, w.last_seen, now, interval),
            started_at=w.started_at,
            last_seen=w.last_seen,
            tasks_done=w.tasks_done,
            tasks_failed=w.tasks_failed,
            rss_mb=w.rss_mb,
            gpu_memory_mb=w.gpu_memory_mb,
            loaded_models=w.loaded_models,
            concurrency=w.concurrency,
        )
        for w in reports
    ]


@router.get(
    "/workers/health", response_model=WorkersHealthResponse, tags=["workers"], summary="Workers (seed 004)"
)
async def workers_health(caller: ReadCaller, tasks: TaskServiceDep) -> WorkersHealthResponse:
    workers = await _workers(tasks.store, tasks.settings.worker_report_interval_s)
    alive = [w for w in workers if w.alive]
    by_queue = {q.value: sum(w.queue == q.value for w in alive) for q in Queue}
    status = "healthy" if all(by_queue.values()) else "degraded" if alive else "unhealthy"
    return WorkersHealthResponse(
        status=status,
        total=len(workers),
        alive=len(alive),
        by_queue=by_queue,
        workers=workers,
        timestamp=datetime.now(UTC),
    )


@router.get(
    "/workers/stats", response_model=WorkersStatsResponse, tags=["workers"], summary="Worker counters"
)
async def workers_stats(caller: ReadCaller, tasks: TaskServiceDep) -> WorkersStatsResponse:
    workers = [w for w in await _workers(tasks.store, tasks.settings.worker_report_interval_s) if w.alive]
    totals = {
        "tasks_done": float(sum(w.tasks_done for w in workers)),
        "tasks_failed": float(sum(w.tasks_failed for w in workers)),
        "rss_mb": round(sum(w.rss_mb for w in workers), 1),
        "gpu_memory_mb": round(sum(sum(w.gpu_memory_mb) for w in workers), 1),
        "concurrency": float(sum(w.concurrency for w in workers)),
    }
    return WorkersStatsResponse(workers=workers, totals=totals, timestamp=datetime.now(UTC))


@task_router.get("/tasks/{task_id}", response_model=TaskDetail, summary="A task as seed 002 shows it")
async def get_task(task_id: str, caller: ReadCaller, store: StoreDep) -> TaskDetail:
    return task_detail(await store.get(task_id))
