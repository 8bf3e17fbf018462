"""gpu_medium workers as a GPU operator runs them: models that stay warm whatever their size, image tasks
batched across tasks, and what the worker tells of both (/api/v1/workers/stats, Prometheus)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import psutil

from tests.support.processes import ServiceProcess, child_pids, free_port
from tests.support.stack import ADMIN_KEY, ISOLATED_NAMESPACE, Stack
from tests.support.tasks import submit, wait_status

IMAGE = {"prompt": "a lighthouse", "resolution": "64x64", "num_inference_steps": 8}


def _rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def _log_events(process: ServiceProcess, event: str) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in process.log_text().splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry.get("event") == event]


def _sample(text: str, name: str) -> float:
    [line] = [line for line in text.splitlines() if line.startswith(name + "{")]
    return float(line.rsplit(" ", 1)[1])


async def _worker_stats(client: httpx.AsyncClient, pid: int) -> dict[str, Any]:
    """The worker's entry in /api/v1/workers/stats, once it has reported after its last task."""
    await asyncio.sleep(1.0)  # five reports at 0.2 s
    # The registry publishes a moment after a report (and a run that continued as new publishes first thing):
    # the worker is looked for a little longer than its reports take.
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        # Workers are listed to operators only.
        response = await client.get("/api/v1/workers/stats", headers={"X-API-Key": ADMIN_KEY})
        assert response.status_code == 200, response.text
        found = [w for w in response.json()["workers"] if w["pid"] == pid]
        if found or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert len(found) == 1, (pid, response.text[:3000])
    return dict(found[0])


async def test_a_worker_whose_model_exceeds_the_memory_limit_keeps_serving(stack: Stack) -> None:
    """WORKER_MAX_MEMORY_MB_GPU_MEDIUM below the RSS of the loaded model: the worker holds models, so the
    limit applies to its growth after they loaded, and it serves task after task on one warm model."""
    limit = 250
    base = free_port()
    while base + 13 > 65535:
        base = free_port()
    env = {
        "WORKER_MAX_MEMORY_MB_GPU_MEDIUM": str(limit),
        "WORKER_REPORT_INTERVAL_S": "0.2",
        "WORKER_METRICS_PORT": str(base),
        "OMP_NUM_THREADS": "1",
    }
    async with stack.replica("big-model", ISOLATED_NAMESPACE, queue="gpu_medium", **env) as replica:
        [pid] = child_pids(replica.worker.pid)
        assert _rss_mb(pid) < limit, "an idle worker (no torch yet) starts below the limit"
        async with replica.client() as client:
            for i in range(3):
                done = await wait_status(client, await submit(client, "generate_image", {**IMAGE, "seed": i}))
                assert (done["status"], done["attempt"], done["result"]["metadata"]["batch_size"]) == (
                    "completed",
                    1,
                    1,
                )
            assert _rss_mb(pid) > limit, "its model alone is above the limit"
            stats = await _worker_stats(client, pid)
            metrics = (await client.get(f"http://127.0.0.1:{base + 1}/metrics")).text
        assert child_pids(replica.worker.pid) == [pid]
        log = replica.worker
    assert _log_events(log, "Worker will drain and restart") == []
    # One load, then the warm model for the two tasks after it.
    assert (stats["model_cache_misses"], stats["model_cache_hits"]) == (1, 2)
    assert stats["model_load_seconds"] > 0
    assert (stats["image_batches"], stats["image_batched_tasks"]) == (3, 3)
    assert _sample(metrics, "taskservice_model_cache_misses_total") == 1
    assert _sample(metrics, "taskservice_model_cache_hits_total") == 2
    # The report rounds to 10 ms.
    assert abs(_sample(metrics, "taskservice_model_load_seconds_total") - stats["model_load_seconds"]) < 0.01
    assert _sample(metrics, "taskservice_image_batched_tasks_total") == 3


async def test_four_image_tasks_submitted_together_run_as_one_batch(stack: Stack) -> None:
    """Through the API and a real worker: the four tasks meet in one pipeline call (the cluster cap and the
    worker's slots let four run at once) and each result says so; the worker's stats count one batch."""
    env = {
        "IMAGE_MAX_CONCURRENT": "8",
        "WORKER_CONCURRENCY_GPU_MEDIUM": "8",
        # Polls hand the four tasks over one by one, slower on a loaded machine: a window wide enough for
        # any load. It costs nothing when all goes well: a batch starts as soon as it holds IMAGE_MAX_BATCH.
        "IMAGE_MAX_BATCH": "4",
        "IMAGE_BATCH_WINDOW_MS": "30000",
        "WORKER_REPORT_INTERVAL_S": "0.2",
        "OMP_NUM_THREADS": "1",
    }
    async with stack.replica("batching", ISOLATED_NAMESPACE, queue="gpu_medium", **env) as replica:
        [pid] = child_pids(replica.worker.pid)
        async with replica.client() as client:
            ids = await asyncio.gather(
                *(submit(client, "generate_image", {**IMAGE, "seed": 10 + i}) for i in range(4))
            )
            results = [await wait_status(client, task_id, timeout=180) for task_id in ids]
            stats = await _worker_stats(client, pid)
    for i, result in enumerate(results):
        assert result["status"] == "completed", result
        meta = result["result"]["metadata"]
        assert (meta["batch_size"], meta["seed"], meta["steps"]) == (4, 10 + i, 8)
    assert (stats["image_batches"], stats["image_batched_tasks"]) == (1, 4)
    assert (stats["model_cache_misses"], stats["model_cache_hits"]) == (1, 0)
