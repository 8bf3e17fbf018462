"""One tenant's backlog does not hold another tenant's work behind it: activities carry the tenant as their
fairness key, and the task queue serves keys fairly (the dev server runs with matching.enableFairness)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime

from temporalio.client import Client

from tests.support.stack import API_KEYS, ISOLATED_NAMESPACE, OTHER_KEYS, Stack
from tests.support.tasks import no_open_tasks, wait_status

BACKLOG = 40
TASK_S = 2  # each task holds the only worker slot this long


async def _scheduled(temporal: Client, task_ids: list[str]) -> int:
    """How many of the tasks have their activity scheduled (waiting or running) or are done with it."""
    descriptions = await asyncio.gather(*(temporal.get_workflow_handle(t).describe() for t in task_ids))
    return sum(bool(d.raw_description.pending_activities) or d.close_time is not None for d in descriptions)


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_another_tenant_is_served_before_a_backlog_drains(stack: Stack) -> None:
    # A worker of its own with one slot: every task waits for it, in the order the queue chooses.
    async with (
        stack.replica("fairness", ISOLATED_NAMESPACE, WORKER_CONCURRENCY_DEFAULT="1") as replica,
        replica.client(API_KEYS[0]) as tenant_a,
        replica.client(OTHER_KEYS[0]) as tenant_b,
    ):
        project = f"p_fair_{uuid.uuid4().hex[:6]}"
        prompt = f"slow [[sleep={TASK_S}]]"
        tasks = [
            {"project_id": project, "task_type": "test_prompt", "task_data": {"prompt_template": prompt}}
        ]
        batch = await tenant_a.post("/api/v1/tasks/batch", json={"tasks": tasks * BACKLOG})
        assert batch.json()["created"] == BACKLOG, batch.text
        a_ids = [r["task"]["task_id"] for r in batch.json()["results"]]
        # B submits only once every one of A's activities waits in the queue, however slow the machine.
        temporal = await Client.connect(stack.temporal.address, namespace=ISOLATED_NAMESPACE)
        deadline = time.monotonic() + 60
        while await _scheduled(temporal, a_ids) < BACKLOG:
            assert time.monotonic() < deadline, "A's backlog never formed"
            await asyncio.sleep(0.2)
        b_id = (await tenant_b.post("/api/v1/tasks/submit", json={**tasks[0], "project_id": project})).json()
        b = await wait_status(tenant_b, b_id["task_id"], "completed", timeout=BACKLOG * TASK_S * 2)
        a_started = []
        for task_id in a_ids:
            started = (await tenant_a.get(f"/api/v1/tasks/{task_id}/status")).json()["started_at"]
            if started is not None:
                a_started.append(_moment(started))
        b_started, b_created = _moment(b["started_at"]), _moment(b["created_at"])
        ahead = sorted(s for s in a_started if s < b_started)
        overtook = [s for s in ahead if s > b_created]
        waited = (b_started - b_created).total_seconds()
        print(
            f"\nfairness: tenant B's task started after {len(ahead)} of tenant A's {BACKLOG} "
            f"({len(overtook)} of them started after B was submitted); B waited {waited:.1f} s for a slot "
            f"that A's backlog would have held ~{BACKLOG * TASK_S} s"
        )
        # Served fairly, B takes the next slot or the one after it (each tenant's turn in alternation).
        assert len(overtook) <= 2, (len(ahead), len(overtook))
        assert waited < 4 * TASK_S + 5
        cancelled = await tenant_a.post("/api/v1/tasks/bulk/cancel", json={"project_id": project})
        assert cancelled.status_code == 200
        await no_open_tasks(temporal)
