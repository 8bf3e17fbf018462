"""The one projection of a task workflow (memo, search attributes, pending activity) into the task view that
every surface renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import WorkflowExecution, WorkflowExecutionStatus
from temporalio.converter import PayloadConverter

from taskservice import search_attributes as sa
from taskservice.catalog import CATALOG
from taskservice.contracts import TaskProgressUpdate, TaskStatus
from taskservice.priority import TaskPriority
from taskservice.record import TaskMemo, TaskRecord, error_text
from taskservice.timefmt import iso_z, parse_iso
from taskservice.visibility import CLOSED_AS_STATUS

# The step of a task whose cancel is being honoured (its attempt cleans up; it is not a retry).
CANCELLING_STEP = "cancelling"
# What a workflow that closed without recording an outcome tells about itself.
CLOSED_WITHOUT_OUTCOME_ERRORS = {
    WorkflowExecutionStatus.TERMINATED: "Task was terminated by an operator",
    WorkflowExecutionStatus.TIMED_OUT: "Task timed out",
    WorkflowExecutionStatus.CANCELED: "Task was cancelled",
}


# What a view shows of its record as it is (priority and created_at it parses).
RECORD_FIELDS = (
    "project_id",
    "task_type",
    "task_data",
    "metadata",
    "callback_url",
    "retry_of",
    "request_hash",
    "queue",
    "deadline_s",
    "webhook_events",
    "tenant",
    "user",
    "cache",
    "pipeline_id",
    "step_id",
)


@dataclass
class TaskView:
    """A task as the service shows it, whatever the surface."""

    task_id: str
    project_id: str
    task_type: str
    status: TaskStatus
    task_data: dict[str, Any]
    metadata: dict[str, Any]
    priority: TaskPriority
    callback_url: str | None
    created_at: datetime
    updated_at: datetime
    progress: float = 0.0
    current_step: str | None = None
    # The running render's latest live preview (signed URL, like the result's media_url) and its time.
    preview_url: str | None = None
    preview_at: datetime | None = None
    result: dict[str, Any] | None = None
    # The failure's message and, where it had one, its type (`InvalidInput`, `DeadlineExceeded`, ...).
    error: str | None = None
    error_type: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    processing_time: float | None = None
    attempt: int = 0
    retry_of: str | None = None
    request_hash: str | None = None
    queue: str = ""
    deadline_s: float | None = None
    webhook_events: list[str] = field(default_factory=lambda: ["completed"])
    # The result is only in the workflow's history (too large for the memo).
    result_in_history: bool = False
    # The concurrency group a queued task waits for.
    waiting_for_slot: str | None = None
    # The coalesced render the task waits on (its attempt and progress are the render's).
    render_id: str | None = None
    # Its owner: a tenant, and the JWT user who created it (if one did).
    tenant: str = "default"
    user: str | None = None
    # The submit's render-cache mode.
    cache: str = "auto"
    pipeline_id: str | None = None
    step_id: str | None = None

    @property
    def error_text(self) -> str | None:
        """Seed 001's one-string error (`Type: message`)."""
        return error_text(self.error, self.error_type)

    def record(self) -> TaskRecord:
        """What the task recorded when it was submitted."""
        return TaskRecord(
            priority=self.priority.value,
            created_at=iso_z(self.created_at),
            **{name: getattr(self, name) for name in RECORD_FIELDS},
        )


def record_view(task_id: str, record: TaskRecord) -> TaskView:
    """A task as submitted: queued, nothing run yet."""
    created_at = parse_iso(record.created_at) or datetime.now(UTC)
    return TaskView(
        task_id=task_id,
        status=TaskStatus.QUEUED,
        priority=TaskPriority.parse(record.priority),
        created_at=created_at,
        updated_at=created_at,
        current_step="queued",
        **{name: getattr(record, name) for name in RECORD_FIELDS},
    )


