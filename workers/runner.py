"""One worker process for one queue: its activities, plus the shared workflow queue."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psutil
from prometheus_client import start_http_server
from structlog.contextvars import bind_contextvars, clear_contextvars
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from activities.bookkeeping import BookkeepingActivities, ensure_limiter_running
from activities.runtime import ActivityProvider
from activities.webhooks import WebhookActivities
from taskservice.catalog import CONCURRENCY_GROUPS, QUEUE_HARD_TIMEOUT_S, specs_for_queue
from taskservice.contracts import TaskStarted, WorkerReport
from taskservice.queues import METRICS_WORKFLOW_ID, WORKER_REGISTRY_WORKFLOW_ID, WORKFLOW_QUEUE, Queue
from taskservice.settings import Settings
from taskservice.telemetry import WorkerMetrics
from taskservice.temporal import connect
from workflows.bookkeeping import TaskMetricsWorkflow, WorkerRegistryWorkflow
from workflows.limiter import ConcurrencyLimiterWorkflow
from workflows.task import TaskWorkflow

log = logging.getLogger("taskservice.workers")

RECYCLE_EXIT_CODE = 75
# Heartbeats reach the server at most this often; it bounds how fast a cancel reaches an activity.
HEARTBEAT_THROTTLE = timedelta(seconds=1)


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
        self._process = psutil.Process()

    def rss_mb(self) -> float:
        return float(self._process.memory_info().rss) / 2**20

    def task_finished(self, ok: bool) -> None:
        self.tasks_done += 1
        self.tasks_failed += 0 if ok else 1
        if self.tasks_done >= self.settings.worker_max_tasks:
            self.request_recycle(f"processed {self.tasks_done} tasks")
        elif self.rss_mb() > self.settings.worker_max_memory_mb:
            self.request_recycle(f"RSS {self.rss_mb():.0f} MB above {self.settings.worker_max_memory_mb} MB")

    def request_recycle(self, reason: str) -> None:
        if self.recycle_reason is None and not self.stop.is_set():
            self.recycle_reason = reason
            log.info("Worker will drain and restart", extra={"queue": self.queue.value, "reason": reason})
            self.stop.set()


class _TaskLifecycleInterceptor(Interceptor):
    """Tells the task's workflow when an attempt starts, and counts finished tasks for recycling."""

    def __init__(
        self, client: Client, state: WorkerState, task_types: set[str], metrics: WorkerMetrics
    ) -> None:
        self._client = client
        self._state = state
        self._task_types = task_types
        self.metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TaskLifecycleInbound(next, self)

    async def announce_start(self) -> None:
        info = activity.info()
        started = TaskStarted(
            attempt=info.attempt,
            started_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            worker=self._state.identity,
        )
        try:
            await self._client.get_workflow_handle(info.workflow_id or "").signal("task_started", started)
        except RPCError as err:
            # The task runs regardless; only the queued→processing flip is late.
            log.warning("Could not signal task start", extra={"task_id": info.workflow_id, "error": str(err)})


class _TaskLifecycleInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: _TaskLifecycleInterceptor) -> None:
        super().__init__(next)
        self._owner = owner

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        metrics = self._owner.metrics
        if info.activity_type not in self._owner._task_types:
            if info.activity_type != "deliver_webhook":
                return await super().execute_activity(input)
            try:
                result = await super().execute_activity(input)
            except BaseException:
                metrics.webhooks.labels("failed").inc()
                raise
            metrics.webhooks.labels("delivered").inc()
            return result
        queue = self._owner._state.queue.value
        task = input.args[0] if input.args else None
        bind_contextvars(
            task_id=info.workflow_id,
            project_id=getattr(task, "project_id", None),
            task_type=info.activity_type,
            attempt=info.attempt,
            queue=queue,
        )
        # Before the work starts: its progress signals (and their webhooks) must follow the start.
        await self._owner.announce_start()
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
            self._owner._state.task_finished(outcome == "completed")


def load_providers(settings: Settings, queue: Queue) -> list[ActivityProvider]:
    """Import each activity module the queue's task types name (lazily: the API never imports torch)."""
    providers: list[ActivityProvider] = []
    for module_name in dict.fromkeys(spec.activity_module for spec in specs_for_queue(queue)):
        build: Callable[[Settings], ActivityProvider] = importlib.import_module(module_name).build
        providers.append(build(settings))
    return providers


