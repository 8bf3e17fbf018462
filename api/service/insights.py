"""What the service tells about its work: metrics and alerts, statistics, queues, workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from api.domain.caller import Caller
from api.domain.errors import ValidationFailed
from api.service import submission
from api.service.alerts import (
    Alert,
    CacheSavings,
    TaskMetricsSummary,
    failure_rate_alerts,
    stale_since_of,
    staleness_alerts,
)
from api.service.estimates import TaskEstimates
from api.service.quotas import Quota, Quotas
from api.service.scope import scope_of
from api.store.store import TaskStore
from taskservice.catalog import CATALOG, specs_for_queue
from taskservice.contracts import FinishedTally, TaskStatus, TenantTally, WorkerReport
from taskservice.queues import Queue
from taskservice.settings import Settings
from taskservice.visibility import TaskQuery

# Seed alert thresholds.
RUNNING_WARNING_S, RUNNING_CRITICAL_S = 8 * 60, 9.5 * 60
WORKER_MEMORY_WARNING_MB, WORKER_MEMORY_CRITICAL_MB = 1.5 * 1024, 1.9 * 1024
# A worker that missed this many reports is gone (bounded by the 60 s the operators were promised).
MISSED_REPORTS_GONE = 3
WORKER_GONE_AFTER_MAX_S = 60.0
# A queue whose waiting tasks exceed this many times its running capacity reads as `warning`.
BACKLOG_WARNING_FACTOR = 10
HEALTH_ORDER = ("healthy", "warning", "critical")
QUEUE_POLL_S = 2.0
LONG_RUNNING_SCAN = 1000


@dataclass
class QueueSummary:
    """One activity queue: Temporal's backlog and pollers, and the task counts of its types."""

    name: str
    backlog: int
    queued: int
    processing: int
    # The pollers' identities (host and pid): shown to operators only, the others see the count.
    pollers: list[str]
    configured_concurrency: int
    task_types: list[str]
    worker_count: int = 0
    # Seconds until the queue's present backlog is started (TaskEstimates.queue_wait); None, with why,
    # when no worker polls it.
    drain_s: float | None = None
    drain_reason: str | None = None

    @property
    def capacity(self) -> int:
        return self.worker_count * self.configured_concurrency

    @property
    def health(self) -> str:
        waiting = max(self.queued, self.backlog)
        if self.worker_count == 0:
            return "critical" if waiting else "warning"
        return "warning" if waiting > BACKLOG_WARNING_FACTOR * self.capacity else "healthy"


@dataclass
class QueueOverview:
    queues: list[QueueSummary]
    finished: TenantTally

    @property
    def health(self) -> str:
        return max((q.health for q in self.queues), key=HEALTH_ORDER.index)


@dataclass
class Statistics:
    """Tasks created in [since, until), by type and status (every requested type, zeros included)."""

    since: datetime
    until: datetime | None
    counts: dict[str, dict[TaskStatus, int]]

    def by_status(self) -> dict[TaskStatus, int]:
        return {s: sum(row[s] for row in self.counts.values()) for s in TaskStatus}


@dataclass
class WorkerStatus(WorkerReport):
    """A worker process's own report, and whether it still counts as alive (a gone one reads `gone`)."""

    alive: bool = False


@dataclass
class WorkerFleet:
    """Every worker's status. Each one (identity, host, pid, models) is listed to operators only: a tenant
    sees the counts and totals made of them, never the machines behind the service."""

    statuses: list[WorkerStatus]
    internals_shown: bool

    @property
    def listed(self) -> list[WorkerStatus]:
        return self.statuses if self.internals_shown else []


def percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def worker_is_alive(report: WorkerReport, now: datetime, report_interval_s: float) -> bool:
    """The one rule of a live worker, by which `/api/v1/workers/health` and `/api/v1/health` both count: it
    reported lately. Not Temporal's pollers: a killed worker stays listed there for up to 70 s, while a
    worker that misses its reports shows `gone` within 60 s."""
    if report.state == "stopped" or not report.last_seen:
        return False
    gone_after = min(WORKER_GONE_AFTER_MAX_S, max(5.0, MISSED_REPORTS_GONE * report_interval_s))
    return (now - datetime.fromisoformat(report.last_seen)).total_seconds() <= gone_after


