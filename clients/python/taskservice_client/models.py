"""Typed views of the task service's JSON bodies (field names follow the REST contract, seed 001).

Every model keeps fields it does not know (``extra="allow"``), so a newer server that adds fields does not
break an older SDK.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Alert",
    "CancelResult",
    "Health",
    "Metrics",
    "Pagination",
    "QueueHealth",
    "Quote",
    "RetryResult",
    "SubmitResult",
    "SystemLoad",
    "TaskEstimate",
    "TaskListItem",
    "TaskPage",
    "TaskState",
    "TaskStatus",
]


class TaskState(StrEnum):
    """The value of a task's ``status`` field."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class TaskEstimate(_Model):
    """How long a task should wait and run: learned from finished tasks of its type (``basis: learned``) or
    the catalog's figure (``prior``). ``wait_p50_s`` is None, with ``reason``, when no worker serves it."""

    duration_p50_s: float
    duration_p90_s: float
    wait_p50_s: float | None = None
    completion_p90_at: datetime | None = None
    basis: str = "prior"
    samples: int = 0
    reason: str | None = None


class Quote(_Model):
    """Answer of ``POST /api/v1/tasks/quote``: what a submit would be told about time; nothing started."""

    task_type: str
    queue: str
    estimated_duration: int
    estimated_start_at: datetime | None = None
    estimated_completion_at: datetime | None = None
    estimate: TaskEstimate | None = None


class SubmitResult(_Model):
    """Answer of ``POST /api/v1/tasks/submit``."""

    task_id: str
    status: TaskState
    project_id: str
    task_type: str | None = None
    estimated_duration: int | None = None
    queue_position: int | None = None
    created_at: datetime | None = None
    estimated_start_at: datetime | None = None
    estimated_completion_at: datetime | None = None
    estimate: TaskEstimate | None = None
    replayed: bool = Field(
        False, description="True when an Idempotency-Key replay returned an existing task."
    )


class TaskStatus(_Model):
    """Answer of ``GET /api/v1/tasks/{id}/status`` (and each event of the task's event stream)."""

    task_id: str
    project_id: str
    task_type: str
    status: TaskState
    progress: float = 0.0
    current_step: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    processing_time: float | None = None
    attempt: int = 1
    retry_of: str | None = None
    estimated_start_at: datetime | None = None
    estimated_completion_at: datetime | None = None
    estimate: TaskEstimate | None = None
    preview_url: str | None = Field(
        None, description="While a media task renders: its latest live preview (signed URL, ≤ 256 px WebP)."
    )
    preview_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def cache_hit(self) -> bool:
        """Whether the result came from the render cache (an earlier task's, or a render it shared)."""
        cache = (self.result or {}).get("cache")
        return isinstance(cache, dict) and bool(cache.get("hit"))

    @property
    def succeeded(self) -> bool:
        return self.status is TaskState.COMPLETED


class TaskListItem(_Model):
    """One task of ``GET /api/v1/projects/{project_id}/tasks``."""

    task_id: str
    project_id: str
    task_type: str
    status: TaskState
    task_data: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime | None = None
    completed_at: datetime | None = None


class Pagination(_Model):
    page: int
    limit: int
    total: int
    total_pages: int


class TaskPage(_Model):
    """One page of a project's tasks, as the API answers it."""

    tasks: list[TaskListItem]
    pagination: Pagination


class CancelResult(_Model):
    """Answer of ``DELETE /api/v1/tasks/{id}``."""

    success: bool = True
    task_id: str
    status: TaskState
    message: str
    previous_state: TaskState
    cancelled_at: datetime | None = None


class RetryResult(_Model):
    """Answer of ``POST /api/v1/tasks/{id}/retry``: the new task that runs the same inputs."""

    new_task_id: str
    original_task_id: str
    status: TaskState
    message: str


class WebhookSecret(_Model):
    """Answer of ``GET /api/v1/webhooks/secret``: the caller's tenant's own webhook secret (``whsec_…``);
    during a rotation also the previous one, which still signs until ``previous_valid_until``."""

    tenant: str
    secret: str
    generation: int
    previous_secret: str | None = None
    previous_valid_until: datetime | None = None

    @property
    def secrets(self) -> list[str]:
        """What ``webhooks.verify`` should be given now: the current secret, and the previous one while it
        still signs."""
        return [self.secret, *([self.previous_secret] if self.previous_secret else [])]


class SystemLoad(_Model):
    cpu_percent: float
    memory_percent: float
    gpu_utilization: list[float] = Field(default_factory=list)


class Health(_Model):
    """Answer of ``GET /api/v1/health`` (``status``: healthy, degraded or unhealthy)."""

    status: str
    temporal_status: str
    worker_count: int
    queue_sizes: dict[str, int]
    system_load: SystemLoad
    uptime: int

    @property
    def is_healthy(self) -> bool:
        return self.status == "healthy"


class Metrics(_Model):
    """Answer of ``GET /api/v1/tasks/metrics``, flattened: the counters plus the server's timestamp."""

    total_tasks: int
    completed_tasks: int
    failed_tasks: int
    retried_tasks: int
    cancelled_tasks: int
    success_rate: float
    failure_rate: float
    average_durations: dict[str, float] = Field(default_factory=dict)
    currently_running: int
    timestamp: datetime | None = None


class Alert(_Model):
    severity: str
    message: str
    metric: str
    value: float
    task_id: str | None = None
    worker: str | None = None


class QueueHealth(_Model):
    """Answer of ``GET /api/v1/tasks/health``: the seed's alerts (``status``: healthy, warning, critical)."""

    status: str
    metrics: dict[str, Any] = Field(default_factory=dict)
    alerts: list[Alert] = Field(default_factory=list)
    timestamp: datetime | None = None
