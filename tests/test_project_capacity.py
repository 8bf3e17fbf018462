"""The per-project cap counts a project's unfinished tasks about once a second, not once per submit, and never
refuses on a count older than the refusal (the HTTP answer at the cap: test_idempotency_limits).

Through the app as production serves it (its lifespan, its dependencies, one replica's services across
requests), in this process so that the store's visibility queries can be counted (`metered`)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from temporalio.client import Client

from api.service.capacity import COUNT_TTL_S
from api.store.store import metered
from tests.support.in_process import app_client, wait_unfinished
from tests.support.stack import OTHER_KEYS, Stack
from tests.support.tasks import submit, wait_status

TENANT = "default"  # the tenant of API_KEYS
BURST = 8
HELD = {"prompt_template": "held [[sleep=30]]"}


async def test_a_burst_of_submits_to_a_project_costs_one_count(stack: Stack) -> None:
    project = f"p_cap_{uuid.uuid4().hex[:8]}"
    async with app_client(stack, MAX_CONCURRENT_PER_PROJECT="100") as api:
        with metered() as meter:
            started = time.monotonic()
            ids = [
                await submit(api, "test_prompt", {"prompt_template": "burst"}, project_id=project)
                for _ in range(BURST)
            ]
            # A project is a name within its tenant: another tenant's submit is counted on its own.
            ids.append(await _submit_as(api, OTHER_KEYS[0], project))
            elapsed = time.monotonic() - started
        # Within a second, one count of each tenant and of each tenant's project, and one listing of the
        # queue's open tasks for the estimates; a machine too loaded for that counts once more per second
        # it took.
        assert 5 <= meter.queries <= 5 + 5 * int(elapsed / COUNT_TTL_S), (meter.queries, elapsed)
        for task_id in ids[:BURST]:
            await wait_status(api, task_id, "completed")


async def _submit_as(api: httpx.AsyncClient, key: str, project: str) -> str:
    body = {"project_id": project, "task_type": "test_prompt", "task_data": {"prompt_template": "other"}}
    response = await api.post("/api/v1/tasks/submit", json=body, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def test_the_cap_refuses_submits_and_retries_on_a_fresh_count_and_a_finished_task_frees_its_place(
    stack: Stack, temporal_client: Client
) -> None:
    project = f"p_cap_{uuid.uuid4().hex[:8]}"
    async with app_client(stack, MAX_CONCURRENT_PER_PROJECT="2") as api:
        done = await submit(api, "test_prompt", {"prompt_template": "done first"}, project_id=project)
        await wait_status(api, done, "completed")
        await wait_unfinished(temporal_client, TENANT, 0, project)
        held = [await submit(api, "test_prompt", HELD, project_id=project) for _ in range(2)]
        await wait_unfinished(temporal_client, TENANT, 2, project)
        # A count taken while visibility had not yet recorded the second start lives COUNT_TTL_S: past it, the
        # next submit counts afresh (what this test is about), whatever the machine's timing was.
        await asyncio.sleep(COUNT_TTL_S + 0.2)
        with metered() as meter:
            third = await api.post(
                "/api/v1/tasks/submit",
                json={"project_id": project, "task_type": "test_prompt", "task_data": HELD},
            )
        assert third.status_code == 429, third.text
        assert f"Project {project} already has 2 unfinished tasks" in third.json()["message"]
        # The project's estimate stood at the cap: counted again before refusing (and the tenant's, if its
        # second had passed).
        assert 1 <= meter.queries <= 2
        # A retry is a start like any other: the cap holds for it too.
        refused = await api.post(f"/api/v1/tasks/{done}/retry")
        assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
        assert (await api.delete(f"/api/v1/tasks/{held[0]}")).status_code == 200
        await wait_status(api, held[0], "cancelled")
        # Visibility records the close a moment after the status says it.
        deadline = time.monotonic() + 15
        while (retried := await api.post(f"/api/v1/tasks/{done}/retry")).status_code == 429:
            assert time.monotonic() < deadline, "the finished task still counted after 15 s"
            await asyncio.sleep(0.2)
        assert retried.status_code == 200, retried.text
        for task_id in (held[1], retried.json()["new_task_id"]):
            await api.delete(f"/api/v1/tasks/{task_id}")
