"""What a task records in Temporal, typed once for the workflow that writes it and the API that reads it.

A task's memo (readable by `describe()` and visibility listings without a worker) holds:
- `task`: the `TaskRecord`, written by the API when it starts the workflow;
- `attempt`, `started_at`: written by the workflow when a worker starts an attempt;
- `waiting_for_slot`: the concurrency group the task waits for, while it waits;
- `outcome`: the `TaskOutcome`, written by the workflow when the task ends;
- `result_in_history`: set when the result was too large for the memo (the API reads the workflow result).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

# Results larger than this (encoded) stay in history only.
MEMO_RESULT_LIMIT = 16_000
# The bookkeeping workflows publish their state under one memo key each: `MetricsState` and the
# `WorkerReport`s by worker identity.
METRICS_MEMO = "metrics"
WORKERS_MEMO = "workers"


class MemoKey(StrEnum):
    """The memo's keys: the field names of `TaskMemo`."""

    TASK = "task"
    ATTEMPT = "attempt"
    STARTED_AT = "started_at"
    WAITING_FOR_SLOT = "waiting_for_slot"
    OUTCOME = "outcome"
    RESULT_IN_HISTORY = "result_in_history"


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


@dataclass
class TaskOutcome:
    """How a task ended. `error` is the message; `error_type` the failure's type, when it had one."""

    task_id: str
    status: str
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

    @classmethod
    def parse(cls, memo: Mapping[str, Any]) -> TaskMemo | None:
        """The typed memo of a task workflow; None for a workflow that is not a task."""
        if MemoKey.TASK not in memo:
            return None
        return _from_fields(cls, memo)


Record = TypeVar("Record")


@functools.cache
def _record_fields(cls: type) -> tuple[tuple[str, type | None], ...]:
    """Each field of a record class and, when the field holds another record, that record's class.

    Resolved once per class: resolving string annotations on every read (what `value_to_type` does) cost
    ~1.7 ms a memo, most of a listing page's time.
    """
    resolved = []
    for name, hint in typing.get_type_hints(cls).items():
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        nested = next((o for o in options if dataclasses.is_dataclass(o)), None)
        resolved.append((name, nested if isinstance(nested, type) else None))
    return tuple(resolved)


def _from_fields(cls: type[Record], values: Mapping[str, Any]) -> Record:
    """`cls` built from its recorded fields (written from the same class); unknown keys are skipped."""
    kwargs = {}
    for name, nested in _record_fields(typing.cast(type, cls)):
        if name in values:
            value = values[name]
            kwargs[name] = _from_fields(nested, value) if nested is not None and value is not None else value
    return cls(**kwargs)
