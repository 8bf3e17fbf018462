"""Workers die or recycle mid-work; no task is lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import psutil
from temporalio.client import Client

from tests.support.processes import ROOT, ServiceProcess, child_pids
from tests.support.stack import ISOLATED_NAMESPACE, Stack
from tests.support.tasks import TERMINAL, count_workflows, submit, wait_status, worker_identities

# On PYTHONPATH, its sitecustomize makes a process hold LEAK_INJECTION_MB more memory on SIGUSR2.
LEAK_INJECTION = ROOT / "tests" / "support" / "leak_injection"

# A first image task imports torch and diffusers and loads the pipeline: far more memory than an idle worker.
IMAGE = {"prompt": "a lighthouse", "resolution": "64x64", "num_inference_steps": 60}
# Tens of seconds on a CPU: long enough for a replacement worker to start while it runs.
LONG_IMAGE = {"prompt": "a lighthouse", "resolution": "128x128", "num_inference_steps": 100}


async def test_worker_killed_mid_task_finishes_on_a_new_worker(
    api: httpx.AsyncClient, stack: Stack, temporal_client: Client
) -> None:
    project = f"p_worker_kill_{uuid.uuid4().hex[:8]}"
    supervisor = stack.workers["default"]
    [worker_pid] = child_pids(supervisor.pid)
    task_id = await submit(
        api, "test_prompt", {"prompt_template": "survive kill [[sleep=4]]"}, project_id=project
    )
    status = await wait_status(api, task_id, "processing")
    assert status["attempt"] == 1
    os.kill(worker_pid, signal.SIGKILL)
    # The supervisor replaces the dead worker; Temporal notices the lost attempt by its heartbeat timeout.
    done = await wait_status(api, task_id, {"completed", "failed"}, timeout=60)
    assert done["status"] == "completed"
    assert done["attempt"] == 2
    [new_pid] = child_pids(supervisor.pid)
    assert new_pid != worker_pid
    # One task accepted, one execution of the project, one completed: the kill made no duplicate.
    assert await count_workflows(temporal_client, f'ProjectId = "{project}"', 1) == 1
    assert (
        await count_workflows(temporal_client, f'ProjectId = "{project}" AND TaskStatus = "completed"', 1)
        == 1
    )


async def test_worker_recycles_after_max_tasks_without_losing_any(stack: Stack) -> None:
    """A worker with WORKER_MAX_TASKS=3 drains and is replaced; all 10 tasks finish, each run exactly once."""
    env = {"WORKER_MAX_TASKS": "3", "WORKER_CONCURRENCY_DEFAULT": "2"}
    async with stack.replica("recycling", ISOLATED_NAMESPACE, **env) as replica, replica.client() as client:
        temporal = await Client.connect(stack.temporal.address, namespace=ISOLATED_NAMESPACE)
        first_child = child_pids(replica.worker.pid)
        ids = [
            await submit(client, "test_prompt", {"prompt_template": f"recycle {i} [[sleep=0.3]]"})
            for i in range(10)
        ]
        results = [await wait_status(client, task_id, {"completed", "failed"}, timeout=90) for task_id in ids]
        assert [r["status"] for r in results] == ["completed"] * 10
        assert child_pids(replica.worker.pid) != first_child
        per_process: Counter[str] = Counter()
        for task_id in ids:
            per_process.update(await worker_identities(temporal, task_id))
    # Each task ran once, in its last attempt. (A task the server handed to the last poll of a draining
    # worker never starts there: it is retried once its attempt times out, hence attempt 2 at times.)
    started: dict[str, list[int]] = {}
    for entry in _log_events(replica.worker, "Task attempt started"):
        started.setdefault(entry["task_id"], []).append(entry["attempt"])
    assert started == {r["task_id"]: [r["attempt"]] for r in results}
    # Every process but the newest drained once it had done 3; tasks it already had (running, or handed to
    # a poll in flight) it finished first, so it may have done more.
    processes = [entry["identity"] for entry in _log_events(replica.worker, "Worker started")]
    assert sum(per_process.values()) == 10 and set(per_process) <= set(processes), per_process
    assert all(per_process[identity] >= 3 for identity in processes[:-1]), (processes, per_process)
    drains = [entry["reason"] for entry in _log_events(replica.worker, "Worker will drain and restart")]
    assert drains == ["processed 3 tasks"] * sum(1 for c in per_process.values() if c >= 3)


def _rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def _log_events(process: ServiceProcess, event: str) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in process.log_text().splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry.get("event") == event]


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_worker_drains_the_task_running_when_it_crosses_its_memory_limit(stack: Stack) -> None:
    """A model worker's memory limit counts growth above its RSS with its model loaded. A leak injected while
    a task runs crosses it: the worker lets that task finish and exits; its replacement polls the queue
    meanwhile (overlapping recycle) and takes the next task at once, while the old one still drains."""
    limit = 200
    env = {
        "WORKER_MAX_MEMORY_MB": str(limit),
        "WORKER_REPORT_INTERVAL_S": "0.2",
        "WORKER_CONCURRENCY_GPU_MEDIUM": "1",
        "PYTHONPATH": str(LEAK_INJECTION),
        "LEAK_INJECTION_MB": "400",
        "OMP_NUM_THREADS": "1",
    }
    async with stack.replica("memory", ISOLATED_NAMESPACE, queue="gpu_medium", **env) as replica:
        temporal = await Client.connect(stack.temporal.address, namespace=ISOLATED_NAMESPACE)
        [old_pid] = child_pids(replica.worker.pid)
        async with replica.client() as client:
            warm = await wait_status(client, await submit(client, "generate_image", IMAGE), TERMINAL, 180)
            assert warm["status"] == "completed"
            # Its model alone puts it far above the limit: under the old absolute rule it would have recycled.
            assert _rss_mb(old_pid) > limit
            crossing_id = await submit(client, "generate_image", LONG_IMAGE)
            await _wait_denoising(client, crossing_id)
            os.kill(old_pid, signal.SIGUSR2)  # the leak
            later_id = await submit(client, "generate_image", IMAGE)
            crossing = await wait_status(client, crossing_id, TERMINAL, 240)
            later = await wait_status(client, later_id, TERMINAL, 240)
        [[old], [new]] = [await worker_identities(temporal, t["task_id"]) for t in (crossing, later)]
        await asyncio.sleep(1.0)  # five more reports: the new worker must not recycle too
        assert len(child_pids(replica.worker.pid)) == 1
        log = replica.worker
    assert (crossing["status"], crossing["attempt"]) == ("completed", 1)
    assert (later["status"], later["attempt"]) == ("completed", 1)
    # The crossing task ran on the first process; the later one on the process the supervisor started next.
    assert old == f"gpu_medium@{socket.gethostname()}:{old_pid}" and new != old
    assert [e["identity"] for e in _log_events(log, "Worker started")][:2] == [old, new]
    assert [e["pid"] for e in _log_events(log, "Worker recycled, starting a fresh one")] == [old_pid]
    assert not psutil.pid_exists(old_pid)
    # The first process asked to drain while the task ran (not once it was done), because of its memory;
    # once, only.
    [drain] = _log_events(log, "Worker will drain and restart")
    assert drain["reason"].startswith("RSS") and drain["reason"].endswith(f"above {limit} MB")
    [attempt] = [e for e in _log_events(log, "Task attempt finished") if e["task_id"] == crossing["task_id"]]
    assert _at(crossing["started_at"]) < _at(drain["timestamp"]) < _at(attempt["timestamp"])
    # The queue was polled throughout: the later task started on the new process before the old one had
    # finished the crossing task.
    assert _at(later["started_at"]) < _at(attempt["timestamp"])


async def _wait_denoising(client: httpx.AsyncClient, task_id: str) -> None:
    status = await wait_status(client, task_id, "processing", timeout=120)
    while not (status["current_step"] or "").startswith("denoising"):
        await asyncio.sleep(0.1)
        status = (await client.get(f"/api/v1/tasks/{task_id}/status")).json()


# Three 16-frame clips (6 s at 8 fps) of the tiny video model, slow enough to be caught in the third; a fixed
# seed, so two renders can be compared.
THREE_CLIPS = {"scene_description": "a long take", "duration": 6, "fps": 8, "resolution": "64x64", "seed": 5,
               "num_inference_steps": 12}  # fmt: skip


def _video_frames(data: bytes, path: str) -> Any:
    import imageio_ffmpeg
    import numpy as np

    with open(path, "wb") as handle:
        handle.write(data)
    reader = imageio_ffmpeg.read_frames(path)
    width, height = next(reader)["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]).astype(np.float32)


async def test_video_worker_killed_after_two_clips_resumes_from_the_third(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Any
) -> None:
    """issue 29: the retry renders from the first unfinished clip, with an uninterrupted render's frames."""
    import numpy as np

    supervisor = stack.workers["gpu_heavy"]
    [worker_pid] = child_pids(supervisor.pid)
    task_id = await submit(api, "generate_video", THREE_CLIPS)
    deadline = asyncio.get_running_loop().time() + 600
    while True:
        status = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
        # /status reads the heartbeat: one that shows clip 3 also carries the two kept clips.
        if "(clip 3/3)" in (status.get("current_step") or ""):
            break
        assert status["status"] in ("queued", "processing"), status
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.2)
    os.kill(worker_pid, signal.SIGKILL)
    done = await wait_status(api, task_id, {"completed", "failed"}, timeout=600)
    assert done["status"] == "completed", done
    assert done["attempt"] == 2
    meta = done["result"]["metadata"]
    assert meta["resumed"]["from_clip"] >= 2 and meta["resumed"]["attempts"] == 2, meta
    assert meta["clips"] == 3
    assert not list((stack.workdir / "data" / "media").rglob(f"{task_id}.clip*.npy"))  # kept clips are gone
    whole_id = await submit(api, "generate_video", THREE_CLIPS, cache="off")  # a render, not the cache's copy
    whole = await wait_status(api, whole_id, {"completed", "failed"}, timeout=600)
    assert whole["status"] == "completed" and whole["result"]["metadata"]["resumed"]["from_clip"] == 0
    resumed_frames = _video_frames((await api.get(done["result"]["media_url"])).content, f"{tmp_path}/r.mp4")
    whole_frames = _video_frames((await api.get(whole["result"]["media_url"])).content, f"{tmp_path}/w.mp4")
    assert resumed_frames.shape == whole_frames.shape
    assert float(np.abs(resumed_frames - whole_frames).max()) <= 2.0
