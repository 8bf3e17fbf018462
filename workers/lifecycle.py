"""What a worker does around each task attempt: bind the log context, count outcomes for metrics, and
trigger recycling after N tasks or above the memory limit (see `workers.recycling`)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import psutil
from structlog.contextvars import bind_contextvars, clear_contextvars
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from activities.runtime import abandoned_work
from taskservice.contracts import TaskActivityInput
from taskservice.queues import Queue, worker_identity
from taskservice.settings import Settings
from taskservice.telemetry import WorkerMetrics
from workers.handover import RecycleReason
from workers.recycling import MemoryWatch, RecycleRules
from workers.registry import QueueActivities

log = logging.getLogger("taskservice.workers")


class WorkerState:
    """Counters and the drain trigger of this process."""

    def __init__(self, settings: Settings, queue: Queue) -> None:
        self.settings = settings
        self.queue = queue
        self.identity = worker_identity(queue.value)
        self.started_at = datetime.now(UTC).isoformat()
        self.tasks_done = 0
        self.tasks_failed = 0
        self.state = "starting"
        self.stop = asyncio.Event()
        self.recycle_reason: str | None = None
        self.recycle_kind: RecycleReason | None = None
        self._process = psutil.Process()
        # Until the activities are known (`watch`): the seed's rules on absolute RSS.
        tasks, memory = settings.worker_recycle_limits(queue, holds_models=False)
        self.rules = RecycleRules(tasks, memory, memory_is_growth=False)
        self.memory = MemoryWatch(self.rules, self.rss_mb, lambda: (0, 0))

    def watch(self, activities: QueueActivities) -> None:
        """Apply the queue's recycling rules to these activities (a worker holding models keeps them)."""
        self.rules = RecycleRules.for_worker(self.settings, self.queue, activities)
        self.memory = MemoryWatch(self.rules, self.rss_mb, activities.model_churn)

    def rss_mb(self) -> float:
        return float(self._process.memory_info().rss) / 2**20

    def task_finished(self, ok: bool) -> None:
        self.tasks_done += 1
        self.tasks_failed += 0 if ok else 1
        self.memory.settle()
        stuck = abandoned_work.running()
        if stuck:
            self.request_recycle("stuck", f"{stuck} cancelled task(s) still running past CANCEL_GRACE_S")
        elif self.rules.max_tasks and self.tasks_done >= self.rules.max_tasks:
            self.request_recycle("tasks", f"processed {self.tasks_done} tasks")
        else:
            self.check_memory()

    def check_memory(self) -> None:
        reason = self.memory.breach()
        if reason is not None:
            self.request_recycle("memory", reason)

    def request_recycle(self, kind: RecycleReason, reason: str) -> None:
        if self.recycle_reason is None and not self.stop.is_set():
            self.recycle_reason, self.recycle_kind = reason, kind
            log.info("Worker will drain and restart", extra={"queue": self.queue.value, "reason": reason})
            self.stop.set()


class TaskLifecycleInterceptor(Interceptor):
    """Around each task attempt on this worker: its log context, its metrics, and recycling once it ends.
    (The attempt itself, its announcement and its result, is the activity's: `activities.runtime.run_task`.)
    """

    def __init__(self, state: WorkerState, task_types: set[str], metrics: WorkerMetrics) -> None:
        self.state = state
        self.task_types = task_types
        self.metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TaskLifecycleInbound(next, self)


class _TaskLifecycleInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: TaskLifecycleInterceptor) -> None:
        super().__init__(next)
        self._owner = owner

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if activity.info().activity_type not in self._owner.task_types:
            return await super().execute_activity(input)
        info = activity.info()
        metrics, queue = self._owner.metrics, self._owner.state.queue.value
        task = input.args[0] if input.args else None
        bind_contextvars(
            task_id=info.workflow_id,
            project_id=task.project_id if isinstance(task, TaskActivityInput) else None,
            task_type=info.activity_type,
            attempt=info.attempt,
            queue=queue,
        )
        log.info("Task attempt started")
        started = time.monotonic()
        outcome = "failed"
        try:
            result = await super().execute_activity(input)
            outcome = "completed"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            elapsed = time.monotonic() - started
            metrics.tasks.labels(queue, info.activity_type, outcome).inc()
            metrics.duration.labels(queue, info.activity_type).observe(elapsed)
            log.info("Task attempt finished", extra={"outcome": outcome, "duration_s": round(elapsed, 3)})
            clear_contextvars()
            self._owner.state.task_finished(outcome == "completed")
