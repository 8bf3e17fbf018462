"""The cluster-wide slots (seed 002's caps) go to tenants in weighted turns within a priority, not by arrival,
and a limiter keeps a bounded line per tenant whatever the backlog (workflows/fair_slots.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError

from taskservice.contracts import LimiterState, SlotRequest
from taskservice.queues import limiter_workflow_id
from tests.support.processes import ServiceProcess
from tests.support.stack import API_KEYS, ISOLATED_NAMESPACE, OTHER_KEYS, Stack, wait_for_pollers
from tests.support.tasks import wait_status
from workflows import fair_slots

IMAGE = {"prompt": "a lantern", "resolution": "64x64", "quality": "draft"}


def _served(weights: dict[str, float], waiting: int, turns: int) -> list[str]:
    """Who a limiter serves, turn by turn, when each tenant has `waiting` requests in line."""
    state = LimiterState(group="image", limit=1)
    for i in range(waiting):
        for tenant, weight in weights.items():
            request = SlotRequest(f"{tenant}-{i}", 1, tenant=tenant, weight=weight)
            state.waiting.append(request)
            fair_slots.join(state, request)
    return [fair_slots.take_next(state).holder_id.split("-")[0] for _ in range(turns)]


def test_turns_follow_the_weights_and_priority_comes_first() -> None:
    assert _served({"a": 1, "b": 1}, waiting=3, turns=6) == ["a", "b", "a", "b", "a", "b"]
    assert _served({"a": 1, "b": 2}, waiting=6, turns=9) == ["a", "b", "b", "a", "b", "b", "a", "b", "b"]
    state = LimiterState(group="image", limit=1)
    for request in (
        SlotRequest("a-low", 1, priority_key=4, tenant="a"),
        SlotRequest("b-hi", 1, 2, tenant="b"),
    ):
        state.waiting.append(request)
        fair_slots.join(state, request)
    assert fair_slots.take_next(state).holder_id == "b-hi"


def test_a_tenants_line_is_bounded_and_keeps_its_best_requests() -> None:
    state = LimiterState(group="image", limit=1)
    backlog = fair_slots.WAITING_PER_TENANT + 5
    for i in range(backlog):
        state.waiting.append(SlotRequest(f"a-{i}", 1, priority_key=3, tenant="a"))
    state.waiting.append(SlotRequest("a-urgent", 1, priority_key=1, tenant="a"))
    state.waiting.append(SlotRequest("b-0", 1, priority_key=3, tenant="b"))
    deferred = fair_slots.overflow(state)
    assert [d.holder_id for d in deferred] == [f"a-{i}" for i in range(backlog - 6, backlog)]
    assert sum(w.tenant == "a" for w in state.waiting) == fair_slots.WAITING_PER_TENANT
    assert {"a-urgent", "b-0"} <= {w.holder_id for w in state.waiting}
    # Turns of tenants with nothing waiting and nothing held are forgotten: the state holds active ones only.
    state.turns = {"a": 1.0, "b": 2.0, "gone": 7.0}
    fair_slots.forget_idle(state)
    assert set(state.turns) == {"a", "b"}


@pytest.fixture(scope="module")
async def orchestrator(stack: Stack) -> AsyncIterator[ServiceProcess]:
    """A worker of the default queue in a namespace of this module's: it runs the workflows (limiters
    included); the image worker comes and goes per test."""
    worker = stack.spawn("worker-fair-slots", ["workers", "default"], TEMPORAL_NAMESPACE=ISOLATED_NAMESPACE)
    await wait_for_pollers(stack.temporal.address, ISOLATED_NAMESPACE, ["default"])
    yield worker
    worker.stop()


async def _limiter(temporal: Client, group: str) -> dict[str, int]:
    try:
        memo = await (await temporal.get_workflow_handle(limiter_workflow_id(group)).describe()).memo()
    except RPCError:  # not started yet
        memo = {}
    line = memo.get("limiter", {})  # none until its first workflow task
    return {key: int(line.get(key, 0)) for key in ("running", "waiting")}


async def _until(
    what: str | Callable[[], str], check: Callable[[], Awaitable[bool]], timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what() if callable(what) else what
        await asyncio.sleep(0.2)


async def _signals(temporal: Client, task_id: str, name: str) -> list[datetime]:
    history = await temporal.get_workflow_handle(task_id).fetch_history()
    return [
        event.event_time.ToDatetime()
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and event.workflow_execution_signaled_event_attributes.signal_name == name
    ]


async def test_another_tenant_takes_the_next_image_slot(stack: Stack, orchestrator: ServiceProcess) -> None:
    """Tenant A queues 12 image tasks at HIGH (the highest every tenant may ask for); tenant B then submits
    one. No image worker runs until B's request waits at the limiter too, so the order is the limiter's."""
    temporal = await Client.connect(stack.temporal.address, namespace=ISOLATED_NAMESPACE)
    api, url = stack.start_api("api-fair-slots", TEMPORAL_NAMESPACE=ISOLATED_NAMESPACE)
    gpu: ServiceProcess | None = None
    try:
        project = f"p_fair_slots_{uuid.uuid4().hex[:6]}"
        item = {"project_id": project, "task_type": "generate_image", "task_data": IMAGE, "priority": "HIGH"}
        async with (
            httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=60) as tenant_a,
            httpx.AsyncClient(base_url=url, headers={"X-API-Key": OTHER_KEYS[0]}, timeout=60) as tenant_b,
        ):
            batch = await tenant_a.post("/api/v1/tasks/batch", json={"tasks": [item] * 12})
            assert batch.json()["created"] == 12, batch.text
            a_ids = [r["task"]["task_id"] for r in batch.json()["results"]]

            line: dict[str, int] = {}

            async def a_waits() -> bool:
                line.update(await _limiter(temporal, "image"))
                return line == {"running": 3, "waiting": 9}

            await _until(lambda: f"A's 12 tasks never all reached the image limiter: {line}", a_waits)
            submitted = await tenant_b.post("/api/v1/tasks/submit", json=item)
            b_id = submitted.json()["task_id"]

            async def b_waits() -> bool:
                return (await _limiter(temporal, "image"))["waiting"] == 10

            await _until("B's task never reached the image limiter", b_waits)
            gpu = stack.spawn(
                "worker-fair-slots-gpu", ["workers", "gpu_medium"], TEMPORAL_NAMESPACE=ISOLATED_NAMESPACE
            )
            b_view = await wait_status(tenant_b, b_id, "completed", timeout=180)
            a_views = [await wait_status(tenant_a, t, "completed", timeout=180) for t in a_ids]
        granted = {t: (await _signals(temporal, t, "slot_granted"))[0] for t in [*a_ids, b_id]}
        grant_order = ["B" if t == b_id else "A" for t in sorted(granted, key=lambda t: granted[t])]
        started = {t["task_id"]: _moment(t["started_at"]) for t in [*a_views, b_view]}
        start_order = ["B" if t == b_id else "A" for t in sorted(started, key=lambda t: started[t])]
        print(f"\nfair slots: grant order {''.join(grant_order)}; start order {''.join(start_order)}")
        # A's first three held the slots before B asked; B takes the first slot freed after that.
        assert grant_order.index("B") == 3, grant_order
        # Of A's tasks granted after B asked, none started before B's.
        a_after_b = [t for t in a_ids if granted[t] > granted[b_id]]
        assert sum(started[t] < started[b_id] for t in a_after_b) == 0, start_order
    finally:
        if gpu is not None:
            gpu.stop()
        api.stop()


async def test_a_backlog_past_the_line_asks_again_and_completes(
    stack: Stack, orchestrator: ServiceProcess
) -> None:
    """One tenant queues more than its line at the limiter holds: the rest are told to ask again later, the
    limiter never holds more than the line, and every task runs."""
    temporal = await Client.connect(stack.temporal.address, namespace=ISOLATED_NAMESPACE)
    api, url = stack.start_api(
        "api-fair-line", TEMPORAL_NAMESPACE=ISOLATED_NAMESPACE, MAX_CONCURRENT_TASKS="1"
    )
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=60) as client:
            project = f"p_fair_line_{uuid.uuid4().hex[:6]}"
            body = {"project_id": project, "task_type": "test_prompt"}
            holder = await client.post(
                "/api/v1/tasks/submit", json={**body, "task_data": {"prompt_template": "hold [[sleep=4]]"}}
            )
            await wait_status(client, holder.json()["task_id"], "processing")
            backlog = fair_slots.WAITING_PER_TENANT + 4
            quick = [{**body, "task_data": {"prompt_template": f"quick {i}"}} for i in range(backlog)]
            batch = await client.post("/api/v1/tasks/batch", json={"tasks": quick})
            ids = [r["task"]["task_id"] for r in batch.json()["results"]]
            # The line at the limiter, watched until the backlog has drained through it.
            most = 0

            async def drained() -> bool:
                nonlocal most
                line = await _limiter(temporal, "total")
                most = max(most, line["waiting"])
                return line == {"running": 0, "waiting": 0}

            await _until("the backlog never drained", drained, timeout=180)
            for task_id in ids:
                await wait_status(client, task_id, "completed", timeout=120)
        deferred = [t for t in ids if await _signals(temporal, t, "slot_deferred")]
        print(f"\nfair slots: the line held at most {most} of {backlog}; {len(deferred)} asked again later")
        assert most <= fair_slots.WAITING_PER_TENANT
        assert len(deferred) >= backlog - fair_slots.WAITING_PER_TENANT
    finally:
        api.stop()


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
