"""When a task will start and finish: learned durations (taskservice.durations) and the live queue.

Duration: the type's fit over the newest build's samples once it has ETA_MIN_SAMPLES, else the catalog's
`estimated_duration_s` (the prior). Wait: the work ahead in the queue (Temporal's backlog, all tenants'
tasks: they share the workers, none is named) at the queue's mean task duration, plus the running tasks'
remaining half, divided by the queue's live capacity (polling workers x their slots). No capacity: no number,
and why. A running task's finish blends its own progress rate with the model, trusting progress as it grows.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

from api.store.projection import TaskView
from api.store.store import TaskStore
from taskservice.catalog import CATALOG, TaskSpec, specs_for_queue
from taskservice.contracts import MetricsState, TaskStatus
from taskservice.durations import DurationFit, fit
from taskservice.queues import Queue
from taskservice.settings import Settings
from taskservice.visibility import TaskQuery
from taskservice.work_units import work_units

# The learned models are read from the metrics workflow's memo at most this often per replica.
MODEL_TTL_S = 2.0
# Queued and running tasks per queue are counted in visibility at most this often per replica.
LOAD_TTL_S = 1.0
# A prior's p90 is this multiple of its p50 (the catalog gives one figure, not a spread).
PRIOR_P90_FACTOR = 1.5


@dataclass(frozen=True)
class DurationEstimate:
    p50_s: float
    p90_s: float
    basis: str  # "learned" | "prior"
    samples: int


@dataclass(frozen=True)
class TaskEstimate:
    """A task's predicted run time, wait and the times they give; a wait of None says why in `reason`."""

    duration: DurationEstimate
    wait_p50_s: float | None
    start_at: datetime | None
    completion_at: datetime | None
    completion_p90_at: datetime | None
    reason: str | None = None


@dataclass
class QueueLoad:
    """A queue's tasks as counted at `read_at` (loop time), and those this replica started since."""

    read_at: float
    queued: int
    running: int
    started_since: int = 0


@dataclass(frozen=True)
class TypeModel:
    """A task type's model as operators see it."""

    task_type: str
    basis: str
    samples: int
    build: str | None
    prior_s: float
    fit: DurationFit | None


