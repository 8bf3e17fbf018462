"""A worker dies while a pipeline's step runs: the step runs again elsewhere, the pipeline completes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import httpx

from tests.support.processes import child_pids
from tests.support.stack import API_KEYS, Stack


async def test_worker_killed_during_a_step_the_pipeline_completes(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    tag = uuid.uuid4().hex[:8]
    body = {
        "project_id": f"p_pipeline_kill_{tag}",
        "steps": [
            {
                "id": "slow",
                "task_type": "test_prompt",
                "task_data": {"prompt_template": f"{tag} [[sleep=4]]"},
            },
            {
                "id": "next",
                "task_type": "test_prompt",
                "task_data": {"prompt_template": {"from": "slow", "path": "result.output"}},
            },
        ],
    }
    submitted = await api.post("/api/v1/pipelines", json=body)
    assert submitted.status_code == 200, submitted.text
    pipeline_id = submitted.json()["pipeline_id"]
    supervisor = stack.workers["default"]
    [worker_pid] = child_pids(supervisor.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pipeline = (await api.get(f"/api/v1/pipelines/{pipeline_id}")).json()
        if pipeline["steps"][0]["status"] == "processing":
            break
        await asyncio.sleep(0.1)
    assert pipeline["steps"][0]["status"] == "processing", pipeline
    os.kill(worker_pid, signal.SIGKILL)
    done = (await api.get(f"/api/v1/pipelines/{pipeline_id}", params={"wait": 60})).json()
    assert done["status"] == "completed", done
    slow = (await api.get(f"/api/v1/tasks/{done['steps'][0]['task_id']}/status")).json()
    assert slow["attempt"] == 2 and slow["pipeline_id"] == pipeline_id
    assert tag in done["steps"][1]["result"]["output"]
    [new_pid] = child_pids(supervisor.pid)
    assert new_pid != worker_pid


async def test_the_api_that_started_a_pipeline_dies_and_it_completes(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    """The pipeline's state is its workflow's: another API replica reads it to its end."""
    tag = uuid.uuid4().hex[:8]
    process, url = stack.start_api("api-pipeline-kill")
    body = {
        "project_id": f"p_pipeline_api_{tag}",
        "steps": [
            {"id": "a", "task_type": "test_prompt", "task_data": {"prompt_template": f"{tag} [[sleep=2]]"}},
            {
                "id": "b",
                "task_type": "test_prompt",
                "task_data": {"prompt_template": {"from": "a", "path": "task_id"}},
            },
        ],
    }
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=30) as doomed:
        submitted = await doomed.post("/api/v1/pipelines", json=body)
    assert submitted.status_code == 200, submitted.text
    os.kill(process.pid, signal.SIGKILL)
    pipeline_id = submitted.json()["pipeline_id"]
    done = (await api.get(f"/api/v1/pipelines/{pipeline_id}", params={"wait": 60})).json()
    assert done["status"] == "completed", done
    assert done["steps"][1]["result"]["output"] == f"FAKE-LLM: {done['steps'][0]['task_id']}"
