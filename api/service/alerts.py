"""The alert rules over the task metrics (seed thresholds) and the metrics' own freshness."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

from taskservice.queues import METRICS_WORKFLOW_ID, WORKFLOW_QUEUE
from taskservice.timefmt import iso_z

# Seed alert thresholds.
FAILURE_RATE_WARNING, FAILURE_RATE_CRITICAL = 10.0, 20.0
# The metrics workflow publishes how far it counted at least every 10 s (and scans 3-5 s behind now): a
# `counted_until` further behind than this means it stopped moving, and its counts are frozen.
METRICS_STALE_AFTER = timedelta(seconds=60)


@dataclass
class CacheSavings:
    """The render cache's work for one task type: completed tasks answered from an entry (`hits`) or from
    another task's render (`coalesced`), those that rendered with a key (`misses`), and the processing
    seconds the answers saved (each the source task's)."""

    hits: int = 0
    coalesced: int = 0
    misses: int = 0
    saved_seconds: float = 0.0


@dataclass
class TaskMetrics:
    """Seed 001's cumulative counters of a tenant's tasks (the REST body's `metrics`)."""

    total_tasks: int
    completed_tasks: int
    failed_tasks: int
    retried_tasks: int
    cancelled_tasks: int
    success_rate: float
    failure_rate: float
    average_durations: dict[str, float]
    currently_running: int


@dataclass
class TaskMetricsSummary(TaskMetrics):
    # Finished tasks are counted up to this instant; `stale_since` is set when counting stopped moving.
    counted_until: datetime | None = None
    stale_since: datetime | None = None
    # Render cache counts per task type (types that never used the cache are absent); beside the seed's.
    cache: dict[str, CacheSavings] = field(default_factory=dict)


@dataclass
class Alert:
    """One alert of /tasks/health (seed 001's fields)."""

    severity: str
    message: str
    metric: str
    value: float
    task_id: str | None = None
    worker: str | None = None


def stale_since_of(counted_until: datetime | None, now: datetime) -> datetime | None:
    if counted_until is None or now - counted_until <= METRICS_STALE_AFTER:
        return None
    return counted_until


def staleness_alerts(metrics: TaskMetricsSummary) -> list[Alert]:
    """Frozen counts are an outage of the metrics, not numbers to serve as fresh."""
    why = (
        f"the metrics workflow ({METRICS_WORKFLOW_ID}) is not moving: no worker polls '{WORKFLOW_QUEUE}', or "
        "its workflow task is stranded (a dev server started on the same data with other flags)"
    )
    if metrics.counted_until is None:
        message = f"Task metrics are not being counted: {why}"
        return [Alert(severity="critical", message=message, metric="metrics_staleness", value=0.0)]
    if metrics.stale_since is None:
        return []
    behind = (datetime.now(UTC) - metrics.stale_since).total_seconds()
    return [
        Alert(
            severity="critical",
            message=f"Task metrics stale since {iso_z(metrics.stale_since)} ({behind:.0f} s): {why}",
            metric="metrics_staleness",
            value=round(behind),
        )
    ]


def failure_rate_alerts(metrics: TaskMetricsSummary) -> list[Alert]:
    if metrics.failure_rate <= FAILURE_RATE_WARNING:
        return []
    critical = metrics.failure_rate > FAILURE_RATE_CRITICAL
    return [
        Alert(
            severity="critical" if critical else "warning",
            message=f"{'High' if critical else 'Elevated'} failure rate: {metrics.failure_rate:.2f}%",
            metric="failure_rate",
            value=metrics.failure_rate,
        )
    ]


def seed_metrics(summary: TaskMetricsSummary) -> TaskMetrics:
    """The seed's counters alone, as the REST body carries them."""
    return TaskMetrics(**{f.name: getattr(summary, f.name) for f in fields(TaskMetrics)})
