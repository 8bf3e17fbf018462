"""The per-project cap counts a project's unfinished tasks about once a second, not once per submit, and never
refuses on a count older than the refusal (the HTTP answer at the cap: test_idempotency_limits)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from temporalio.client import Client

from api.domain.errors import RateLimited
from api.service.capacity import ProjectCapacity
from api.store.store import TaskStore, metered
from tests.support.tasks import submit, wait_status

TENANT = "default"  # the tenant of the `api` fixture's key


async def test_one_count_serves_a_projects_submits_and_the_cap_counts_again(temporal_client: Client) -> None:
    capacity = ProjectCapacity(TaskStore(temporal_client), limit=3)
    project = f"p_cap_{uuid.uuid4().hex[:8]}"
    with metered() as meter:
        for _ in range(3):
            await capacity.admit(TENANT, project)
        assert meter.queries == 1
        # The estimate has reached the cap, but none of those tasks was started: counted again, admitted.
        await capacity.admit(TENANT, project)
        assert meter.queries == 2
        await capacity.admit("another-tenant", project)  # a project is a name within its tenant
        assert meter.queries == 3


async def test_the_cap_refuses_on_a_fresh_count_and_a_finished_task_frees_its_place(
    api: httpx.AsyncClient, temporal_client: Client
) -> None:
    project = f"p_cap_{uuid.uuid4().hex[:8]}"
    capacity = ProjectCapacity(TaskStore(temporal_client), limit=2)
    held = [
        await submit(api, "test_prompt", {"prompt_template": "held [[sleep=30]]"}, project_id=project)
        for _ in range(2)
    ]
    with pytest.raises(RateLimited, match=f"Project {project} already has 2 unfinished tasks"):
        await capacity.admit(TENANT, project)
    assert (await api.delete(f"/api/v1/tasks/{held[0]}")).status_code == 200
    await wait_status(api, held[0], "cancelled")
    # Visibility records the close a moment after the status says it.
    deadline = time.monotonic() + 15
    while True:
        try:
            await capacity.admit(TENANT, project)
            break
        except RateLimited:
            assert time.monotonic() < deadline, "the finished task still counted after 15 s"
            await asyncio.sleep(0.2)
    assert (await api.delete(f"/api/v1/tasks/{held[1]}")).status_code == 200
