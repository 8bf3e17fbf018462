"""Seed 003's GraphQL output types, and the renderings of the service's results into them."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

import strawberry
from strawberry.scalars import JSON

from api.service.estimates import TaskEstimate
from api.service.insights import QueueOverview, Statistics, percent
from api.service.starts import Submitted
from api.store.projection import TaskView
from taskservice.catalog import CATALOG
from taskservice.contracts import TaskStatus
from taskservice.timefmt import iso_z

T = TypeVar("T")


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


@strawberry.type(
    name="TaskEstimate",
    description="Predicted run and wait: learned from finished tasks of the type, or the catalog's prior.",
)
class TaskEstimateType:
    duration_p50_s: float
    duration_p90_s: float
    wait_p50_s: float | None = strawberry.field(description="Null (see `reason`) when no worker polls.")
    completion_p90_at: datetime | None
    basis: str = strawberry.field(description="`learned` or `prior`.")
    samples: int
    reason: str | None


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
    preview_url: str | None = strawberry.field(
        description="While the task renders: its latest live preview (signed URL)."
    )
    preview_at: datetime | None
    input_data: JSON = strawberry.field(description="The task's inputs (`task_data`).")
    result: JSON | None
    output_data: JSON | None = strawberry.field(description="Same as `result` (seed 003's name).")
    error: str | None
    metadata: JSON
    callback_url: str | None
    queue: str
    attempt: int
    retry_of: strawberry.ID | None
    estimated_duration: int = strawberry.field(description="Predicted (p50) run time, seconds.")
    queue_position: int | None = strawberry.field(description="Set on the answer of a create mutation.")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    processing_time: float | None = strawberry.field(description="Seconds.")
    estimated_start_at: datetime | None = None
    estimated_completion_at: datetime | None = None
    estimate: TaskEstimateType | None = strawberry.field(
        default=None, description="Of an unfinished task, on a create mutation or a single task's read."
    )


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


# --- renderings --------------------------------------------------------------------------------------


def _estimate(estimate: TaskEstimate | None) -> TaskEstimateType | None:
    if estimate is None:
        return None
    d = estimate.duration
    return TaskEstimateType(
        duration_p50_s=d.p50_s,
        duration_p90_s=d.p90_s,
        wait_p50_s=estimate.wait_p50_s,
        completion_p90_at=estimate.completion_p90_at,
        basis=d.basis,
        samples=d.samples,
        reason=estimate.reason,
    )


def ai_task(
    view: TaskView, queue_position: int | None = None, estimate: TaskEstimate | None = None
) -> AITask:
    spec = CATALOG.get(view.task_type)
    duration = spec.estimated_duration_s if spec else 0
    if estimate is not None:
        duration = max(1, math.ceil(estimate.duration.p50_s))
    return AITask(
        id=strawberry.ID(view.task_id),
        project_id=view.project_id,
        agent_id=view.project_id,
        task_type=view.task_type,
        status=AITaskStatus.of(view.status),
        priority=AITaskPriority[view.priority.value],
        progress=view.progress,
        current_step=view.current_step,
        preview_url=view.preview_url,
        preview_at=view.preview_at,
        input_data=JSON(view.task_data),
        result=JSON(view.result) if view.result is not None else None,
        output_data=JSON(view.result) if view.result is not None else None,
        error=view.error_text,
        metadata=JSON(view.metadata),
        callback_url=view.callback_url,
        queue=view.queue,
        attempt=view.attempt,
        retry_of=strawberry.ID(view.retry_of) if view.retry_of else None,
        estimated_duration=duration,
        queue_position=queue_position,
        estimated_start_at=estimate.start_at if estimate else None,
        estimated_completion_at=estimate.completion_at if estimate else None,
        estimate=_estimate(estimate),
        created_at=view.created_at,
        updated_at=view.updated_at,
        started_at=view.started_at,
        completed_at=view.completed_at,
        processing_time=view.processing_time,
    )


def submitted_task(submitted: Submitted) -> AITask:
    return ai_task(submitted.view, queue_position=submitted.queue_position, estimate=submitted.estimate)


def queue_status(overview: QueueOverview) -> TaskQueueStatus:
    renamed = {"queued_tasks": "queued", "processing_tasks": "processing"}
    queues = [copied(QueueInfo, q, renamed) for q in overview.queues]
    finished = overview.finished
    return TaskQueueStatus(
        queued_tasks=sum(q.queued_tasks for q in queues),
        processing_tasks=sum(q.processing_tasks for q in queues),
        completed_tasks=finished.completed,
        failed_tasks=finished.failed,
        cancelled_tasks=finished.cancelled,
        retried_tasks=finished.retried,
        worker_count=sum(q.worker_count for q in queues),
        queue_health=overview.health,
        queues=queues,
        timestamp=datetime.now(UTC),
    )


def task_statistics(stats: Statistics, *, one_type: bool, now: datetime) -> TaskStatistics:
    totals = stats.by_status()
    by_type = [
        _type_statistics(task_type, row)
        for task_type, row in stats.counts.items()
        if one_type or any(row.values())
    ]
    return TaskStatistics(
        **_tally(totals, suffix="_tasks"),
        failure_rate=percent(totals[TaskStatus.FAILED], _finished(totals)),
        by_status=[StatusCount(status=AITaskStatus.of(s), count=totals[s]) for s in TaskStatus],
        by_type=by_type,
        since=stats.since,
        until=stats.until,
        window_hours=round(((stats.until or now) - stats.since).total_seconds() / 3600, 3),
    )


def _type_statistics(task_type: str, row: dict[TaskStatus, int]) -> TaskTypeStatistics:
    return TaskTypeStatistics(task_type=task_type, **_tally(row, suffix=""))


def _tally(row: dict[TaskStatus, int], suffix: str) -> dict[str, Any]:
    """The total, the count of each status (`<status><suffix>`) and the success rate of a row of counts."""
    counts = {f"{status.value}{suffix}": row[status] for status in TaskStatus}
    return {
        f"total{suffix}": sum(row.values()),
        **counts,
        "success_rate": percent(row[TaskStatus.COMPLETED], _finished(row)),
    }


def _finished(row: dict[TaskStatus, int]) -> int:
    return sum(count for status, count in row.items() if status.is_terminal)


def copied(cls: type[T], source: object, renamed: dict[str, str] | None = None) -> T:
    """A `cls` whose fields are `source`'s attributes of the same names (or the names `renamed` gives)."""
    names = renamed or {}
    return cls(**{f.name: getattr(source, names.get(f.name, f.name)) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


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
        return iso_z(value)
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value
