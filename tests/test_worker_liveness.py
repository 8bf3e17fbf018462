"""One rule of a live worker: `/api/v1/workers/health` and `/api/v1/health` count by it and agree.

A worker is alive while its reports arrive: a dead one shows `gone` within 60 s (Temporal's poller list
keeps a killed worker for up to 70 s, so it is not the rule).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import value_to_type
from temporalio.worker import Worker

from api.service.insights import worker_is_alive
from taskservice.contracts import WorkerReport
from taskservice.record import WORKERS_MEMO
from tests.support.processes import TemporalDevServer
from tests.support.stack import ADMIN_KEY
from workflows.bookkeeping import WorkerRegistryWorkflow

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _report(seconds_ago: float, state: str = "running") -> WorkerReport:
    last_seen = (NOW - timedelta(seconds=seconds_ago)).isoformat()
    return WorkerReport("default@host:1", "default", 1, "host", state, started_at="", last_seen=last_seen)


def test_a_worker_is_alive_while_it_reports() -> None:
    assert worker_is_alive(_report(5), NOW, 10.0)
    assert not worker_is_alive(_report(31), NOW, 10.0)  # 3 reports missed
    assert not worker_is_alive(_report(61), NOW, 60.0)  # never more than 60 s
    assert not worker_is_alive(_report(1, state="stopped"), NOW, 10.0)


async def test_both_health_endpoints_count_the_same_live_workers(api: httpx.AsyncClient) -> None:
    # A worker may be replaced between the two reads (recycling): compare a few times.
    admin = {"X-API-Key": ADMIN_KEY}  # the workers themselves are listed to operators only
    for _ in range(10):
        workers = (await api.get("/api/v1/workers/health", headers=admin)).json()
        health = (await api.get("/api/v1/health")).json()
        if health["worker_count"] == workers["alive"]:
            break
        await asyncio.sleep(1)
    assert health["worker_count"] == workers["alive"] == sum(w["alive"] for w in workers["workers"]) > 0
    assert health["status"] == "healthy"


async def _published(handle: WorkflowHandle[Any, Any]) -> dict[str, WorkerReport]:
    memo = await (await handle.describe()).memo()
    reports: dict[str, WorkerReport] = value_to_type(dict[str, WorkerReport], memo.get(WORKERS_MEMO) or {})
    return reports


async def _upserts(handle: WorkflowHandle[Any, Any]) -> int:
    history = await handle.fetch_history()
    return sum(e.event_type == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED for e in history.events)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout, f"not within {timeout}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@asynccontextmanager
async def _registry(temporal_server: TemporalDevServer) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    """A worker registry workflow of this test's own (own ID and queue), on a worker in this process."""
    client = await Client.connect(temporal_server.address)
    queue = f"registry-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[WorkerRegistryWorkflow]):
        handle = await client.start_workflow(WorkerRegistryWorkflow.run, None, id=queue, task_queue=queue)
        try:
            yield handle
        finally:
            await handle.terminate()


def _worker(index: int, interval_s: float) -> WorkerReport:
    return WorkerReport(
        f"default@h:{index}", "default", index, "h", "running", "", report_interval_s=interval_s
    )


async def test_registry_publishes_refreshes_together_and_changes_at_once(
    temporal_server: TemporalDevServer,
) -> None:
    """Reports that only refresh figures share one memo upsert per window (5 s, or the shortest report
    interval); a new worker or a change of state is published at once."""
    async with _registry(temporal_server) as handle:
        workers = [_worker(i, 10.0) for i in range(3)]
        for report in workers:
            await handle.signal(WorkerRegistryWorkflow.report, report)

        async def all_known() -> bool:
            return len(await _published(handle)) == 3

        # New workers are published at once (the first report too, sent with the workflow's start).
        assert await _until(all_known, timeout=3) < 1.5
        before = await _upserts(handle)
        for done in range(1, 11):  # 30 refreshes within ~2 s
            for report in workers:
                report.tasks_done = done
                await handle.signal(WorkerRegistryWorkflow.report, report)
            await asyncio.sleep(0.2)

        async def refreshed() -> bool:
            return {w.tasks_done for w in (await _published(handle)).values()} == {10}

        await _until(refreshed, timeout=8)
        assert await _upserts(handle) - before <= 2
        workers[0].state = "draining"
        await handle.signal(WorkerRegistryWorkflow.report, workers[0])

        async def draining() -> bool:
            return (await _published(handle))[workers[0].identity].state == "draining"

        assert await _until(draining, timeout=3) < 1.5


async def test_a_live_worker_never_reads_as_gone_between_publishes(
    temporal_server: TemporalDevServer,
) -> None:
    """Refreshes wait at most one report interval, so the API's rule (3 missed reports) keeps its margin."""
    async with _registry(temporal_server) as handle:
        worker = _worker(0, 1.0)
        deadline = time.monotonic() + 6
        checked = 0
        while time.monotonic() < deadline:
            await handle.signal(WorkerRegistryWorkflow.report, worker)
            for _ in range(4):
                await asyncio.sleep(0.25)
                published = (await _published(handle)).get(worker.identity)
                if published is not None:
                    checked += 1
                    assert worker_is_alive(published, datetime.now(UTC), 1.0), published.last_seen
        assert checked >= 15
        assert await _upserts(handle) < 10  # one per report at most


async def test_worker_and_queue_internals_are_shown_to_operators_only(api: httpx.AsyncClient) -> None:
    """Hosts, pids, models, pollers: a tenant sees the counts and totals, an operator each worker."""
    admin = {"X-API-Key": ADMIN_KEY}
    tenant_health = (await api.get("/api/v1/workers/health")).json()
    admin_health = (await api.get("/api/v1/workers/health", headers=admin)).json()
    assert (
        tenant_health["workers"] == [] and tenant_health["alive"] > 0 and tenant_health["by_queue"]["default"]
    )
    assert admin_health["workers"] and {"host", "pid", "identity", "loaded_models"} <= set(
        admin_health["workers"][0]
    )
    tenant_stats = (await api.get("/api/v1/workers/stats")).json()
    admin_stats = (await api.get("/api/v1/workers/stats", headers=admin)).json()
    assert tenant_stats["workers"] == [] and tenant_stats["totals"]["rss_mb"] > 0
    assert admin_stats["workers"] and admin_stats["totals"]["concurrency"] > 0
    tenant_queues = {q["queue"]: q for q in (await api.get("/api/v1/queues")).json()["queues"]}
    admin_queues = {q["queue"]: q for q in (await api.get("/api/v1/queues", headers=admin)).json()["queues"]}
    assert tenant_queues["default"]["pollers"] == [] and tenant_queues["default"]["worker_count"] >= 1
    assert len(admin_queues["default"]["pollers"]) == admin_queues["default"]["worker_count"] >= 1
    query = "{ taskQueueStatus { workerCount queues { name pollers workerCount } } }"
    graphql = (await api.post("/graphql", json={"query": query})).json()["data"]["taskQueueStatus"]
    assert graphql["workerCount"] >= 4 and all(q["pollers"] == [] for q in graphql["queues"])
    everything = str([tenant_health, tenant_stats, tenant_queues, graphql])
    for worker in admin_health["workers"]:
        assert worker["identity"] not in everything and worker["host"] not in everything
