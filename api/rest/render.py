"""The task view as the REST surfaces and the streams show it (seed 001's status, seed 002's resource)."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from api.rest.schemas import (
    EstimatedTimes,
    FinishedSubmitResponse,
    ProjectTaskItem,
    SubmitTaskResponse,
    TaskDetail,
    TaskError,
    TaskEstimateBody,
    TaskQuoteResponse,
    TaskStatusResponse,
)
from api.service.estimates import TaskEstimate
from api.service.starts import Quote, Submitted
from api.service.watch import fingerprint
from api.store.projection import TaskView
from taskservice.contracts import TaskStatus
from taskservice.timefmt import iso_z

STATUS_MESSAGES = {
    TaskStatus.QUEUED: "Task is waiting for a worker",
    TaskStatus.PROCESSING: "Task processing started",
    TaskStatus.COMPLETED: "Task completed successfully",
    TaskStatus.FAILED: "Task failed",
    TaskStatus.CANCELLED: "Task was cancelled",
}


def estimated_times(estimate: TaskEstimate | None) -> dict[str, Any]:
    """The estimate fields of submit, status and quote bodies (all null for a finished task)."""
    if estimate is None:
        return {}
    duration = estimate.duration
    return {
        "estimated_start_at": estimate.start_at,
        "estimated_completion_at": estimate.completion_at,
        "estimate": TaskEstimateBody(
            duration_p50_s=duration.p50_s,
            duration_p90_s=duration.p90_s,
            wait_p50_s=estimate.wait_p50_s,
            completion_p90_at=estimate.completion_p90_at,
            basis="learned" if duration.basis == "learned" else "prior",
            samples=duration.samples,
            reason=estimate.reason,
        ),
    }


def estimated_duration(submitted: Submitted) -> int:
    """Seed 001's `estimated_duration`: the learned p50 (whole seconds), the catalog's figure before."""
    if submitted.estimate is None:
        return submitted.spec.estimated_duration_s
    return max(1, math.ceil(submitted.estimate.duration.p50_s))


def submit_response(submitted: Submitted) -> SubmitTaskResponse:
    view = submitted.view
    return SubmitTaskResponse(
        task_id=view.task_id,
        status=view.status,
        project_id=view.project_id,
        task_type=view.task_type,
        estimated_duration=estimated_duration(submitted),
        queue_position=submitted.queue_position,
        created_at=view.created_at,
        **estimated_times(submitted.estimate),
    )


def quote_response(quote: Quote) -> TaskQuoteResponse:
    return TaskQuoteResponse(
        task_type=quote.spec.name,
        queue=quote.spec.queue.value,
        estimated_duration=max(1, math.ceil(quote.estimate.duration.p50_s)),
        **estimated_times(quote.estimate),
    )


def finished_submit_response(submitted: Submitted, view: TaskView) -> FinishedSubmitResponse:
    """A `Prefer: wait` submit whose task finished in time: its status body and the submit fields."""
    return FinishedSubmitResponse(
        **status_response(view).model_dump(),
        estimated_duration=estimated_duration(submitted),
        queue_position=submitted.queue_position,
    )


def status_etag(view: TaskView) -> str:
    """`/status`'s entity tag: weak, since `processing_time` moves on while the task itself does not."""
    digest = hashlib.sha256(repr(fingerprint(view)).encode()).hexdigest()[:20]
    return f'W/"{digest}"'


def _body_fields(view: TaskView, **overrides: Any) -> dict[str, Any]:
    """The view's fields under the names the bodies share (each body keeps its own), `error` as seed 001's
    one string unless a body overrides it."""
    return {**vars(view), "error": view.error_text, **overrides}


def status_response(view: TaskView, estimate: TaskEstimate | None = None) -> TaskStatusResponse:
    """Seed 001's `/status` body, with its estimate while it is unfinished."""
    return TaskStatusResponse.model_validate(_body_fields(view, **estimated_times(estimate)))


def project_item(view: TaskView) -> ProjectTaskItem:
    return ProjectTaskItem.model_validate(_body_fields(view))


def task_detail(view: TaskView, estimate: TaskEstimate | None = None) -> TaskDetail:
    """Seed 002's task resource: progress 0-100, error as `{type, message}`, and the estimate if given."""
    error = None
    if view.error is not None and view.status != TaskStatus.COMPLETED:
        default_type = "TaskCancelled" if view.status == TaskStatus.CANCELLED else "TaskError"
        error = TaskError(type=view.error_type or default_type, message=view.error)
    return TaskDetail.model_validate(
        _body_fields(
            view,
            progress=round(view.progress * 100),
            message=STATUS_MESSAGES[view.status],
            error=error,
            priority=view.priority.value,
        )
        | estimated_times(estimate)
    )


def task_event(view: TaskView, estimate: TaskEstimate | None = None) -> dict[str, Any]:
    """The payload of every stream (SSE, WebSocket, Socket.IO): seed 001's status fields, type, project,
    and while unfinished the task's estimate (the status body's fields)."""
    times = EstimatedTimes.model_validate(estimated_times(estimate)).model_dump(mode="json")
    return {
        "task_id": view.task_id,
        "project_id": view.project_id,
        "task_type": view.task_type,
        "status": view.status.value,
        "progress": view.progress,
        "current_step": view.current_step,
        "result": view.result,
        "error": view.error_text,
        "attempt": view.attempt,
        "processing_time": view.processing_time,
        "retry_of": view.retry_of,
        "created_at": _iso(view.created_at),
        "started_at": _iso(view.started_at),
        "completed_at": _iso(view.completed_at),
        "updated_at": _iso(view.updated_at),
        "preview_url": view.preview_url,
        "preview_at": _iso(view.preview_at),
        **times,
    }


def preview_event(view: TaskView) -> dict[str, Any]:
    """The payload of a stream's `preview` event: a task's new live preview."""
    return {
        "task_id": view.task_id,
        "project_id": view.project_id,
        "preview_url": view.preview_url,
        "preview_at": _iso(view.preview_at),
    }


def _iso(value: Any) -> str | None:
    return iso_z(value) if value else None
