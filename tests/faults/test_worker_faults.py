"""Workers die or recycle mid-work; no task is lost."""

from __future__ import annotations

import os
import signal

import httpx

from tests.conftest import API_KEYS, ISOLATED_NAMESPACE, Stack, submit, wait_for_pollers, wait_status
from tests.stack import child_pids


async def test_worker_killed_mid_task_finishes_on_a_new_worker(api: httpx.AsyncClient, stack: Stack) -> None:
    supervisor = stack.workers["default"]
    [worker_pid] = child_pids(supervisor.pid)
    task_id = await submit(api, "test_prompt", {"prompt_template": "survive kill [[sleep=4]]"})
    status = await wait_status(api, task_id, "processing")
    assert status["attempt"] == 1
    os.kill(worker_pid, signal.SIGKILL)
    # The supervisor replaces the dead worker; Temporal notices the lost attempt by its heartbeat timeout.
    done = await wait_status(api, task_id, {"completed", "failed"}, timeout=60)
    assert done["status"] == "completed"
    assert done["attempt"] == 2
    [new_pid] = child_pids(supervisor.pid)
    assert new_pid != worker_pid


async def test_worker_recycles_after_max_tasks_without_losing_any(stack: Stack) -> None:
    """A worker with WORKER_MAX_TASKS=3 drains and is replaced; all 10 tasks finish."""
    env = {
        "TEMPORAL_NAMESPACE": ISOLATED_NAMESPACE,
        "WORKER_MAX_TASKS": "3",
        "WORKER_CONCURRENCY_DEFAULT": "2",
    }
    worker = stack.spawn("worker-recycling", ["workers", "default"], **env)
    api_process, url = stack.start_api("api-recycling", TEMPORAL_NAMESPACE=ISOLATED_NAMESPACE)
    try:
        await wait_for_pollers(stack.temporal.address, ISOLATED_NAMESPACE, ["default"])
        first_child = child_pids(worker.pid)
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=30) as client:
            ids = [
                await submit(client, "test_prompt", {"prompt_template": f"recycle {i} [[sleep=0.3]]"})
                for i in range(10)
            ]
            results = [
                await wait_status(client, task_id, {"completed", "failed"}, timeout=90) for task_id in ids
            ]
        assert [r["status"] for r in results] == ["completed"] * 10
        assert child_pids(worker.pid) != first_child
        log = worker.log_text()
        # Tasks already running when the limit is hit finish first, so a worker may do 3 or 4.
        assert log.count("Worker will drain and restart") >= 2
        assert "processed 3 tasks" in log
    finally:
        api_process.stop()
        worker.stop()


async def test_worker_recycles_when_its_memory_passes_the_limit(stack: Stack) -> None:
    """Any real worker is above 64 MB RSS: it drains and is replaced after every task; none is lost."""
    env = {"TEMPORAL_NAMESPACE": ISOLATED_NAMESPACE, "WORKER_MAX_MEMORY_MB": "64"}
    worker = stack.spawn("worker-memory", ["workers", "default"], **env)
    api_process, url = stack.start_api("api-memory", TEMPORAL_NAMESPACE=ISOLATED_NAMESPACE)
    try:
        await wait_for_pollers(stack.temporal.address, ISOLATED_NAMESPACE, ["default"])
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=30) as client:
            ids = [await submit(client, "test_prompt", {"prompt_template": f"memory {i}"}) for i in range(3)]
            results = [
                await wait_status(client, task_id, {"completed", "failed"}, timeout=90) for task_id in ids
            ]
        assert [r["status"] for r in results] == ["completed"] * 3
        assert "MB above 64 MB" in worker.log_text()
    finally:
        api_process.stop()
        worker.stop()
