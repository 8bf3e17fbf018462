"""What a task records in Temporal, typed once for the workflow that writes it and the API that reads it.

A task's memo (readable by `describe()` and visibility listings without a worker) holds:
- `task`: the `TaskRecord`, written by the API when it starts the workflow;
- `attempt`, `started_at`: written by the workflow when a worker starts an attempt;
- `waiting_for_slot`: the concurrency group the task waits for, while it waits;
- `outcome`: the `TaskOutcome`, written by the workflow when the task ends;
- `result_in_history`: set when the result was too large for the memo (the API reads the workflow result);
- `render`: the workflow ID of the coalesced render the task waits on (its progress is that render's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from taskservice.payloads import decode

# Results larger than this (encoded) stay in history only.
MEMO_RESULT_LIMIT = 16_000
# The bookkeeping workflows publish their state under one memo key each: `MetricsState` and the
# `WorkerReport`s by worker identity.
METRICS_MEMO = "metrics"
# The metrics workflow's learned-duration samples (`MetricsState.durations`), under a key of their own:
# published only when they change, so the counters' frequent publishes stay small.
DURATIONS_MEMO = "durations"
WORKERS_MEMO = "workers"


class MemoKey(StrEnum):
    """The memo's keys: the field names of `TaskMemo`."""

    TASK = "task"
    ATTEMPT = "attempt"
    STARTED_AT = "started_at"
    WAITING_FOR_SLOT = "waiting_for_slot"
    OUTCOME = "outcome"
    RESULT_IN_HISTORY = "result_in_history"
    RENDER = "render"


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
class TaskRecord:
    """What the task is, as submitted: the workflow's input and its memo carry this same object."""

    project_id: str
    task_type: str
    task_data: dict[str, Any]
    queue: str
    created_at: str
    priority: str = "NORMAL"
    callback_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    retry_of: str | None = None
    # Seconds from creation after which the task is cancelled (not started: without running).
    deadline_s: float | None = None
    # Which webhooks to send: "start", "progress", "completed" (the final one, whatever the outcome).
    webhook_events: list[str] = field(default_factory=lambda: ["completed"])
    # Hash of the submit body, so that an idempotent replay with another body is refused.
    request_hash: str | None = None
    # Who owns it: a tenant and, when a JWT user created it, that user (their `sub`).
    tenant: str = "default"
    user: str | None = None
    # The submit's render-cache mode (`auto`, `reuse`, `refresh`, `off`: taskservice/render_cache.py).
    cache: str = "auto"
    # A pipeline's step: the pipeline and the step's ID in it (None for a task submitted on its own).
    pipeline_id: str | None = None
    step_id: str | None = None


@dataclass
class TaskOutcome:
    """How a task ended. `error` is the message; `error_type` the failure's type, when it had one."""

    task_id: str
    # Recorded as its value ("completed", ...): the same JSON as when it was declared a `str`.
    status: TaskStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    processing_time: float | None = None


def error_text(error: str | None, error_type: str | None) -> str | None:
    """The seed's one-string error: `Type: message` when the failure had a type."""
    if error is None:
        return None
    return f"{error_type}: {error}" if error_type else error


@dataclass
class TaskMemo:
    """A task workflow's whole memo, typed."""

    task: TaskRecord
    attempt: int = 0
    started_at: str | None = None
    waiting_for_slot: str | None = None
    outcome: TaskOutcome | None = None
    result_in_history: bool = False
    render: str | None = None

    @classmethod
    def parse(cls, memo: Mapping[str, Any]) -> TaskMemo | None:
        """The typed memo of a task workflow; None for a workflow that is not a task."""
        if MemoKey.TASK not in memo:
            return None
        return decode(cls, memo)
