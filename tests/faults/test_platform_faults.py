"""The API or the Temporal server dies mid-run: every accepted task still finishes."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx

from tests.conftest import API_KEYS, Stack, submit, wait_status


async def test_api_killed_during_a_burst_loses_no_accepted_task(api: httpx.AsyncClient, stack: Stack) -> None:
    process, url = stack.start_api("api-burst")
    accepted: list[str] = []
    body = {"project_id": "p_burst", "task_type": "test_prompt", "task_data": {"prompt_template": "burst"}}

    async def one(client: httpx.AsyncClient, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                response = await client.post("/api/v1/tasks/submit", json=body)
            except httpx.HTTPError:
                return
            if response.status_code == 200:
                accepted.append(response.json()["task_id"])
                if len(accepted) == 60:
                    os.kill(process.pid, signal.SIGKILL)

    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=30) as client:
        gate = asyncio.Semaphore(16)
        await asyncio.gather(*(one(client, gate) for _ in range(200)))
    assert 60 <= len(accepted) < 200, len(accepted)
    for task_id in accepted:
        status = await wait_status(api, task_id, "completed", timeout=120)
        assert status["result"]["output"] == "FAKE-LLM: burst"


async def test_temporal_server_killed_and_restarted_mid_run(api: httpx.AsyncClient, stack: Stack) -> None:
    ids = [
        await submit(api, "test_prompt", {"prompt_template": f"outlive server {i} [[sleep=2]]"})
        for i in range(6)
    ]
    await wait_status(api, ids[0], "processing")
    stack.temporal.kill()
    await asyncio.sleep(1)
    stack.temporal.start()  # same port, same SQLite file
    for task_id in ids:
        status = await wait_status(api, task_id, {"completed", "failed"}, timeout=120)
        assert status["status"] == "completed", status
