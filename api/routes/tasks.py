"""Task resource: submit, status, cancel, retry, and the queue's metrics and health."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from pydantic import ValidationError

from api.deps import ReadCaller, ServicesDep, StoreDep, SubmitCaller
from api.errors import IdempotencyConflict, InvalidState, RateLimited, TaskNotFound, ValidationFailed
from api.schemas import (
    Alert,
    CancelTaskResponse,
    MetricsResponse,
    RetryTaskResponse,
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskMetrics,
    TaskQueueHealthResponse,
    TaskStatusResponse,
)
from api.taskstore import TaskStore, TaskView, filter_query, new_task_id, status_query
from api.validation import pydantic_details
from taskservice.catalog import CATALOG, TaskSpec
from taskservice.contracts import TaskStatus
from taskservice.netguard import UnsafeURLError, check_outbound_url
from taskservice.settings import Settings

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

# Idempotency keys map to task IDs inside this namespace, per API key.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d3c1e-2b1a-4a53-9f3e-7f4f3c2d9a10")
# Seed alert thresholds.
FAILURE_RATE_WARNING, FAILURE_RATE_CRITICAL = 10.0, 20.0
RUNNING_WARNING_S, RUNNING_CRITICAL_S = 8 * 60, 9.5 * 60
WORKER_MEMORY_WARNING_MB, WORKER_MEMORY_CRITICAL_MB = 1.5 * 1024, 1.9 * 1024
WORKER_GONE_AFTER_S = 60


def validate_task_data(spec: TaskSpec, task_data: dict[str, Any]) -> dict[str, Any]:
    try:
        model = spec.input_model.model_validate(task_data)
    except ValidationError as err:
        raise ValidationFailed(pydantic_details(err, prefix="task_data")) from None
    return model.model_dump(mode="json", exclude_none=True)


async def check_callback_url(settings: Settings, url: str | None) -> None:
    if url is None:
        return
    try:
        await check_outbound_url(url, allow_private=settings.webhook_allow_private)
    except UnsafeURLError as err:
        raise ValidationFailed({"callback_url": f"callback_url {err}"}) from None


def _request_hash(body: SubmitTaskRequest) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


async def _queue_position(store: TaskStore, spec: TaskSpec) -> int:
    types = ", ".join(f'"{s.name}"' for s in CATALOG.values() if s.queue == spec.queue)
    return max(1, await store.count(f"TaskType IN ({types}) AND {status_query(TaskStatus.QUEUED)}"))


def _submit_response(view: TaskView, spec: TaskSpec, position: int) -> SubmitTaskResponse:
    return SubmitTaskResponse(
        task_id=view.task_id,
        status=view.status,
        project_id=view.project_id,
        task_type=view.task_type,
        estimated_duration=spec.estimated_duration_s,
        queue_position=position,
        created_at=view.created_at,
    )


@router.post(
    "/submit",
    response_model=SubmitTaskResponse,
    summary="Submit a task",
    description="Starts the task's durable workflow. With `Idempotency-Key`, a repeat returns the same task.",
)
async def submit_task(
    body: SubmitTaskRequest,
    caller: SubmitCaller,
    store: StoreDep,
    services: ServicesDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> SubmitTaskResponse:
    spec = CATALOG.get(body.task_type)
    if spec is None:
        raise ValidationFailed(
            {"task_type": f"Unknown task type '{body.task_type}'; expected one of: {', '.join(CATALOG)}"}
        )
    task_data = validate_task_data(spec, body.task_data)
    await check_callback_url(services.settings, body.callback_url)
    request_hash = _request_hash(body)
    task_id = new_task_id()
    if idempotency_key:
        task_id = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{caller.key_id}:{idempotency_key}"))
        try:
            existing = await store.get(task_id)
        except TaskNotFound:
            existing = None
        if existing is not None:
            return _replay(existing, request_hash, spec, response)
    running = await store.count(f'{filter_query(project_id=body.project_id)} AND ExecutionStatus = "Running"')
    if running >= services.settings.max_concurrent_per_project:
        raise RateLimited(
            f"Project {body.project_id} already has {running} unfinished tasks "
            f"(limit {services.settings.max_concurrent_per_project})",
            retry_after=30,
        )
    view, created = await store.start(
        task_id=task_id,
        owner=caller.key_id,
        project_id=body.project_id,
        task_type=body.task_type,
        task_data=task_data,
        priority=body.priority,
        callback_url=body.callback_url,
        metadata=body.metadata,
        request_hash=request_hash,
    )
    if not created:
        return _replay(view, request_hash, spec, response)
    return _submit_response(view, spec, await _queue_position(store, spec))


def _replay(existing: TaskView, request_hash: str, spec: TaskSpec, response: Response) -> SubmitTaskResponse:
    if existing.request_hash != request_hash:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used with a different request body", task_id=existing.task_id
        )
    response.headers["Idempotent-Replayed"] = "true"
    return _submit_response(existing, spec, 0)


@router.get("/metrics", response_model=MetricsResponse, summary="Cumulative task metrics")
async def task_metrics(caller: ReadCaller, store: StoreDep) -> MetricsResponse:
    return MetricsResponse(metrics=await _metrics(store), timestamp=datetime.now(UTC))


async def _metrics(store: TaskStore) -> TaskMetrics:
    state = await store.metrics_state()
    unfinished = await store.count('ExecutionStatus = "Running" AND TaskStatus IN ("queued", "processing")')
    running = await store.count(status_query(TaskStatus.PROCESSING))
    total = state.total_finished + unfinished
    return TaskMetrics(
        total_tasks=total,
        completed_tasks=state.completed,
        failed_tasks=state.failed,
        retried_tasks=state.retried,
        cancelled_tasks=state.cancelled,
        success_rate=round(100.0 * state.completed / total, 1) if total else 0.0,
        failure_rate=round(100.0 * state.failed / total, 1) if total else 0.0,
        average_durations={
            task_type: round(state.duration_sum[task_type] / count, 3)
            for task_type, count in sorted(state.duration_count.items())
            if count
        },
        currently_running=running,
    )


@router.get("/health", response_model=TaskQueueHealthResponse, summary="Task queue health with alerts")
async def task_queue_health(caller: ReadCaller, store: StoreDep) -> TaskQueueHealthResponse:
    metrics = await _metrics(store)
    alerts: list[Alert] = []
    if metrics.failure_rate > FAILURE_RATE_WARNING:
        critical = metrics.failure_rate > FAILURE_RATE_CRITICAL
        alerts.append(
            Alert(
                severity="critical" if critical else "warning",
                message=f"{'High' if critical else 'Elevated'} failure rate: {metrics.failure_rate:.2f}%",
                metric="failure_rate",
                value=metrics.failure_rate,
            )
        )
    now = datetime.now(UTC)
    running, _ = await store.list_tasks(status_query(TaskStatus.PROCESSING), page=1, limit=1000)
    for view in running:
        if view.started_at is None:
            continue
        seconds = (now - view.started_at).total_seconds()
        if seconds > RUNNING_WARNING_S:
            alerts.append(
                Alert(
                    severity="critical" if seconds > RUNNING_CRITICAL_S else "warning",
                    message=f"Task {view.task_id} running for {seconds:.0f} seconds",
                    metric="task_duration",
                    value=round(seconds),
                    task_id=view.task_id,
                )
            )
    for worker in await store.worker_reports():
        seen = datetime.fromisoformat(worker.last_seen) if worker.last_seen else None
        if worker.state == "stopped" or seen is None or (now - seen).total_seconds() > WORKER_GONE_AFTER_S:
            continue
        if worker.rss_mb > WORKER_MEMORY_WARNING_MB:
            alerts.append(
                Alert(
                    severity="critical" if worker.rss_mb > WORKER_MEMORY_CRITICAL_MB else "warning",
                    message=f"Worker {worker.identity} using {worker.rss_mb / 1024:.2f} GB of memory",
                    metric="worker_memory",
                    value=round(worker.rss_mb / 1024, 3),
                    worker=worker.identity,
                )
            )
    severities = {a.severity for a in alerts}
    status = "critical" if "critical" in severities else "warning" if alerts else "healthy"
    return TaskQueueHealthResponse(
        status=status,
        metrics=metrics.model_dump(
            include={
                "total_tasks",
                "completed_tasks",
                "failed_tasks",
                "success_rate",
                "failure_rate",
                "currently_running",
            }
        ),
        alerts=alerts,
        timestamp=now,
    )


@router.get("/{task_id}/status", response_model=TaskStatusResponse, summary="Status, progress and result")
async def task_status(task_id: str, caller: ReadCaller, store: StoreDep) -> TaskStatusResponse:
    view = await store.get(task_id)
    return TaskStatusResponse(
        task_id=view.task_id,
        project_id=view.project_id,
        task_type=view.task_type,
        status=view.status,
        progress=view.progress,
        current_step=view.current_step,
        result=view.result,
        error=view.error,
        created_at=view.created_at,
        started_at=view.started_at,
        completed_at=view.completed_at,
        processing_time=view.processing_time,
        attempt=view.attempt,
        retry_of=view.retry_of,
    )


CANCEL_MESSAGES = {
    TaskStatus.QUEUED: "Task was queued and has been revoked",
    TaskStatus.PROCESSING: "Task was running and has been terminated",
    TaskStatus.CANCELLED: "Task was already cancelled",
}


@router.delete("/{task_id}", response_model=CancelTaskResponse, summary="Cancel a queued or running task")
async def cancel_task(task_id: str, caller: ReadCaller, store: StoreDep) -> CancelTaskResponse:
    before, after = await store.cancel(task_id)
    message = CANCEL_MESSAGES[before.status]
    if not after.status.is_terminal:
        message += "; it is still cleaning up (up to 30 s)"
    return CancelTaskResponse(
        task_id=task_id,
        status=TaskStatus.CANCELLED,
        message=message,
        previous_state=before.status,
        cancelled_at=after.completed_at or datetime.now(UTC),
    )


@router.post("/{task_id}/retry", response_model=RetryTaskResponse, summary="Run a finished task again")
async def retry_task(task_id: str, caller: SubmitCaller, store: StoreDep) -> RetryTaskResponse:
    original = await store.get(task_id)
    if not original.status.is_terminal:
        raise InvalidState(f"Task is still {original.status.value}; only a finished task can be retried")
    new_id = new_task_id()
    view, _ = await store.start(
        task_id=new_id,
        owner=caller.key_id,
        project_id=original.project_id,
        task_type=original.task_type,
        task_data=original.task_data,
        priority=original.priority,
        callback_url=original.callback_url,
        metadata=original.metadata,
        retry_of=original.task_id,
    )
    await store.record_retry(original.task_id, new_id)
    return RetryTaskResponse(
        new_task_id=view.task_id,
        original_task_id=original.task_id,
        status=view.status,
        message="Task retry submitted successfully",
    )
