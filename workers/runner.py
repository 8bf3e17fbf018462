"""One worker process for one queue: its activities, plus the shared workflow queue."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import start_http_server
from temporalio.client import Client, Interceptor
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.bookkeeping import BookkeepingActivities, ensure_limiter_running
from activities.io.cache import CacheActivities
from activities.io.webhook_records import TemporalWebhookState
from activities.io.webhooks import WebhookActivities
from activities.resources import WorkerResources
from taskservice.catalog import CONCURRENCY_GROUPS, QUEUE_HARD_TIMEOUT_S, specs_for_queue
from taskservice.contracts import WorkerReport
from taskservice.queues import (
    METRICS_WORKFLOW_ID,
    WEBHOOK_QUEUE,
    WORKER_REGISTRY_WORKFLOW_ID,
    WORKFLOW_QUEUE,
    Queue,
)
from taskservice.settings import Settings
from taskservice.telemetry import WorkerMetrics
from taskservice.temporal import connect
from taskservice.tracing import Tracing, instrument_httpx
from workers.handover import RECYCLE_EXIT_CODE, DrainNotice, Handover
from workers.lifecycle import TaskLifecycleInterceptor, WorkerState
from workers.recycling import overlap_recycle
from workers.registry import QueueActivities, build_queue_activities
from workflows import console
from workflows.bookkeeping import REPORT_SIGNAL, TaskMetricsWorkflow, WorkerRegistryWorkflow
from workflows.coalesce import RenderWorkflow
from workflows.limiter import ConcurrencyLimiterWorkflow
from workflows.pipeline import PipelineWorkflow
from workflows.pipeline_plan import PipelinePlanWorkflow
from workflows.task import TaskWorkflow
from workflows.webhook_record import WebhookRecordWorkflow
from workflows.webhook_secret import WebhookSecretWorkflow

log = logging.getLogger("taskservice.workers")

# Heartbeats reach the server at most this often; it bounds how fast a cancel reaches an activity.
HEARTBEAT_THROTTLE = timedelta(seconds=1)
METRICS_RETRY_S = 2.0


@dataclass(frozen=True)
class WorkerOptions:
    """Variants of the worker that bench/orchestration.py compares; the defaults are what production runs."""

    # Run our workflows in Temporal's sandbox (re-imported per run, guarded against non-determinism).
    sandboxed_workflows: bool = True


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
            static_summary=console.SERVICE_WORKFLOWS[workflow_id][0],
            static_details=console.SERVICE_WORKFLOWS[workflow_id][1],
        )
    for group in CONCURRENCY_GROUPS:
        await ensure_limiter_running(client, group)


async def _serve_metrics(metrics: WorkerMetrics, host: str, port: int) -> None:
    """Serve /metrics in a thread. While the port is taken (the worker this one replaces is still draining,
    or another worker of the queue runs on this host) try again every few seconds."""
    warned = False
    while True:
        try:
            start_http_server(port, addr=host, registry=metrics.registry)
            return
        except OSError as err:
            if not warned:
                log.warning(
                    "Worker metrics not served yet; retrying",
                    extra={"host": host, "port": port, "error": str(err)},
                )
                warned = True
        await asyncio.sleep(METRICS_RETRY_S)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _gpu_memory_mb() -> list[float]:
    # An activity thread may be importing torch this very moment: the half-initialised module has no `cuda`
    # yet (it is bound once torch.cuda is fully loaded), and touching it would end the reporting loop.
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    if cuda is None or not cuda.is_available():
        return []
    return [round(cuda.memory_allocated(i) / 2**20, 1) for i in range(cuda.device_count())]


async def _report(client: Client, state: WorkerState, activities: QueueActivities) -> None:
    stats = activities.model_stats()
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
        loaded_models=activities.loaded_models(),
        concurrency=state.settings.worker_concurrency(state.queue),
        model_cache_hits=int(stats.get("hits", 0)),
        model_cache_misses=int(stats.get("misses", 0)),
        model_load_seconds=round(stats.get("load_seconds", 0.0), 2),
        image_batches=int(stats.get("image_batches", 0)),
        image_batched_tasks=int(stats.get("image_batched_tasks", 0)),
        reported_at=datetime.now(UTC).isoformat(),
        report_interval_s=state.settings.worker_report_interval_s,
    )
    try:
        await client.start_workflow(
            WorkerRegistryWorkflow.run,
            None,
            id=WORKER_REGISTRY_WORKFLOW_ID,
            task_queue=WORKFLOW_QUEUE,
            start_signal=REPORT_SIGNAL,
            start_signal_args=[report],
            static_summary=console.SERVICE_WORKFLOWS[WORKER_REGISTRY_WORKFLOW_ID][0],
            static_details=console.SERVICE_WORKFLOWS[WORKER_REGISTRY_WORKFLOW_ID][1],
        )
    except RPCError as err:
        log.warning("Worker report failed", extra={"error": str(err)})


async def _report_forever(
    client: Client, state: WorkerState, activities: QueueActivities, metrics: WorkerMetrics
) -> None:
    while True:
        await _report(client, state, activities)
        metrics.rss.labels(state.queue.value).set(state.rss_mb() * 2**20)
        for index, used_mb in enumerate(_gpu_memory_mb()):
            metrics.gpu_memory.labels(state.queue.value, str(index)).set(used_mb * 2**20)
        state.check_memory()
        await asyncio.sleep(state.settings.worker_report_interval_s)


def _workers(
    client: Client,
    resources: WorkerResources,
    activities: QueueActivities,
    state: WorkerState,
    metrics: WorkerMetrics,
    options: WorkerOptions,
) -> tuple[Worker, Worker, Worker]:
    """The queue's activity worker, the worker of the shared workflow queue and the webhook worker."""
    settings, queue = resources.settings, state.queue
    task_types = {spec.activity_name for spec in specs_for_queue(queue)}
    activity_worker = Worker(
        client,
        task_queue=queue.value,
        activities=activities.functions,
        max_concurrent_activities=settings.worker_concurrency(queue),
        interceptors=[TaskLifecycleInterceptor(state, task_types, metrics)],
        # Draining lets running tasks finish; the hard timeout bounds them anyway.
        graceful_shutdown_timeout=timedelta(seconds=QUEUE_HARD_TIMEOUT_S[queue]),
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        identity=state.identity,
    )
    in_temporal = TemporalWebhookState(client, settings)
    webhooks = WebhookActivities(
        settings,
        resources.http,
        generations=in_temporal.generation,
        record_failure=in_temporal.record_failure,
        metrics=metrics,
    )
    workflow_worker = Worker(
        client,
        task_queue=WORKFLOW_QUEUE,
        workflows=[
            TaskWorkflow,
            PipelineWorkflow,
            PipelinePlanWorkflow,
            RenderWorkflow,
            TaskMetricsWorkflow,
            WorkerRegistryWorkflow,
            ConcurrencyLimiterWorkflow,
            WebhookSecretWorkflow,
            WebhookRecordWorkflow,
        ],
        activities=[
            # Also here for deliveries scheduled on this queue before the webhook queue existed.
            *webhooks.activities(),
            *BookkeepingActivities(client).activities(),
            *CacheActivities(
                settings, resources.publisher.storage, resources.fetcher, client=client, metrics=metrics
            ).activities(),
        ],
        graceful_shutdown_timeout=timedelta(seconds=45),
        identity=state.identity,
        workflow_runner=(
            SandboxedWorkflowRunner() if options.sandboxed_workflows else UnsandboxedWorkflowRunner()
        ),
    )
    return activity_worker, workflow_worker, _webhook_worker(client, webhooks, state)


