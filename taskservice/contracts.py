"""Typed inputs and outputs of workflows and activities.

Plain dataclasses of JSON-friendly values (timestamps are ISO-8601 strings), so they cross the Temporal
data converter unchanged and can grow new optional fields without breaking running histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    """The seed's status values; also the `TaskStatus` search attribute."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


@dataclass
class RetrySpec:
    initial_interval_s: float
    backoff_coefficient: float = 2.0
    maximum_attempts: int = 4
    non_retryable_error_types: list[str] = field(default_factory=list)


@dataclass
class TaskPlan:
    """How one task runs: resolved from the catalog by the API and frozen into the workflow input."""

    activity: str
    queue: str
    soft_timeout_s: float
    hard_timeout_s: float
    heartbeat_timeout_s: float
    retry: RetrySpec


@dataclass
class TaskWorkflowInput:
    task_id: str
    project_id: str
    task_type: str
    task_data: dict[str, Any]
    plan: TaskPlan
    created_at: str
    priority: str = "NORMAL"
    callback_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    retry_of: str | None = None
    # Not started by then: cancelled without running; still running then: cancelled.
    deadline_at: str | None = None
    # Which webhooks to send: "start", "progress", "completed" (the final one, whatever the outcome).
    webhook_events: list[str] = field(default_factory=lambda: ["completed"])
    # Cluster-wide concurrency slots to hold while the activity runs, acquired in this order.
    concurrency: list[ConcurrencySlot] = field(default_factory=list)


@dataclass
class ConcurrencySlot:
    """A capped group (`image`, `video`, `total`) and its limit, frozen at submit."""

    group: str
    limit: int


@dataclass
class SlotRequest:
    """A task asking a limiter workflow for a slot; granted by the `slot_granted` signal."""

    holder_id: str
    limit: int
    # Temporal priority key of the task: lower is served first, then arrival order.
    priority_key: int = 3
    # The slot is reclaimed after this long even if the holder never releases it (terminated by hand).
    lease_s: float = 3600.0


@dataclass
class LimiterState:
    group: str
    limit: int = 0
    # holder task_id -> ISO time its lease ends.
    holders: dict[str, str] = field(default_factory=dict)
    waiting: list[SlotRequest] = field(default_factory=list)


@dataclass
class TaskActivityInput:
    task_id: str
    project_id: str
    task_type: str
    task_data: dict[str, Any]
    soft_timeout_s: float
    # Signal the workflow as progress moves (only when the task asked for progress webhooks).
    progress_updates: bool = False


@dataclass
class TaskProgressUpdate:
    progress: float
    step: str


@dataclass
class TaskStarted:
    """Sent by a worker to the task's workflow when an activity attempt starts executing."""

    attempt: int
    started_at: str
    worker: str


@dataclass
class TaskOutcome:
    task_id: str
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    processing_time: float | None = None


@dataclass
class WebhookDelivery:
    url: str
    webhook_id: str
    event: str
    payload: dict[str, Any]
    task_id: str
    project_id: str
    task_type: str


@dataclass
class TaskEvent:
    """A finished task, as counted by the metrics workflow."""

    task_id: str
    task_type: str
    status: str
    processing_time: float | None = None


@dataclass
class RetryRecorded:
    original_task_id: str
    new_task_id: str


@dataclass
class FinishedTally:
    """Finished tasks counted together: one visibility scan's worth, or the running total."""

    total_finished: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    duration_sum: dict[str, float] = field(default_factory=dict)
    duration_count: dict[str, int] = field(default_factory=dict)

    def add(self, other: FinishedTally) -> None:
        self.total_finished += other.total_finished
        self.completed += other.completed
        self.failed += other.failed
        self.cancelled += other.cancelled
        for task_type, seconds in other.duration_sum.items():
            self.duration_sum[task_type] = self.duration_sum.get(task_type, 0.0) + seconds
        for task_type, count in other.duration_count.items():
            self.duration_count[task_type] = self.duration_count.get(task_type, 0) + count


@dataclass
class MetricsState(FinishedTally):
    retried: int = 0
    # Tasks that closed before this instant (server time, ISO) are counted; later ones by the next scan.
    counted_until: str | None = None


@dataclass
class ScanWindow:
    """Task workflows with `since <= CloseTime < until`."""

    since: str
    until: str


@dataclass
class WorkerReport:
    """A worker process's own account of itself, kept by the worker registry workflow."""

    identity: str
    queue: str
    pid: int
    host: str
    state: str
    started_at: str
    tasks_done: int = 0
    tasks_failed: int = 0
    rss_mb: float = 0.0
    gpu_memory_mb: list[float] = field(default_factory=list)
    loaded_models: list[str] = field(default_factory=list)
    concurrency: int = 0
    reported_at: str = ""
    last_seen: str = ""


@dataclass
class WorkerRegistryState:
    workers: dict[str, WorkerReport] = field(default_factory=dict)


# Seed: 1 initial + 3 retries, spaced 1/2/4 s.
WEBHOOK_ATTEMPTS = 4
