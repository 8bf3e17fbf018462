"""What a tenant's tasks used: device seconds (`gpu_seconds`, `cpu_seconds` from media results' metadata)
and run time, by project, task type and day (UTC, of the task's close), over the finished tasks in a window.

Read from visibility and the memos of finished tasks within the caller's scope (tenant, user), at most
USAGE_MAX_TASKS of them (the answer says when it stopped short): bounded work for one request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from api.domain.caller import Caller
from api.domain.errors import ValidationFailed
from api.service.quotas import Quota, Quotas
from api.service.scope import scope_of
from api.store.store import TaskStore
from taskservice.record import TaskMemo
from taskservice.visibility import TaskQuery
from taskservice.work_units import DEVICE_SECONDS_KEYS

USAGE_MAX_TASKS = 10_000
USAGE_MAX_WINDOW = timedelta(days=93)
DEFAULT_WINDOW = timedelta(days=30)


@dataclass
class UsageRow:
    project_id: str
    task_type: str
    day: str
    tasks: int = 0
    processing_seconds: float = 0.0
    # `gpu_seconds` / `cpu_seconds`: what media results reported, by kind of device.
    device_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class UsageReport:
    since: datetime
    until: datetime
    rows: list[UsageRow]
    tasks: int
    truncated: bool

    def totals(self) -> dict[str, float]:
        sums: dict[str, float] = {"processing_seconds": 0.0}
        for row in self.rows:
            sums["processing_seconds"] += row.processing_seconds
            for key, seconds in row.device_seconds.items():
                sums[key] = sums.get(key, 0.0) + seconds
        return {k: round(v, 3) for k, v in sums.items()}


def usage_window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    """[since, until): until defaults to now, since to 30 days before it; at most 93 days."""
    until = until or datetime.now(UTC)
    since = since or until - DEFAULT_WINDOW
    if since.tzinfo is None or until.tzinfo is None:
        raise ValidationFailed(
            {"from": "`from` and `to` need a time zone (e.g. `Z`)"}, message="Invalid request"
        )
    if not since < until or until - since > USAGE_MAX_WINDOW:
        raise ValidationFailed(
            {"from": "`from` must be before `to`, at most 93 days apart"}, message="Invalid request"
        )
    return since, until


class UsageService:
    def __init__(self, store: TaskStore, quotas: Quotas) -> None:
        self.store = store
        self.quotas = quotas

    async def usage(self, caller: Caller, since: datetime | None, until: datetime | None) -> UsageReport:
        self.quotas.spend(caller, Quota.READ)
        since, until = usage_window(since, until)
        query = scope_of(caller).narrow(TaskQuery(closed_since=since, closed_before=until))
        rows: dict[tuple[str, str, str], UsageRow] = {}
        counted, truncated = 0, False
        async for execution in self.store.executions(query, 1000):
            if counted >= USAGE_MAX_TASKS:
                truncated = True
                break
            memo = TaskMemo.parse(await execution.memo())
            if memo is None:
                continue
            counted += 1
            closed = execution.close_time or until
            key = (memo.task.project_id, memo.task.task_type, closed.astimezone(UTC).date().isoformat())
            row = rows.setdefault(key, UsageRow(*key))
            row.tasks += 1
            _add_outcome(row, memo)
        ordered = sorted(rows.values(), key=lambda r: (r.day, r.project_id, r.task_type))
        return UsageReport(since, until, ordered, counted, truncated)


def _add_outcome(row: UsageRow, memo: TaskMemo) -> None:
    outcome = memo.outcome
    if outcome is None:
        return
    row.processing_seconds = round(row.processing_seconds + (outcome.processing_time or 0.0), 3)
    metadata = (outcome.result or {}).get("metadata")
    if not isinstance(metadata, dict):
        return
    for key in DEVICE_SECONDS_KEYS:
        seconds = metadata.get(key)
        if isinstance(seconds, int | float):
            row.device_seconds[key] = round(row.device_seconds.get(key, 0.0) + float(seconds), 3)
