"""The recycling rules on their own: per-queue limits, the leak rule of model workers, restart pacing, the
drain notice. (Real worker processes recycling: tests/faults/.)"""

from __future__ import annotations

import pytest

from taskservice.queues import Queue
from taskservice.settings import Settings
from workers.handover import DrainNotice, RestartBackoff
from workers.recycling import MemoryWatch, RecycleRules


def test_model_free_queues_keep_the_seed_limits_and_model_queues_keep_their_models() -> None:
    settings = Settings()
    assert settings.worker_recycle_limits(Queue.DEFAULT, holds_models=False) == (10, 2048)
    assert settings.worker_recycle_limits(Queue.CPU_INTENSIVE, holds_models=False) == (10, 2048)
    assert settings.worker_recycle_limits(Queue.GPU_MEDIUM, holds_models=True) == (0, 2048)
    assert settings.worker_recycle_limits(Queue.GPU_HEAVY, holds_models=True) == (0, 2048)


def test_per_queue_overrides_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_MAX_TASKS", "5")
    monkeypatch.setenv("WORKER_MAX_TASKS_GPU_HEAVY", "50")
    monkeypatch.setenv("WORKER_MAX_MEMORY_MB_GPU_HEAVY", "0")
    monkeypatch.setenv("WORKER_MAX_TASKS_DEFAULT", "0")
    settings = Settings()
    assert settings.worker_recycle_limits(Queue.GPU_HEAVY, holds_models=True) == (50, 0)
    assert settings.worker_recycle_limits(Queue.DEFAULT, holds_models=False) == (0, 2048)
    assert settings.worker_recycle_limits(Queue.CPU_INTENSIVE, holds_models=False) == (5, 2048)


class Process:
    """What a MemoryWatch reads: the RSS, and the warm models' (generation, loads under way)."""

    def __init__(self) -> None:
        self.rss = 120.0
        self.generation = 0
        self.loading = 0

    def churn(self) -> tuple[int, int]:
        return self.generation, self.loading


def test_absolute_rule_without_models() -> None:
    process = Process()
    watch = MemoryWatch(RecycleRules(10, 500, memory_is_growth=False), lambda: process.rss, process.churn)
    assert watch.breach() is None
    process.rss = 501
    assert watch.breach() == "RSS 501 MB above 500 MB"


def test_growth_rule_measures_from_the_rss_with_models_loaded() -> None:
    process = Process()
    watch = MemoryWatch(RecycleRules(0, 300, memory_is_growth=True), lambda: process.rss, process.churn)
    # A model loads during a task: 3 GB more, far above the limit, and no recycle.
    process.loading, process.generation = 1, 1
    process.rss = 3200
    assert watch.breach() is None
    watch.settle()  # another task ends while the load is under way: no baseline yet
    assert watch.breach() is None
    process.loading, process.generation = 0, 2
    process.rss = 3300
    assert watch.breach() is None  # loaded, but no task has ended since: still no baseline
    watch.settle()
    assert watch.baseline_mb == 3300
    process.rss = 3550
    assert watch.breach() is None
    watch.settle()  # nothing was loaded since: the baseline stays where the models put it
    assert watch.baseline_mb == 3300
    process.rss = 3650  # a leak
    reason = watch.breach()
    assert reason is not None and reason.startswith("RSS 3650 MB") and reason.endswith("above 300 MB")
    assert "350 MB over its 3300 MB" in reason


def test_growth_rule_rebaselines_after_an_eviction() -> None:
    process = Process()
    process.rss = 2000
    watch = MemoryWatch(RecycleRules(0, 300, memory_is_growth=True), lambda: process.rss, process.churn)
    process.generation, process.rss = 1, 900  # a model dropped: less memory
    watch.settle()
    process.rss = 1300
    assert watch.breach() is not None  # 400 MB above the new, lower baseline


def test_disabled_memory_rule_never_asks() -> None:
    process = Process()
    watch = MemoryWatch(RecycleRules(0, 0, memory_is_growth=True), lambda: process.rss, process.churn)
    process.rss = 10**6
    assert watch.breach() is None


def test_restarts_back_off_like_crashes_except_after_the_task_quota() -> None:
    backoff = RestartBackoff()
    assert [backoff.delay(2.0, None) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(61.0, "memory") == 1  # a long life resets it
    assert backoff.delay(1.0, "memory") == 2  # a memory recycle right after start backs off
    assert backoff.delay(1.0, "tasks") == 0  # the task quota: it did its work
    assert backoff.delay(1.0, None) == 4
    assert backoff.delay(1.0, "stuck") == 0  # work stuck past a cancel: the queue needs its poller back
    assert backoff.delay(1.0, None) == 8


def test_drain_notice_round_trips() -> None:
    notice = DrainNotice("memory", overlap=True)
    assert DrainNotice.decode(notice.encode()) == notice
