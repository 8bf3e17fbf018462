"""Bookkeeping that says when it is stale: `counted_until`/`stale_since` and a critical health alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from api.service.alerts import METRICS_STALE_AFTER, TaskMetricsSummary, stale_since_of, staleness_alerts
from tests.support.stack import API_KEYS, EMPTY_NAMESPACE, Stack


def _summary(counted_until: datetime | None, now: datetime) -> TaskMetricsSummary:
    return TaskMetricsSummary(
        total_tasks=3,
        completed_tasks=3,
        failed_tasks=0,
        retried_tasks=0,
        cancelled_tasks=0,
        success_rate=100.0,
        failure_rate=0.0,
        average_durations={},
        currently_running=0,
        counted_until=counted_until,
        stale_since=stale_since_of(counted_until, now),
    )


def test_counts_that_stopped_moving_are_stale_and_critical() -> None:
    now = datetime.now(UTC)
    fresh = _summary(now - timedelta(seconds=12), now)
    assert fresh.stale_since is None and staleness_alerts(fresh) == []
    frozen_at = now - METRICS_STALE_AFTER - timedelta(seconds=30)
    frozen = _summary(frozen_at, now)
    assert frozen.stale_since == frozen_at
    [alert] = staleness_alerts(frozen)
    assert alert.severity == "critical" and alert.metric == "metrics_staleness"
    assert "task-service-metrics" in alert.message and "task-workflows" in alert.message
    assert alert.value >= 90
    [never] = staleness_alerts(_summary(None, now))
    assert never.severity == "critical" and "not being counted" in never.message


async def test_metrics_say_how_far_they_counted(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/v1/tasks/metrics")).json()
    counted_until = datetime.fromisoformat(body["counted_until"])
    # The metrics workflow scans every 2 s, 3 s behind now, and publishes its progress at least every 10 s.
    assert datetime.now(UTC) - counted_until < timedelta(seconds=30), body
    assert body["stale_since"] is None
    health = (await api.get("/api/v1/tasks/health")).json()
    assert not [a for a in health["alerts"] if a["metric"] == "metrics_staleness"]


async def test_health_is_critical_where_nothing_counts_the_metrics(stack: Stack) -> None:
    process, url = stack.start_api("api-no-metrics", TEMPORAL_NAMESPACE=EMPTY_NAMESPACE)
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}) as client:
            metrics = (await client.get("/api/v1/tasks/metrics")).json()
            assert metrics["counted_until"] is None and metrics["stale_since"] is None
            health = (await client.get("/api/v1/tasks/health")).json()
    finally:
        process.stop()
    assert health["status"] == "critical"
    [alert] = [a for a in health["alerts"] if a["metric"] == "metrics_staleness"]
    assert alert["severity"] == "critical" and "task-service-metrics" in alert["message"]
