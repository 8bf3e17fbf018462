"""Blocking work that ignores a cancel: the task still ends cancelled once the grace period is over, and its
worker asks to be replaced (issue 29). No Temporal server: `TaskProgress` and `WorkerState` themselves."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from activities.runtime import TaskProgress, abandoned_work
from taskservice.queues import Queue
from taskservice.settings import Settings
from workers.lifecycle import WorkerState

# No memory limit: this process's RSS (the models earlier tests loaded) is not what these tests are about.
UNLIMITED = Settings(worker_max_memory_mb=0, worker_max_memory_mb_gpu_heavy=0)


async def test_work_that_ignores_a_cancel_is_abandoned_after_the_grace_period() -> None:
    release = threading.Event()
    progress = TaskProgress()
    progress.cleanup_grace_s = 0.3

    def deaf() -> str:
        # A pipeline call that never looks at `should_stop` (as diffusers' own VAE decode does not).
        release.wait(30)
        return "finished"

    state = WorkerState(UNLIMITED, Queue.GPU_HEAVY)
    work = asyncio.create_task(progress.run_blocking(deaf))
    await asyncio.sleep(0.1)
    started = time.perf_counter()
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await work
    waited = time.perf_counter() - started
    try:
        assert 0.3 <= waited < 2.0, waited
        assert progress.should_stop and progress.stop_reason == "interrupted"
        assert abandoned_work.running() == 1
        state.task_finished(ok=False)
        assert state.recycle_kind == "stuck" and state.stop.is_set()
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while abandoned_work.running():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_work_that_stops_within_the_grace_period_replaces_nothing() -> None:
    progress = TaskProgress()
    progress.cleanup_grace_s = 5.0

    def polite() -> None:
        while not progress.should_stop:
            time.sleep(0.01)

    state = WorkerState(UNLIMITED, Queue.GPU_HEAVY)
    # Counted against what earlier tests of this process abandoned and is still ending (a media test's).
    abandoned_before = abandoned_work.running()
    work = asyncio.create_task(progress.run_blocking(polite))
    await asyncio.sleep(0.1)
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await work
    assert abandoned_work.running() <= abandoned_before
    state.task_finished(ok=False)
    assert state.recycle_kind is None and not state.stop.is_set()


async def test_blocking_work_returns_its_value_and_raises_its_error() -> None:
    progress = TaskProgress()
    assert await progress.run_blocking(lambda: 41 + 1) == 42

    def broken() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await progress.run_blocking(broken)
