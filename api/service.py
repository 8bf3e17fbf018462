"""What every API surface does with tasks (REST, batch, GraphQL, Socket.IO): one implementation."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from api.caller import Caller
from api.errors import IdempotencyConflict, InvalidState, RateLimited, TaskNotFound, ValidationFailed
from api.schemas import Alert, SubmitTaskRequest, TaskMetrics
from api.taskstore import TaskStore, TaskView, filter_query, new_task_id, status_query
from api.validation import pydantic_details
from taskservice.catalog import CATALOG, TaskSpec
from taskservice.contracts import TaskStatus
from taskservice.netguard import UnsafeURLError, check_outbound_url
from taskservice.settings import Settings
from taskservice.telemetry import ApiMetrics

# Idempotency keys map to task IDs inside this namespace, per API key.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d3c1e-2b1a-4a53-9f3e-7f4f3c2d9a10")
# Seed alert thresholds.
FAILURE_RATE_WARNING, FAILURE_RATE_CRITICAL = 10.0, 20.0
RUNNING_WARNING_S, RUNNING_CRITICAL_S = 8 * 60, 9.5 * 60
WORKER_MEMORY_WARNING_MB, WORKER_MEMORY_CRITICAL_MB = 1.5 * 1024, 1.9 * 1024
# A worker that missed this many reports is gone (bounded by the 60 s the operators were promised).
MISSED_REPORTS_GONE = 3
WORKER_GONE_AFTER_MAX_S = 60.0

CANCEL_MESSAGES = {
    TaskStatus.QUEUED: "Task was queued and has been revoked",
    TaskStatus.PROCESSING: "Task was running and has been terminated",
    TaskStatus.CANCELLED: "Task was already cancelled",
}


@dataclass
class Submitted:
    view: TaskView
    spec: TaskSpec
    queue_position: int
    replayed: bool = False


@dataclass
class Cancelled:
    before: TaskView
    after: TaskView
    message: str


def validate_task_data(spec: TaskSpec, task_data: dict[str, Any]) -> dict[str, Any]:
    try:
        model = spec.input_model.model_validate(task_data)
    except ValidationError as err:
        raise ValidationFailed(pydantic_details(err, prefix="task_data")) from None
    return model.model_dump(mode="json", exclude_none=True)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds from `90`, `90s`, `1.5m`, `1h30m`, `500ms` (Replicate's Cancel-After forms)."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    elif text and re.fullmatch(f"(?:{_DURATION.pattern})+", text):
        unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        seconds = sum(float(n) * unit[u] for n, u in _DURATION.findall(text))
    else:
        raise ValueError("must be seconds or a duration like 90s, 5m, 1h30m")
    if not 0 < seconds <= 7 * 24 * 3600:
        raise ValueError("must be between 0 and 7 days")
    return seconds


def _request_hash(body: SubmitTaskRequest) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


class TaskService:
    def __init__(self, store: TaskStore, settings: Settings, metrics: ApiMetrics | None = None) -> None:
        self.store = store
        self.settings = settings
        self.telemetry = metrics

    async def submit(
        self,
        caller: Caller,
        body: SubmitTaskRequest,
        idempotency_key: str | None = None,
        cancel_after: str | None = None,
    ) -> Submitted:
        spec = CATALOG.get(body.task_type)
        if spec is None:
            raise ValidationFailed(
                {"task_type": f"Unknown task type '{body.task_type}'; expected one of: {', '.join(CATALOG)}"}
            )
        task_data = validate_task_data(spec, body.task_data)
        if body.callback_url is not None:
            try:
                await check_outbound_url(body.callback_url, allow_private=self.settings.webhook_allow_private)
            except UnsafeURLError as err:
                raise ValidationFailed({"callback_url": f"callback_url {err}"}) from None
        deadline_s = body.deadline_s
        if cancel_after is not None:
            try:
                deadline_s = parse_duration(cancel_after)
            except ValueError as err:
                raise ValidationFailed({"Cancel-After": str(err)}, message="Invalid request") from None
        request_hash = _request_hash(body)
        task_id = new_task_id()
        if idempotency_key:
            task_id = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{caller.key_id}:{idempotency_key}"))
            try:
                existing = await self.store.get(task_id)
            except TaskNotFound:
                existing = None
            if existing is not None:
                return self._replay(existing, request_hash, spec)
        running = await self.store.count(
            f'{filter_query(project_id=body.project_id)} AND ExecutionStatus = "Running"'
        )
        if running >= self.settings.max_concurrent_per_project:
            raise RateLimited(
                f"Project {body.project_id} already has {running} unfinished tasks "
                f"(limit {self.settings.max_concurrent_per_project})",
                retry_after=30,
            )
        view, created = await self.store.start(
            task_id=task_id,
            owner=caller.key_id,
            project_id=body.project_id,
            task_type=body.task_type,
            task_data=task_data,
            priority=body.priority,
            callback_url=body.callback_url,
            metadata=body.metadata,
            request_hash=request_hash,
            deadline_s=deadline_s,
            webhook_events=list(body.webhook_events_filter) if body.webhook_events_filter else None,
        )
        if not created:
            return self._replay(view, request_hash, spec)
        if self.telemetry is not None:
            self.telemetry.tasks_submitted.labels(body.task_type).inc()
        return Submitted(view, spec, await self._queue_position(spec))

    def _replay(self, existing: TaskView, request_hash: str, spec: TaskSpec) -> Submitted:
        if existing.request_hash != request_hash:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used with a different request body",
                task_id=existing.task_id,
            )
        return Submitted(existing, spec, 0, replayed=True)

    async def _queue_position(self, spec: TaskSpec) -> int:
        types = ", ".join(f'"{s.name}"' for s in CATALOG.values() if s.queue == spec.queue)
        return max(1, await self.store.count(f"TaskType IN ({types}) AND {status_query(TaskStatus.QUEUED)}"))

    async def cancel(self, task_id: str) -> Cancelled:
        before, after = await self.store.cancel(task_id)
        message = CANCEL_MESSAGES[before.status]
        if not after.status.is_terminal:
            message += "; it is still cleaning up (up to 30 s)"
        return Cancelled(before, after, message)

    async def retry(self, caller: Caller, task_id: str) -> TaskView:
        original = await self.store.get(task_id)
        if not original.status.is_terminal:
            raise InvalidState(f"Task is still {original.status.value}; only a finished task can be retried")
        view, _ = await self.store.start(
            task_id=new_task_id(),
            owner=caller.key_id,
            project_id=original.project_id,
            task_type=original.task_type,
            task_data=original.task_data,
            priority=original.priority,
            callback_url=original.callback_url,
            metadata=original.metadata,
            retry_of=original.task_id,
            deadline_s=original.deadline_s,
            webhook_events=original.webhook_events,
        )
        await self.store.record_retry(original.task_id, view.task_id)
        return view

    async def metrics(self) -> TaskMetrics:
        state = await self.store.metrics_state()
        unfinished = await self.store.count(
            'ExecutionStatus = "Running" AND TaskStatus IN ("queued", "processing")'
        )
        running = await self.store.count(status_query(TaskStatus.PROCESSING))
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

    async def alerts(self, metrics: TaskMetrics) -> list[Alert]:
        """The seed's alert thresholds: failure rate, long-running tasks, worker memory."""
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
        running = await self.store.latest(status_query(TaskStatus.PROCESSING), 1000)
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
        for worker in await self.store.worker_reports():
            if not worker_is_alive(
                worker.state, worker.last_seen, now, self.settings.worker_report_interval_s
            ):
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
        return alerts


def worker_is_alive(state: str, last_seen: str, now: datetime, report_interval_s: float) -> bool:
    if state == "stopped" or not last_seen:
        return False
    gone_after = min(WORKER_GONE_AFTER_MAX_S, max(5.0, MISSED_REPORTS_GONE * report_interval_s))
    return (now - datetime.fromisoformat(last_seen)).total_seconds() <= gone_after
