"""Task resource (seed 001): submit, status, cancel, retry, and the queue's metrics and health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Response

from api.deps import ReadCaller, SubmitCaller, TaskServiceDep
from api.schemas import (
    CancelTaskResponse,
    MetricsResponse,
    RetryTaskResponse,
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskQueueHealthResponse,
    TaskStatusResponse,
)
from api.service import Submitted
from api.taskstore import TaskView
from taskservice.contracts import TaskStatus

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


def submit_response(submitted: Submitted) -> SubmitTaskResponse:
    view = submitted.view
    return SubmitTaskResponse(
        task_id=view.task_id,
        status=view.status,
        project_id=view.project_id,
        task_type=view.task_type,
        estimated_duration=submitted.spec.estimated_duration_s,
        queue_position=submitted.queue_position,
        created_at=view.created_at,
    )


def status_response(view: TaskView) -> TaskStatusResponse:
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


@router.post(
    "/submit",
    response_model=SubmitTaskResponse,
    summary="Submit a task",
    description="Starts the task's durable workflow. With `Idempotency-Key`, a repeat returns the same task.",
)
async def submit_task(
    body: SubmitTaskRequest,
    caller: SubmitCaller,
    tasks: TaskServiceDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
    cancel_after: Annotated[
        str | None, Header(alias="Cancel-After", max_length=32, description="Deadline, e.g. `90s`, `5m`.")
    ] = None,
) -> SubmitTaskResponse:
    submitted = await tasks.submit(caller, body, idempotency_key, cancel_after)
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return submit_response(submitted)


@router.get("/metrics", response_model=MetricsResponse, summary="Cumulative task metrics")
async def task_metrics(caller: ReadCaller, tasks: TaskServiceDep) -> MetricsResponse:
    return MetricsResponse(metrics=await tasks.metrics(), timestamp=datetime.now(UTC))


@router.get("/health", response_model=TaskQueueHealthResponse, summary="Task queue health with alerts")
async def task_queue_health(caller: ReadCaller, tasks: TaskServiceDep) -> TaskQueueHealthResponse:
    metrics = await tasks.metrics()
    alerts = await tasks.alerts(metrics)
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
        timestamp=datetime.now(UTC),
    )


@router.get("/{task_id}/status", response_model=TaskStatusResponse, summary="Status, progress and result")
async def task_status(task_id: str, caller: ReadCaller, tasks: TaskServiceDep) -> TaskStatusResponse:
    return status_response(await tasks.store.get(task_id))


@router.delete("/{task_id}", response_model=CancelTaskResponse, summary="Cancel a queued or running task")
async def cancel_task(task_id: str, caller: ReadCaller, tasks: TaskServiceDep) -> CancelTaskResponse:
    cancelled = await tasks.cancel(task_id)
    return CancelTaskResponse(
        task_id=task_id,
        status=TaskStatus.CANCELLED,
        message=cancelled.message,
        previous_state=cancelled.before.status,
        cancelled_at=cancelled.after.completed_at or datetime.now(UTC),
    )


@router.post("/{task_id}/retry", response_model=RetryTaskResponse, summary="Run a finished task again")
async def retry_task(task_id: str, caller: SubmitCaller, tasks: TaskServiceDep) -> RetryTaskResponse:
    view = await tasks.retry(caller, task_id)
    return RetryTaskResponse(
        new_task_id=view.task_id,
        original_task_id=task_id,
        status=view.status,
        message="Task retry submitted successfully",
    )