def _webhook_worker(client: Client, webhooks: WebhookActivities, state: WorkerState) -> Worker:
    """Webhook deliveries, on their own queue and slots (WEBHOOK_CONCURRENCY); the activity counts its own
    attempts in the worker's metrics."""
    return Worker(
        client,
        task_queue=WEBHOOK_QUEUE,
        activities=webhooks.activities(),
        max_concurrent_activities=state.settings.webhook_concurrency,
        graceful_shutdown_timeout=timedelta(seconds=45),
        identity=state.identity,
    )


async def run_worker(
    settings: Settings,
    queue: Queue,
    options: WorkerOptions | None = None,
    *,
    handover: Handover | None = None,
    tracing: Tracing | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until recycling is due (exit RECYCLE_EXIT_CODE); `handover`
    tells the supervisor when the drain starts; with `tracing`, workflows and activities continue the traces
    of the calls that started them, and the activities' HTTP calls are spans of them.

    Raises:
        MissingActivityError: a catalog entry of the queue has no activity to run it (before connecting).
    """
    state = WorkerState(settings, queue)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, state.stop.set)
    if tracing is not None:
        instrument_httpx(tracing)  # before the worker's HTTP clients exist
    interceptors = () if tracing is None else (tracing.temporal_interceptor(),)
    async with WorkerResources.open(settings) as resources:
        activities = build_queue_activities(resources, specs_for_queue(queue))
        state.watch(activities)
        try:
            await _serve(
                resources,
                activities,
                state,
                options or WorkerOptions(),
                handover or Handover(None),
                interceptors=interceptors,
            )
        finally:
            await activities.aclose()
    log.info("Worker stopped", extra={"queue": queue.value, "reason": state.recycle_reason or "signal"})
    return RECYCLE_EXIT_CODE if state.recycle_reason else 0


async def _serve(
    resources: WorkerResources,
    activities: QueueActivities,
    state: WorkerState,
    options: WorkerOptions,
    handover: Handover,
    *,
    interceptors: tuple[Interceptor, ...] = (),
) -> None:
    settings = resources.settings
    ports = settings.worker_metrics_ports(state.queue)
    sdk_port = ports[1] if ports else None
    if sdk_port and not _port_free(settings.worker_metrics_host, sdk_port):
        # Temporal's runtime binds its port once, at connect: while the worker this one replaces drains,
        # this process runs without the SDK's metrics (ours come back as soon as the port frees).
        log.warning("Temporal SDK metrics not served: port taken", extra={"port": sdk_port})
        sdk_port = None
    client = await connect(settings, sdk_metrics_port=sdk_port, interceptors=interceptors)
    await ensure_bookkeeping(client)
    metrics = WorkerMetrics(state.queue.value, activities.model_stats)
    background: list[asyncio.Task[None]] = []
    if ports:
        serving = _serve_metrics(metrics, settings.worker_metrics_host, ports[0])
        background.append(asyncio.create_task(serving))
    workers = _workers(client, resources, activities, state, metrics, options)
    runs = [asyncio.create_task(w.run()) for w in workers]
    state.state = "running"
    log.info(
        "Worker started",
        extra={
            "queue": state.queue.value,
            "identity": state.identity,
            # Each task type once (seed 004's aliases share an activity, not a name).
            "task_types": sorted(spec.name for spec in specs_for_queue(state.queue)),
        },
    )
    reporter = asyncio.create_task(_report_forever(client, state, activities, metrics))
    try:
        stopped = asyncio.create_task(state.stop.wait())
        done, _ = await asyncio.wait([stopped, *runs], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        state.state = "draining"
        if state.recycle_kind is not None:
            handover.notify(DrainNotice(state.recycle_kind, overlap_recycle(settings, activities)))
        await _report(client, state, activities)
        await asyncio.gather(*(w.shutdown() for w in workers))
    finally:
        reporter.cancel()
        for task in background:
            task.cancel()
        state.state = "stopped"
        await _report(client, state, activities)