def base_view(execution: WorkflowExecution, memo: TaskMemo) -> TaskView:
    """What the memo, search attributes and execution status say, without pending-activity detail."""
    view = record_view(execution.id, memo.task)
    view.current_step = None
    if not memo.task.created_at:
        view.created_at = execution.start_time
    view.updated_at = execution.close_time or view.created_at
    view.started_at = parse_iso(memo.started_at)
    view.attempt = memo.attempt
    view.result_in_history = memo.result_in_history
    view.waiting_for_slot = memo.waiting_for_slot
    view.render_id = memo.render
    outcome = memo.outcome
    if outcome is not None:
        view.status = outcome.status
        view.result = outcome.result
        view.error, view.error_type = outcome.error, outcome.error_type
        view.completed_at = parse_iso(outcome.completed_at)
        view.processing_time = outcome.processing_time
        view.updated_at = view.completed_at or view.updated_at
    elif execution.status in CLOSED_AS_STATUS:
        view.status = CLOSED_AS_STATUS[execution.status]
        view.completed_at = execution.close_time
        view.error = CLOSED_WITHOUT_OUTCOME_ERRORS.get(execution.status)
    elif execution.typed_search_attributes.get(sa.TASK_STATUS) == TaskStatus.PROCESSING.value:
        view.status = TaskStatus.PROCESSING
    if view.status == TaskStatus.COMPLETED:
        view.progress = 1.0
    if view.status.is_terminal:
        view.current_step = view.status.value
    elif view.status == TaskStatus.PROCESSING:
        view.current_step = "processing"
    return view


def task_activity(view: TaskView, pending: list[PendingActivityInfo]) -> PendingActivityInfo | None:
    """The task's own activity among the workflow's pending ones (webhook deliveries are pending too)."""
    spec = CATALOG.get(view.task_type)
    name = spec.activity_name if spec is not None else view.task_type
    return next((p for p in pending if p.activity_type.name == name), None)


def apply_activity(view: TaskView, activity: PendingActivityInfo, converter: PayloadConverter) -> None:
    """What the running (or retrying, or cancelling) attempt adds: status, attempt, progress, step."""
    started = activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    # A cancel being honoured: the attempt is still running its cleanup; it is not a retry.
    cancelling = activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED
    ran = started or (cancelling and activity.HasField("last_started_time"))
    view.attempt = max(view.attempt, activity.attempt)
    if ran or activity.attempt > 1:
        view.status = TaskStatus.PROCESSING
    if ran and activity.HasField("heartbeat_details"):
        beat = _last_heartbeat(activity, converter)
        view.progress, view.current_step = beat.progress, beat.step
        if beat.preview is not None:
            view.preview_url, view.preview_at = beat.preview.url, parse_iso(beat.preview.at)
        view.updated_at = activity.last_heartbeat_time.ToDatetime(tzinfo=UTC)
    elif started:
        view.current_step = "starting"
    elif not cancelling:
        view.current_step = _retrying_step(activity)
    if cancelling:
        view.current_step = CANCELLING_STEP
    if view.started_at is None and ran and activity.HasField("last_started_time"):
        view.started_at = activity.last_started_time.ToDatetime(tzinfo=UTC)


def _last_heartbeat(activity: PendingActivityInfo, converter: PayloadConverter) -> TaskProgressUpdate:
    """What the attempt last heartbeated (`activities.runtime` writes it)."""
    payloads = activity.heartbeat_details.payloads
    if not payloads:
        return TaskProgressUpdate(progress=0.0, step="processing")
    return converter.from_payload(payloads[0], TaskProgressUpdate)


def _retrying_step(activity: PendingActivityInfo) -> str:
    failure = activity.last_failure.message if activity.HasField("last_failure") else "error"
    when = activity.scheduled_time.ToDatetime(tzinfo=UTC) if activity.HasField("scheduled_time") else None
    step = f"retrying: attempt {activity.attempt} of {activity.maximum_attempts or '∞'}"
    if when is not None:
        step += f" at {when.isoformat()}"
    return f"{step} after error: {failure}"


def running_time(view: TaskView) -> None:
    """An unfinished task's processing time so far."""
    if view.started_at is not None:
        view.processing_time = round((datetime.now(UTC) - view.started_at).total_seconds(), 3)