class TaskEstimates:
    """The replica's view of the learned durations (cached for MODEL_TTL_S) and its estimates."""

    def __init__(self, store: TaskStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._state: tuple[float, MetricsState] | None = None
        self._loads: dict[str, QueueLoad] = {}

    async def _metrics(self) -> MetricsState:
        now = asyncio.get_running_loop().time()
        if self._state is None or now - self._state[0] > MODEL_TTL_S:
            self._state = (now, await self.store.metrics_state())
        return self._state[1]

    async def models(self) -> list[TypeModel]:
        state = await self._metrics()
        return [self._model(state, spec) for spec in CATALOG.values()]

    def _model(self, state: MetricsState, spec: TaskSpec) -> TypeModel:
        current = state.durations.current(spec.name)
        if current is None:
            return TypeModel(spec.name, "prior", 0, None, spec.estimated_duration_s, None)
        build, pairs = current
        learned = len(pairs) >= self.settings.eta_min_samples
        basis = "learned" if learned else "prior"
        return TypeModel(spec.name, basis, len(pairs), build, spec.estimated_duration_s, fit(pairs))

    async def duration(self, spec: TaskSpec, task_data: dict[str, Any]) -> DurationEstimate:
        model = self._model(await self._metrics(), spec)
        if model.basis == "learned" and model.fit is not None:
            units = work_units(spec.name, task_data)
            p50 = model.fit.p50(units)
            return DurationEstimate(round(p50, 3), round(model.fit.p90(units), 3), "learned", model.samples)
        prior = float(spec.estimated_duration_s)
        return DurationEstimate(prior, prior * PRIOR_P90_FACTOR, "prior", model.samples)

    def note_started(self, queue: str) -> None:
        """A task this replica just started: counted ahead until the next count of the queue sees it."""
        load = self._loads.get(queue)
        if load is not None:
            load.started_since += 1

    async def _load(self, queue: str) -> QueueLoad:
        """Every tenant's queued and running tasks of the queue's types, counted at most once a second."""
        now = asyncio.get_running_loop().time()
        load = self._loads.get(queue)
        if load is None or now - load.read_at > LOAD_TTL_S:
            query = TaskQuery(task_types=tuple(s.name for s in specs_for_queue(Queue(queue))))
            queued, running = await asyncio.gather(
                self.store.count(query.with_(status=TaskStatus.QUEUED)),
                self.store.count(query.with_(status=TaskStatus.PROCESSING)),
            )
            load = QueueLoad(now, queued, running)
            self._loads[queue] = load
        return load

    async def queue_wait(self, queue: str, *, queued_itself: bool = False) -> tuple[float | None, str | None]:
        """Seconds a task added to `queue` now (or queued there, `queued_itself`) waits for a slot (p50), or
        None and why: the tasks ahead (queued, started since the count, or Temporal's backlog, whichever
        is most) at the queue's mean run time plus half a run of each running one, over its slots."""
        state, metrics, load = await asyncio.gather(
            self.store.queues.get(queue), self._metrics(), self._load(queue)
        )
        capacity = len(state.pollers) * self.settings.worker_concurrency(Queue(queue))
        if capacity <= 0:
            return None, f"no worker is polling queue '{queue}'"
        ahead = max(state.backlog, load.queued + load.started_since - int(queued_itself))
        running = min(load.running, capacity)
        if ahead + running < capacity:
            return 0.0, None
        mean = self._queue_mean(metrics, Queue(queue))
        return round((ahead * mean + running * mean / 2) / capacity, 3), None

    def _queue_mean(self, metrics: MetricsState, queue: Queue) -> float:
        """A typical run time of the queue's tasks: the median of its types' newest samples (robust to a
        cold model load, which a mean follows), else the mean of every finished one, else the catalog's."""
        specs = specs_for_queue(queue)
        samples = [
            seconds for spec in specs for _, seconds in (metrics.durations.current(spec.name) or ("", []))[1]
        ]
        if samples:
            return median(samples)
        total = sum(metrics.duration_sum.get(s.name, 0.0) for s in specs)
        count = sum(metrics.duration_count.get(s.name, 0) for s in specs)
        if count:
            return total / count
        return sum(s.estimated_duration_s for s in specs) / max(1, len(specs))

    async def for_new(
        self, spec: TaskSpec, task_data: dict[str, Any], *, queued_itself: bool = False
    ) -> TaskEstimate:
        """A task not yet started (a quote, a submit; or queued): its wait from now and its run time after."""
        duration, (wait, reason) = await asyncio.gather(
            self.duration(spec, task_data), self.queue_wait(spec.queue.value, queued_itself=queued_itself)
        )
        return _timed(duration, datetime.now(UTC), wait, reason)

    async def for_view(self, view: TaskView) -> TaskEstimate | None:
        """A task's estimate now: queued (wait and run), running (by its progress), or None (finished)."""
        spec = CATALOG.get(view.task_type)
        if spec is None or view.status.is_terminal:
            return None
        if view.status == TaskStatus.QUEUED or view.started_at is None:
            return await self.for_new(spec, view.task_data, queued_itself=True)
        duration = await self.duration(spec, view.task_data)
        now = datetime.now(UTC)
        elapsed = max(0.0, (now - view.started_at).total_seconds())
        remaining = _remaining(duration, elapsed, view.progress)
        completion = now + timedelta(seconds=remaining)
        p90 = now + timedelta(seconds=remaining * duration.p90_s / duration.p50_s)
        return TaskEstimate(duration, 0.0, view.started_at, completion, p90)


def _remaining(duration: DurationEstimate, elapsed: float, progress: float) -> float:
    """Seconds left: the task's own rate (elapsed per progress) blended with the model by its progress."""
    model_left = max(0.0, duration.p50_s - elapsed)
    if progress <= 0.0:
        return model_left
    rate_left = elapsed * (1.0 - progress) / progress
    return progress * rate_left + (1.0 - progress) * model_left


def _timed(duration: DurationEstimate, now: datetime, wait: float | None, reason: str | None) -> TaskEstimate:
    if wait is None:
        return TaskEstimate(duration, None, None, None, None, reason)
    start = now + timedelta(seconds=wait)
    return TaskEstimate(
        duration,
        wait,
        start,
        start + timedelta(seconds=duration.p50_s),
        start + timedelta(seconds=duration.p90_s),
    )
