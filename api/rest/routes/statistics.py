"""Numbers about tasks: seed 001's cumulative metrics and alerts, seed 002's statistics."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.domain.errors import ValidationFailed
from api.rest.deps import CallerDep, InsightServiceDep
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses
from api.rest.schemas import (
    MetricsResponse,
    StatisticsResponse,
    TaskQueueHealthResponse,
)
from api.service.alerts import seed_metrics

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"], route_class=DocumentedRoute)

HEALTH_METRICS = {
    "total_tasks",
    "completed_tasks",
    "failed_tasks",
    "success_rate",
    "failure_rate",
    "currently_running",
}


@router.get("/metrics", responses=error_responses(*AUTHENTICATED))
async def task_metrics(caller: CallerDep, insights: InsightServiceDep) -> MetricsResponse:
    """Cumulative task metrics.

    Seed 001's counters of the caller's tenant, kept across restarts and beyond the retention.
    """
    metrics = await insights.metrics(caller)
    return MetricsResponse(
        metrics=seed_metrics(metrics),
        timestamp=datetime.now(UTC),
        counted_until=metrics.counted_until,
        stale_since=metrics.stale_since,
        cache=metrics.cache,
    )


@router.get("/health", responses=error_responses(*AUTHENTICATED))
async def task_queue_health(caller: CallerDep, insights: InsightServiceDep) -> TaskQueueHealthResponse:
    """Task queue health with alerts.

    Seed 001's alerts: failure rate over 10 / 20 %, a task running over 8 / 9.5 min, a worker's RSS over
    1.5 / 1.9 GB.
    """
    metrics, alerts = await insights.health(caller)
    severities = {a.severity for a in alerts}
    status = "critical" if "critical" in severities else "warning" if alerts else "healthy"
    return TaskQueueHealthResponse(
        status=status,
        metrics={k: v for k, v in asdict(metrics).items() if k in HEALTH_METRICS},
        alerts=alerts,
        timestamp=datetime.now(UTC),
    )


@router.get("/statistics", responses=error_responses(ValidationFailed, *AUTHENTICATED))
async def task_statistics(
    caller: CallerDep,
    insights: InsightServiceDep,
    hours: Annotated[
        float, Query(gt=0, le=24 * 30, description="The window: the last N hours (≤ 720).")
    ] = 24.0,
) -> StatisticsResponse:
    """Counts by type and status.

    Tasks created in the window, by type and status, counted in Temporal visibility.
    """
    now = datetime.now(UTC)
    stats = await insights.statistics(caller, now - timedelta(hours=hours))
    by_type = {
        task_type: {status.value: count for status, count in row.items() if count}
        for task_type, row in stats.counts.items()
        if any(row.values())
    }
    by_status = {status.value: count for status, count in stats.by_status().items()}
    return StatisticsResponse(
        window_hours=hours,
        since=stats.since,
        total=sum(by_status.values()),
        by_status=by_status,
        by_type=by_type,
        timestamp=now,
    )