class InsightService:
    def __init__(
        self, store: TaskStore, settings: Settings, quotas: Quotas, estimates: TaskEstimates | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.quotas = quotas
        self.estimates = estimates or TaskEstimates(store, settings)

    async def metrics(self, caller: Caller) -> TaskMetricsSummary:
        """The caller's tenant's cumulative counts (every tenant's, for an operator)."""
        self.quotas.spend(caller, Quota.READ)
        return await self._metrics(caller)

    async def _metrics(self, caller: Caller) -> TaskMetricsSummary:
        tenant = _tenant_scope(caller)
        metrics, unfinished, running = await asyncio.gather(
            self.store.metrics_state(),
            self.store.count(TaskQuery(tenant=tenant, unfinished=True)),
            self.store.count(TaskQuery(tenant=tenant, status=TaskStatus.PROCESSING)),
        )
        state = metrics.of_tenant(tenant)
        total = state.total_finished + unfinished
        counted_until = datetime.fromisoformat(metrics.counted_until) if metrics.counted_until else None
        return TaskMetricsSummary(
            total_tasks=total,
            completed_tasks=state.completed,
            failed_tasks=state.failed,
            retried_tasks=state.retried,
            cancelled_tasks=state.cancelled,
            success_rate=percent(state.completed, total),
            failure_rate=percent(state.failed, total),
            average_durations={
                task_type: round(state.duration_sum[task_type] / count, 3)
                for task_type, count in sorted(state.duration_count.items())
                if count
            },
            currently_running=running,
            cache=cache_savings(state),
            counted_until=counted_until,
            stale_since=stale_since_of(counted_until, datetime.now(UTC)),
        )

    async def health(self, caller: Caller) -> tuple[TaskMetricsSummary, list[Alert]]:
        """The metrics and the seed's alerts: failure rate, long-running tasks, worker memory."""
        self.quotas.spend(caller, Quota.READ)
        metrics = await self._metrics(caller)
        alerts = staleness_alerts(metrics) + failure_rate_alerts(metrics)
        alerts += await self._long_running_alerts(caller)
        alerts += _memory_alerts(await self._workers(), named=caller.is_admin)
        return metrics, alerts

    async def _long_running_alerts(self, caller: Caller) -> list[Alert]:
        alerts = []
        now = datetime.now(UTC)
        query = scope_of(caller).narrow(TaskQuery(status=TaskStatus.PROCESSING))
        for view in await self.store.newest(query, LONG_RUNNING_SCAN):
            seconds = (now - view.started_at).total_seconds() if view.started_at else 0.0
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
        return alerts

    async def statistics(
        self,
        caller: Caller,
        since: datetime,
        until: datetime | None = None,
        *,
        project_id: str | None = None,
        task_type: str | None = None,
        task_type_field: str = "task_type",
    ) -> Statistics:
        """Counts of the caller's tasks created in the window, by type and status, from visibility (one
        read token per count it runs)."""
        submission.known_task_type(task_type, field=task_type_field, message="Invalid arguments")
        if until is not None and until <= since:
            raise ValidationFailed(
                {"window": "the window's end must be after its start"}, "Invalid arguments"
            )
        window = TaskQuery(project_id=project_id, started_since=since, started_before=until)
        window = scope_of(caller).narrow(window)
        types = [task_type] if task_type else list(CATALOG)
        pairs = [(t, s) for t in types for s in TaskStatus]
        self.quotas.spend(caller, Quota.READ, cost=len(pairs))
        counts = await asyncio.gather(
            *(self.store.count(window.with_(task_types=(t,), status=s)) for t, s in pairs)
        )
        table: dict[str, dict[TaskStatus, int]] = {t: dict.fromkeys(TaskStatus, 0) for t in types}
        for (name, status), count in zip(pairs, counts, strict=True):
            table[name][status] = count
        return Statistics(since=since, until=until, counts=table)

    async def queues(self, caller: Caller) -> QueueOverview:
        """Every queue's backlog and workers (system health, the same for all), with the caller's tenant's
        queued, running and finished counts."""
        self.quotas.spend(caller, Quota.READ)
        return await self._queues(caller)

    async def _queues(self, caller: Caller) -> QueueOverview:
        tenant = _tenant_scope(caller)

        async def counts(queue: Queue) -> tuple[int, int]:
            query = TaskQuery(tenant=tenant, task_types=tuple(s.name for s in specs_for_queue(queue)))
            queued, running = await asyncio.gather(
                self.store.count(query.with_(status=TaskStatus.QUEUED)),
                self.store.count(query.with_(status=TaskStatus.PROCESSING)),
            )
            return queued, running

        states, finished, per_queue, drains = await asyncio.gather(
            self.store.queues.all(),
            self.store.metrics_state(),
            asyncio.gather(*(counts(q) for q in Queue)),
            asyncio.gather(*(self.estimates.queue_wait(q.value) for q in Queue)),
        )
        summaries = [
            QueueSummary(
                name=queue.value,
                backlog=states[queue.value].backlog,
                queued=queued,
                processing=running,
                pollers=sorted(states[queue.value].pollers) if caller.is_admin else [],
                worker_count=len(states[queue.value].pollers),
                configured_concurrency=self.settings.worker_concurrency(queue),
                task_types=[s.name for s in specs_for_queue(queue)],
                drain_s=drain_s,
                drain_reason=drain_reason,
            )
            for queue, (queued, running), (drain_s, drain_reason) in zip(
                Queue, per_queue, drains, strict=True
            )
        ]
        return QueueOverview(queues=summaries, finished=finished.of_tenant(tenant))

    def queue_changes(self, caller: Caller, *, held: bool = True) -> AsyncIterator[QueueOverview]:
        """The queue overview now and whenever it changes (polling Temporal). Never ends; holds one of the
        tenant's stream slots unless `held=False` (see TaskService.watch)."""
        self.quotas.spend(caller, Quota.READ)
        changes = self._queue_changes(caller)
        return self.quotas.stream(caller, changes) if held else changes

    async def _queue_changes(
        self, caller: Caller, interval: float = QUEUE_POLL_S
    ) -> AsyncIterator[QueueOverview]:
        last: QueueOverview | None = None
        while True:
            overview = await self._queues(caller)
            if overview != last:
                last = overview
                yield overview
            await asyncio.sleep(interval)

    async def workers(self, caller: Caller) -> WorkerFleet:
        self.quotas.spend(caller, Quota.READ)
        return WorkerFleet(await self._workers(), internals_shown=caller.is_admin)

    async def worker_statuses(self) -> list[WorkerStatus]:
        """Every worker's report and whether it is alive (no rate limit: system health counts by it)."""
        return await self._workers()

    async def _workers(self) -> list[WorkerStatus]:
        now = datetime.now(UTC)
        interval = self.settings.worker_report_interval_s
        reports = await self.store.worker_reports()
        statuses = []
        for w in sorted(reports, key=lambda w: (w.queue, w.identity)):
            alive = worker_is_alive(w, now, interval)
            state = w.state if alive else "gone"
            statuses.append(WorkerStatus(**{**asdict(w), "state": state}, alive=alive))
        return statuses


def _tenant_scope(caller: Caller) -> str | None:
    """Whose counts a caller sees: its tenant's (users included), or every tenant's for an operator."""
    return scope_of(caller).tenant


def _memory_alerts(workers: list[WorkerStatus], *, named: bool) -> list[Alert]:
    """Workers using too much memory; named (identity: host and pid) to operators only."""
    return [
        Alert(
            severity="critical" if worker.rss_mb > WORKER_MEMORY_CRITICAL_MB else "warning",
            message=f"Worker {worker.identity if named else 'of ' + worker.queue} using "
            f"{worker.rss_mb / 1024:.2f} GB of memory",
            metric="worker_memory",
            value=round(worker.rss_mb / 1024, 3),
            worker=worker.identity if named else None,
        )
        for worker in workers
        if worker.alive and worker.rss_mb > WORKER_MEMORY_WARNING_MB
    ]


def cache_savings(state: FinishedTally) -> dict[str, CacheSavings]:
    """The render cache's counts per task type, from the metrics workflow's tally."""
    types = {*state.cache_hits, *state.cache_coalesced, *state.cache_misses}
    return {
        task_type: CacheSavings(
            hits=state.cache_hits.get(task_type, 0),
            coalesced=state.cache_coalesced.get(task_type, 0),
            misses=state.cache_misses.get(task_type, 0),
            saved_seconds=round(state.cache_saved_seconds.get(task_type, 0.0), 3),
        )
        for task_type in sorted(types)
    }
