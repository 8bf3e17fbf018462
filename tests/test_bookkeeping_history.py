"""The long-lived bookkeeping workflows keep their histories small: after a few hundred tasks through a
concurrency cap, every run of the metrics, registry and limiter workflows is under 100 KB (they
continue-as-new by bytes, not only by events), and a run replays in under a second.

A metrics history of 4000 events reached 572 KB in `make dev`, and its workflow tasks took over 5 s
(TMPRL1104) at every worker restart. Continuing the limiter as new that often also showed that a new run lost
the slot requests of its first activation (tasks stayed queued for good): it now takes its state at init.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from taskservice.payloads import DATA_CONVERTER
from taskservice.queues import METRICS_WORKFLOW_ID, WORKER_REGISTRY_WORKFLOW_ID, limiter_workflow_id
from tests.support.stack import API_KEYS, HISTORY_NAMESPACE, Stack
from workflows.bookkeeping import TaskMetricsWorkflow, WorkerRegistryWorkflow
from workflows.limiter import ConcurrencyLimiterWorkflow

TASKS = 300
BATCH = 50
MAX_HISTORY_BYTES = 100_000
PROJECT = "p_bookkeeping_history"


def _size(history: WorkflowHistory) -> int:
    return sum(event.ByteSize() for event in history.events)


def _digest(history: WorkflowHistory) -> dict[str, int]:
    """Events by type: what a history too large is made of."""
    return dict(Counter(EventType.Name(event.event_type) for event in history.events))


async def _runs(temporal: Client, workflow_id: str) -> list[WorkflowHistory]:
    histories = []
    async for run in temporal.list_workflows(f'WorkflowId = "{workflow_id}"'):
        handle = temporal.get_workflow_handle(workflow_id, run_id=run.run_id)
        histories.append(await handle.fetch_history())
    return histories


async def _submit_and_finish(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=120) as api:
        body = {"project_id": PROJECT, "task_type": "test_prompt", "task_data": {"prompt_template": "n"}}
        # In batches of 50, 2 s apart: a burst's slot requests land in one history whatever the workflow does
        # (300 at once are ~120 KB of signals before its next workflow task), so the bursts are kept apart.
        for _ in range(TASKS // BATCH):
            answer = await api.post("/api/v1/tasks/batch", json={"tasks": [body] * BATCH})
            assert answer.status_code == 200, answer.text
            assert all(item["success"] for item in answer.json()["results"]), answer.text
            await asyncio.sleep(2)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            listing = await api.get(f"/api/v1/projects/{PROJECT}/tasks", params={"status": "completed"})
            if listing.json()["pagination"]["total"] >= TASKS:
                return
            await asyncio.sleep(2)
        counts = {
            status: (await api.get(f"/api/v1/projects/{PROJECT}/tasks", params={"status": status})).json()[
                "pagination"
            ]["total"]
            for status in ("queued", "processing", "completed", "failed", "cancelled")
        }
        limiter = await api.get("/api/v1/queues")
        raise AssertionError(f"{TASKS} tasks did not complete in 10 minutes: {counts}; {limiter.text[:1500]}")


async def test_bookkeeping_histories_stay_small_and_replay_fast(stack: Stack) -> None:
    async with stack.replica("histories", HISTORY_NAMESPACE, MAX_CONCURRENT_TASKS="50") as replica:
        try:
            await _submit_and_finish(replica.url)
        finally:
            async with replica.client() as api:
                # A failed run leaves no queued tasks behind it.
                for status in ("queued", "processing"):
                    body = {"project_id": PROJECT, "status": status}
                    await api.post("/api/v1/tasks/bulk/cancel", json=body)
    temporal_client = await Client.connect(stack.temporal.address, namespace=HISTORY_NAMESPACE)
    replayer = Replayer(
        workflows=[TaskMetricsWorkflow, WorkerRegistryWorkflow, ConcurrencyLimiterWorkflow],
        data_converter=DATA_CONVERTER,
    )
    runs = {
        workflow_id: await _runs(temporal_client, workflow_id)
        for workflow_id in (METRICS_WORKFLOW_ID, WORKER_REGISTRY_WORKFLOW_ID, limiter_workflow_id("total"))
    }
    # Without the byte limit, 300 tasks' slot requests and releases make one limiter history of ~400 KB.
    assert len(runs[limiter_workflow_id("total")]) > 1, "the limiter never continued as new"
    for workflow_id, histories in runs.items():
        sizes = [_size(history) for history in histories]
        largest = histories[sizes.index(max(sizes))]
        first = largest.events[0].ByteSize()
        assert max(sizes) < MAX_HISTORY_BYTES, (workflow_id, sizes, first, _digest(largest))
        await replayer.replay_workflow(largest)  # the first replay also builds the sandbox's imports
        started = time.monotonic()
        await replayer.replay_workflow(largest)
        assert time.monotonic() - started < 1.0, (workflow_id, max(sizes))
