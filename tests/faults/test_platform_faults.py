"""The API or the Temporal server dies mid-run: every accepted task still finishes, exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import httpx
import pytest
from temporalio.client import Client

from tests.support.stack import API_KEYS, Stack
from tests.support.tasks import count_workflows, submit, wait_status


async def _executions(temporal: Client, project: str, expected: int) -> tuple[int, int]:
    """Temporal's count of the project's task executions, and of those completed."""
    query = f'ProjectId = "{project}"'
    return (
        await count_workflows(temporal, query, expected),
        await count_workflows(temporal, f'{query} AND TaskStatus = "completed"', expected),
    )


@pytest.mark.parametrize(
    ("requests", "kill_at"), [(200, 60), pytest.param(800, 240, marks=pytest.mark.heavy, id="800")]
)
async def test_api_killed_during_a_burst_loses_no_accepted_task(
    api: httpx.AsyncClient, stack: Stack, temporal_client: Client, requests: int, kill_at: int
) -> None:
    """Each submit carries its own Idempotency-Key; those cut off by the kill are sent again to the API that
    lives, as a client of seed 001 would. Then every request has one task, and each task ran once."""
    project = f"p_burst_{uuid.uuid4().hex[:8]}"
    process, url = stack.start_api("api-burst")
    body = {"project_id": project, "task_type": "test_prompt", "task_data": {"prompt_template": "burst"}}
    accepted: dict[str, str] = {}
    cut_off: list[str] = []

    async def one(client: httpx.AsyncClient, gate: asyncio.Semaphore, key: str) -> None:
        async with gate:
            try:
                response = await client.post(
                    "/api/v1/tasks/submit", json=body, headers={"Idempotency-Key": key}
                )
            except httpx.HTTPError:
                cut_off.append(key)
                return
            assert response.status_code == 200, response.text
            accepted[key] = response.json()["task_id"]
            if len(accepted) == kill_at:
                os.kill(process.pid, signal.SIGKILL)

    keys = [f"{project}-{i}" for i in range(requests)]
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=30) as client:
        gate = asyncio.Semaphore(16)
        await asyncio.gather(*(one(client, gate, key) for key in keys))
    assert kill_at <= len(accepted) < requests and len(accepted) + len(cut_off) == requests
    for key in cut_off:
        response = await api.post("/api/v1/tasks/submit", json=body, headers={"Idempotency-Key": key})
        assert response.status_code == 200, response.text
        accepted[key] = response.json()["task_id"]
    task_ids = set(accepted.values())
    assert len(task_ids) == requests
    for task_id in task_ids:
        status = await wait_status(api, task_id, "completed", timeout=120)
        assert status["result"]["output"] == "FAKE-LLM: burst"
    # Accepted = executions = completed: none lost, none started twice.
    assert await _executions(temporal_client, project, requests) == (requests, requests)


@pytest.mark.parametrize("tasks", [6, pytest.param(30, marks=pytest.mark.heavy, id="30")])
async def test_temporal_server_killed_and_restarted_mid_run(
    api: httpx.AsyncClient, stack: Stack, temporal_client: Client, tasks: int
) -> None:
    project = f"p_outlive_{uuid.uuid4().hex[:8]}"
    ids = [
        await submit(
            api, "test_prompt", {"prompt_template": f"outlive server {i} [[sleep=2]]"}, project_id=project
        )
        for i in range(tasks)
    ]
    await wait_status(api, ids[0], "processing")
    stack.temporal.kill()
    await asyncio.sleep(1)
    stack.temporal.start()  # same port, same SQLite file
    for task_id in ids:
        status = await wait_status(api, task_id, {"completed", "failed"}, timeout=120)
        assert status["status"] == "completed", status
    assert await _executions(temporal_client, project, tasks) == (tasks, tasks)
