"""What a worker does around each task attempt: tell the task's workflow it started, bind the log context,
count outcomes for metrics, and trigger recycling after N tasks or above the memory limit (see
`workers.recycling`)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import psutil
from structlog.contextvars import bind_contextvars, clear_contextvars
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from taskservice.contracts import TaskAttemptResult, TaskStarted
from taskservice.queues import Queue
from taskservice.settings import Settings
from taskservice.telemetry import WorkerMetrics
from taskservice.timefmt import now_z
from workers.handover import RecycleReason
from workers.recycling import MemoryWatch, RecycleRules
from workers.registry import QueueActivities

log = logging.getLogger("taskservice.workers")

# How long a first attempt runs before it is announced to its workflow (see AttemptAnnouncement): until
# then, listings filtered by status still show the task `queued`; its /status shows `processing` at once.
ANNOUNCE_AFTER_S = 0.5


class WorkerState:
    """Counters and the drain trigger of this process."""

    def __init__(self, settings: Settings, queue: Queue) -> None:
        self.settings = settings
        self.queue = queue
        self.identity = f"{queue.value}@{socket.gethostname()}:{os.getpid()}"
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
        if self.rules.max_tasks and self.tasks_done >= self.rules.max_tasks:
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


class AttemptAnnouncement:
    """Tells a task's workflow, once, that an attempt started (the `task_started` signal).

    A first attempt is announced only once it has run ANNOUNCE_AFTER_S: most of a short task's
    orchestration cost was that signal's workflow task, and its result carries its start instead
    (`TaskAttemptResult`). An attempt that ends without a result is announced before it ends."""

    def __init__(self, client: Client, identity: str, pending: set[asyncio.Task[None]]) -> None:
        info = activity.info()
        self._client = client
        self._workflow_id = info.workflow_id or ""
        self.started = TaskStarted(attempt=info.attempt, started_at=now_z(), worker=identity)
        self._due = asyncio.Event()
        self._signalling = False
        self._sending = asyncio.create_task(self._send_when_due())
        # Held until done: a signal under way outlives the attempt that asked for it.
        pending.add(self._sending)
        self._sending.add_done_callback(pending.discard)

    async def now(self) -> None:
        self._due.set()
        await asyncio.shield(self._sending)

    def drop(self) -> None:
        """The attempt is over: an announcement not yet under way is not needed any more."""
        if not self._signalling:
            self._sending.cancel()

    async def _send_when_due(self) -> None:
        try:
            await asyncio.wait_for(self._due.wait(), ANNOUNCE_AFTER_S)
        except TimeoutError:
            pass
        self._signalling = True
        try:
            await self._client.get_workflow_handle(self._workflow_id).signal("task_started", self.started)
        except RPCError as err:
            # The task runs regardless; only the queued→processing flip is late.
            log.warning(
                "Could not signal task start", extra={"task_id": self._workflow_id, "error": str(err)}
            )


class TaskLifecycleInterceptor(Interceptor):
    """Tells the task's workflow when an attempt starts, and counts finished tasks for recycling."""

    def __init__(
        self, client: Client, state: WorkerState, task_types: set[str], metrics: WorkerMetrics
    ) -> None:
        self._client = client
        self.state = state
        self.task_types = task_types
        self.metrics = metrics
        self._announcing: set[asyncio.Task[None]] = set()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TaskLifecycleInbound(next, self)

    async def announce(self, task: object) -> AttemptAnnouncement:
        """Start announcing the current attempt: before it runs when it is a retry or its task sends start
        or progress webhooks, else once it has run a while."""
        announcement = AttemptAnnouncement(self._client, self.state.identity, self._announcing)
        if announcement.started.attempt > 1 or getattr(task, "announce_at_once", False):
            await announcement.now()
        return announcement


class _TaskLifecycleInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: TaskLifecycleInterceptor) -> None:
        super().__init__(next)
        self._owner = owner

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        activity_type = activity.info().activity_type
        if activity_type in self._owner.task_types:
            return await self._execute_task(input)
        if activity_type == "deliver_webhook":
            return await self._execute_webhook(input)
        return await super().execute_activity(input)

    async def _execute_webhook(self, input: ExecuteActivityInput) -> Any:
        try:
            result = await super().execute_activity(input)
        except BaseException:
            self._owner.metrics.webhooks.labels("failed").inc()
            raise
        self._owner.metrics.webhooks.labels("delivered").inc()
        return result

    async def _execute_task(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        metrics, queue = self._owner.metrics, self._owner.state.queue.value
        task = input.args[0] if input.args else None
        bind_contextvars(
            task_id=info.workflow_id,
            project_id=getattr(task, "project_id", None),
            task_type=info.activity_type,
            attempt=info.attempt,
            queue=queue,
        )
        announcement = await self._owner.announce(task)
        log.info("Task attempt started")
        started = time.monotonic()
        outcome = "failed"
        try:
            result = await super().execute_activity(input)
            outcome = "completed"
            ran = announcement.started
            return TaskAttemptResult(result=result, started_at=ran.started_at, attempt=ran.attempt)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except BaseException:
            await announcement.now()  # its start is recorded with its failure
            raise
        finally:
            announcement.drop()
            elapsed = time.monotonic() - started
            metrics.tasks.labels(queue, info.activity_type, outcome).inc()
            metrics.duration.labels(queue, info.activity_type).observe(elapsed)
            log.info("Task attempt finished", extra={"outcome": outcome, "duration_s": round(elapsed, 3)})
            clear_contextvars()
            self._owner.state.task_finished(outcome == "completed")
