"""When a task will start and finish: learned durations (taskservice.durations) and the live queue.

Duration: the type's fit over the newest build's samples once it has ETA_MIN_SAMPLES, else the catalog's
`estimated_duration_s` (the prior). Wait: the queue's open tasks (all tenants': they share the workers, none
is named), listed once a second per replica with their sizes, are scheduled on the queue's live slots
(polling workers x their slots): each running task frees its slot after its predicted remaining time, each
task ahead (a higher priority, or the same one and submitted earlier) takes the first free slot for its own
predicted run; the task starts on the first slot free after them. No capacity: no number, and why. A running
task's finish blends its own progress rate with the model, trusting progress as it grows.
"""

from __future__ import annotations

import asyncio
import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

from api.store.projection import TaskView
from api.store.shared_reads import SharedReads
from api.store.store import TaskStore
from taskservice.catalog import CATALOG, TaskSpec, specs_for_queue
from taskservice.contracts import MetricsState, TaskStatus
from taskservice.durations import DurationFit, fit
from taskservice.priority import TaskPriority
from taskservice.queues import Queue
from taskservice.settings import Settings
from taskservice.visibility import TaskQuery
from taskservice.work_units import work_units

# The learned models are read from the metrics workflow's memo at most this often per replica.
MODEL_TTL_S = 2.0
# A queue's open tasks are listed in visibility at most this often per replica, and at most this many.
LOAD_TTL_S = 1.0
LOAD_LIST_LIMIT = 500
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


@dataclass(frozen=True)
class OpenTask:
    """A queue's task as its wait sees it: its rank (priority, then submit time) and its predicted run."""

    rank: tuple[int, datetime]
    task_id: str
    p50_s: float
    started_at: datetime | None = None


@dataclass
class QueueLoad:
    """A queue's open tasks as listed, and those this replica started since."""

    queued: list[OpenTask]
    running: list[OpenTask]
    started_since: list[OpenTask] = field(default_factory=list)


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
        self._models: SharedReads[None, MetricsState] = SharedReads(MODEL_TTL_S)
        self._loads: SharedReads[str, QueueLoad] = SharedReads(LOAD_TTL_S)

    async def _metrics(self) -> MetricsState:
        return await self._models.get(None, self.store.metrics_state)

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
        return self._predict(await self._metrics(), spec, task_data)

    def _predict(self, metrics: MetricsState, spec: TaskSpec, task_data: dict[str, Any]) -> DurationEstimate:
        model = self._model(metrics, spec)
        if model.basis == "learned" and model.fit is not None:
            units = work_units(spec.name, task_data)
            p50 = model.fit.p50(units)
            return DurationEstimate(round(p50, 3), round(model.fit.p90(units), 3), "learned", model.samples)
        prior = float(spec.estimated_duration_s)
        return DurationEstimate(prior, prior * PRIOR_P90_FACTOR, "prior", model.samples)

    def note_started(
        self, queue: str, task_id: str, priority: TaskPriority, duration: DurationEstimate
    ) -> None:
        """A task this replica just started: ahead of later ones until the next listing of its queue."""
        load = self._loads.latest(queue)
        if load is not None:
            rank = (priority.temporal_key, datetime.now(UTC))
            load.started_since.append(OpenTask(rank, task_id, duration.p50_s))

    async def _load(self, queue: str) -> QueueLoad:
        """Every tenant's open tasks of the queue's types with their predicted runs, listed at most once a
        second (LOAD_LIST_LIMIT of them: a longer queue is priced as at least that long)."""
        return await self._loads.get(queue, lambda: self._list_load(queue))

    async def _list_load(self, queue: str) -> QueueLoad:
        query = TaskQuery(task_types=tuple(s.name for s in specs_for_queue(Queue(queue))), running=True)
        views, metrics = await asyncio.gather(self.store.some(query, LOAD_LIST_LIMIT), self._metrics())
        load = QueueLoad([], [])
        for view in views:
            spec = CATALOG.get(view.task_type)
            if spec is None or view.status.is_terminal:
                continue
            p50 = self._predict(metrics, spec, view.task_data).p50_s
            started = view.started_at if view.status == TaskStatus.PROCESSING else None
            open_task = OpenTask((view.priority.temporal_key, view.created_at), view.task_id, p50, started)
            (load.running if started else load.queued).append(open_task)
        return load

    async def queue_wait(
        self, queue: str, *, priority: TaskPriority = TaskPriority.LOW, queued: TaskView | None = None
    ) -> tuple[float | None, str | None]:
        """Seconds a task of `priority` added to `queue` now (or `queued` there already) waits for a slot
        (p50), or None and why: the queue's open tasks scheduled on its live slots (the module's doc)."""
        state, load = await asyncio.gather(self.store.queues.get(queue), self._load(queue))
        capacity = len(state.pollers) * self.settings.worker_concurrency(Queue(queue))
        if capacity <= 0:
            return None, f"no worker is polling queue '{queue}'"
        now = datetime.now(UTC)
        mine = (queued.priority.temporal_key, queued.created_at) if queued else (priority.temporal_key, now)
        listed = {t.task_id for t in load.queued + load.running}
        waiting = load.queued + [t for t in load.started_since if t.task_id not in listed]
        ahead = sorted((t for t in waiting if t.rank < mine), key=lambda t: t.rank)
        # Temporal's backlog counts activities the listing has not seen yet (another replica's newest starts).
        unseen = max(0, state.backlog - len(waiting))
        typical = median([t.p50_s for t in waiting]) if waiting else 0.0
        return round(first_free_slot(capacity, load.running, ahead, unseen * typical, now), 3), None

    async def for_new(
        self,
        spec: TaskSpec,
        task_data: dict[str, Any],
        *,
        priority: TaskPriority = TaskPriority.NORMAL,
        queued: TaskView | None = None,
    ) -> TaskEstimate:
        """A task not yet started (a quote, a submit; or `queued`): its wait from now and its run after."""
        duration, (wait, reason) = await asyncio.gather(
            self.duration(spec, task_data),
            self.queue_wait(spec.queue.value, priority=priority, queued=queued),
        )
        return _timed(duration, datetime.now(UTC), wait, reason)

    async def for_view(self, view: TaskView) -> TaskEstimate | None:
        """A task's estimate now: queued (wait and run), running (by its progress), or None (finished)."""
        spec = CATALOG.get(view.task_type)
        if spec is None or view.status.is_terminal:
            return None
        if view.status == TaskStatus.QUEUED or view.started_at is None:
            return await self.for_new(spec, view.task_data, queued=view)
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


def first_free_slot(
    capacity: int, running: list[OpenTask], ahead: list[OpenTask], unseen_s: float, now: datetime
) -> float:
    """Seconds until a slot is free for the next task: the running tasks' predicted remaining runs (one past
    its prediction is taken to end now), then each task ahead on the first slot free."""
    left = sorted(max(0.0, t.p50_s - (now - t.started_at).total_seconds()) for t in running if t.started_at)
    slots = (left + [0.0] * capacity)[:capacity]
    heapq.heapify(slots)
    for task in ahead:
        heapq.heappush(slots, heapq.heappop(slots) + task.p50_s)
    return slots[0] + unseen_s / capacity
