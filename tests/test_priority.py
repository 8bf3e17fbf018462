"""Seed priority 1 (high) is served before priority 3 (low) from the same backlog."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.support.stack import ISOLATED_NAMESPACE, Stack
from tests.support.tasks import submit, wait_status


async def _backlog(api: httpx.AsyncClient) -> int:
    queues = (await api.get("/api/v1/queues")).json()["queues"]
    return int(next(q["backlog"] for q in queues if q["queue"] == "default"))


async def _dispatch_order(api: httpx.AsyncClient) -> list[str]:
    """A blocker holds the only slot while 5 low tasks and then 1 high task queue up; return start order."""
    blocker = await submit(api, "test_prompt", {"prompt_template": "block [[sleep=60]]"})
    await wait_status(api, blocker, "processing")
    low = [await submit(api, "test_prompt", {"prompt_template": f"low {i}"}, priority=3) for i in range(5)]
    high = await submit(api, "test_prompt", {"prompt_template": "high"}, priority=1)
    # Free the slot only once all six activity tasks wait in the backlog, however slow the machine is.
    deadline = time.monotonic() + 30
    while await _backlog(api) < 6:
        assert time.monotonic() < deadline, "the six tasks never all reached the backlog"
        await asyncio.sleep(0.1)
    assert (await api.delete(f"/api/v1/tasks/{blocker}")).status_code == 200
    started = {}
    for task_id in [*low, high]:
        started[task_id] = (await wait_status(api, task_id, "completed", timeout=30))["started_at"]
    return ["HIGH" if t == high else "low" for t in sorted(started, key=lambda t: started[t])]


async def test_high_priority_overtakes_a_low_priority_backlog(stack: Stack) -> None:
    # A worker of its own with one slot, so nothing else competes for it while the backlog forms.
    async with stack.replica("priority", ISOLATED_NAMESPACE, WORKER_CONCURRENCY_DEFAULT="1") as replica:
        async with replica.client() as api:
            # Without priority the high task, submitted last of six, would start last. The stack's queues have
            # one partition, so the matcher's order is strict and the high task starts first.
            order = await _dispatch_order(api)
    assert order[0] == "HIGH", order
