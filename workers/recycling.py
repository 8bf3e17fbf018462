"""When a worker process is recycled, and whether its replacement may start while it drains.

Rules per queue (`Settings.worker_recycle_limits`): after `max_tasks` tasks, or above `max_memory_mb`. A
worker that holds no models is measured by its absolute RSS, as the seed says. A worker that holds models
is measured by its growth above its own baseline: the RSS taken at the end of a task, once no model load is
under way and nothing was loaded or dropped since. A model (or a second one) raises the baseline; only what
grows beyond it afterwards (a leak) counts. So a worker whose models alone exceed the limit keeps serving.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from taskservice.queues import Queue
from taskservice.settings import Settings
from workers.registry import QueueActivities

# A replacement loads the same models while the old process still holds them: it needs their size free,
# and some room to run them.
OVERLAP_HEADROOM = 1.2


@dataclass(frozen=True)
class RecycleRules:
    max_tasks: int  # 0: never
    max_memory_mb: int  # 0: never
    memory_is_growth: bool  # the worker holds models: the limit applies to growth above its baseline

    @classmethod
    def for_worker(cls, settings: Settings, queue: Queue, activities: QueueActivities) -> RecycleRules:
        holds_models = activities.holds_models
        tasks, memory = settings.worker_recycle_limits(queue, holds_models=holds_models)
        return cls(tasks, memory, holds_models)


class MemoryWatch:
    """Answers whether the process's memory asks for a recycle, under the queue's rule."""

    def __init__(
        self, rules: RecycleRules, rss_mb: Callable[[], float], churn: Callable[[], tuple[int, int]]
    ) -> None:
        self._rules = rules
        self._rss_mb = rss_mb
        self._churn = churn  # (generation, loads under way) of the warm models
        self.baseline_mb: float | None = None
        self._baseline_generation = -1
        self.settle()

    def settle(self) -> None:
        """Take the baseline again if models were loaded or dropped since, and no load is under way.

        Called when a task ends (and at start): a task that loaded a model has by then also run it once,
        so the allocator pools and kernels its first run creates are part of the baseline too.
        """
        generation, loading = self._churn()
        if loading or generation == self._baseline_generation:
            return
        self.baseline_mb, self._baseline_generation = self._rss_mb(), generation

    def breach(self) -> str | None:
        """Why the worker must recycle now, or None."""
        limit = self._rules.max_memory_mb
        if not limit:
            return None
        rss = self._rss_mb()
        if not self._rules.memory_is_growth:
            return f"RSS {rss:.0f} MB above {limit} MB" if rss > limit else None
        generation, loading = self._churn()
        if loading or generation != self._baseline_generation or self.baseline_mb is None:
            return None  # models are changing: no baseline to compare with until the next task ends
        growth = rss - self.baseline_mb
        if growth <= limit:
            return None
        return (
            f"RSS {rss:.0f} MB, {growth:.0f} MB over its {self.baseline_mb:.0f} MB with its models loaded, "
            f"above {limit} MB"
        )


def overlap_recycle(settings: Settings, activities: QueueActivities) -> bool:
    """WORKER_OVERLAP_RECYCLE, or unset: whether the device has room for a second copy of the models."""
    if settings.worker_overlap_recycle is not None:
        return settings.worker_overlap_recycle
    models = activities.warm_models
    needed = sum(m.resident_bytes() for m in models) * OVERLAP_HEADROOM
    if not needed:
        return True
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    if cuda is not None and any(m.device.startswith("cuda") for m in models):
        free, _total = cuda.mem_get_info()
        return bool(free >= needed)
    return psutil.virtual_memory().available >= needed