async def ensure_bookkeeping(client: Client) -> None:
    """Start the bookkeeping and limiter workflows once; later starts attach to the running ones."""
    for workflow_run, workflow_id in (
        (TaskMetricsWorkflow.run, METRICS_WORKFLOW_ID),
        (WorkerRegistryWorkflow.run, WORKER_REGISTRY_WORKFLOW_ID),
    ):
        await client.start_workflow(
            workflow_run,
            None,
            id=workflow_id,
            task_queue=WORKFLOW_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    for group in CONCURRENCY_GROUPS:
        await ensure_limiter_running(client, group)


def _merged_cache_stats(providers: list[ActivityProvider]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for provider in providers:
        for name, value in provider.cache_stats().items():
            merged[name] = merged.get(name, 0) + value
    return merged


def _serve_metrics(metrics: WorkerMetrics, port: int) -> None:
    """Serve /metrics in a thread; a port already taken (two workers of a queue on one host) is not fatal."""
    try:
        start_http_server(port, registry=metrics.registry)
    except OSError as err:
        log.warning("Worker metrics not served", extra={"port": port, "error": str(err)})


def _gpu_memory_mb() -> list[float]:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    return [round(torch.cuda.memory_allocated(i) / 2**20, 1) for i in range(torch.cuda.device_count())]


async def _report(client: Client, state: WorkerState, providers: list[ActivityProvider]) -> None:
    report = WorkerReport(
        identity=state.identity,
        queue=state.queue.value,
        pid=os.getpid(),
        host=socket.gethostname(),
        state=state.state,
        started_at=state.started_at,
        tasks_done=state.tasks_done,
        tasks_failed=state.tasks_failed,
        rss_mb=round(state.rss_mb(), 1),
        gpu_memory_mb=_gpu_memory_mb(),
        loaded_models=[m for p in providers for m in p.loaded_models()],
        concurrency=state.settings.worker_concurrency(state.queue),
        reported_at=datetime.now(UTC).isoformat(),
    )
    try:
        await client.start_workflow(
            WorkerRegistryWorkflow.run,
            None,
            id=WORKER_REGISTRY_WORKFLOW_ID,
            task_queue=WORKFLOW_QUEUE,
            start_signal="report",
            start_signal_args=[report],
        )
    except RPCError as err:
        log.warning("Worker report failed", extra={"error": str(err)})


async def _report_forever(
    client: Client, state: WorkerState, providers: list[ActivityProvider], metrics: WorkerMetrics
) -> None:
    while True:
        await _report(client, state, providers)
        metrics.rss.labels(state.queue.value).set(state.rss_mb() * 2**20)
        for index, used_mb in enumerate(_gpu_memory_mb()):
            metrics.gpu_memory.labels(state.queue.value, str(index)).set(used_mb * 2**20)
        if state.rss_mb() > state.settings.worker_max_memory_mb:
            state.request_recycle(
                f"RSS {state.rss_mb():.0f} MB above {state.settings.worker_max_memory_mb} MB"
            )
        await asyncio.sleep(state.settings.worker_report_interval_s)


async def run_worker(settings: Settings, queue: Queue) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until recycling is due (exit RECYCLE_EXIT_CODE)."""
    state = WorkerState(settings, queue)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, state.stop.set)

    ports = settings.worker_metrics_ports(queue)
    client = await connect(settings, sdk_metrics_port=ports[1] if ports else None)
    await ensure_bookkeeping(client)
    providers = load_providers(settings, queue)
    metrics = WorkerMetrics(queue.value, lambda: _merged_cache_stats(providers))
    if ports:
        _serve_metrics(metrics, ports[0])
    http = httpx.AsyncClient()
    webhooks = WebhookActivities(settings, http)
    task_types = {spec.activity_name for spec in specs_for_queue(queue)}
    activity_worker = Worker(
        client,
        task_queue=queue.value,
        activities=[a for p in providers for a in p.activities()],
        max_concurrent_activities=settings.worker_concurrency(queue),
        interceptors=[_TaskLifecycleInterceptor(client, state, task_types, metrics)],
        # Draining lets running tasks finish; the hard timeout bounds them anyway.
        graceful_shutdown_timeout=timedelta(seconds=QUEUE_HARD_TIMEOUT_S[queue]),
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        identity=state.identity,
    )
    workflow_worker = Worker(
        client,
        task_queue=WORKFLOW_QUEUE,
        workflows=[TaskWorkflow, TaskMetricsWorkflow, WorkerRegistryWorkflow, ConcurrencyLimiterWorkflow],
        activities=[*webhooks.activities(), *BookkeepingActivities(client).activities()],
        interceptors=[_TaskLifecycleInterceptor(client, state, set(), metrics)],
        graceful_shutdown_timeout=timedelta(seconds=45),
        identity=state.identity,
    )
    runs = [asyncio.create_task(w.run()) for w in (activity_worker, workflow_worker)]
    state.state = "running"
    log.info(
        "Worker started",
        extra={"queue": queue.value, "identity": state.identity, "task_types": sorted(task_types)},
    )
    reporter = asyncio.create_task(_report_forever(client, state, providers, metrics))
    try:
        stopped = asyncio.create_task(state.stop.wait())
        done, _ = await asyncio.wait([stopped, *runs], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        state.state = "draining"
        await _report(client, state, providers)
        await asyncio.gather(activity_worker.shutdown(), workflow_worker.shutdown())
    finally:
        reporter.cancel()
        state.state = "stopped"
        await _report(client, state, providers)
        for provider in providers:
            await provider.aclose()
        await http.aclose()
    log.info("Worker stopped", extra={"queue": queue.value, "reason": state.recycle_reason or "signal"})
    return RECYCLE_EXIT_CODE if state.recycle_reason else 0
