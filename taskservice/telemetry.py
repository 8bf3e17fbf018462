"""Prometheus metrics of the API and of each worker, each in its own registry (nothing at import time)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from taskservice.contracts import MetricsState
from taskservice.queues import Queue

TASK_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf"))
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, float("inf"))


class ApiMetrics:
    """What the API measures itself, plus the service-wide numbers it reads from Temporal on a refresh."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tasks_submitted = Counter(
            "taskservice_tasks_submitted",
            "Tasks accepted by this API process.",
            ["task_type"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "taskservice_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "taskservice_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.queue_backlog = Gauge(
            "taskservice_queue_backlog",
            "Activity tasks waiting in a queue (Temporal).",
            ["queue"],
            registry=self.registry,
        )
        self.queue_pollers = Gauge(
            "taskservice_queue_pollers",
            "Live workers polling a queue (Temporal).",
            ["queue"],
            registry=self.registry,
        )
        self.temporal_up = Gauge(
            "taskservice_temporal_up", "1 when the last refresh reached Temporal.", registry=self.registry
        )
        self.finished = _FinishedTasks()
        self.registry.register(self.finished)
        for queue in Queue:
            self.queue_backlog.labels(queue.value)
            self.queue_pollers.labels(queue.value)


class _FinishedTasks(Collector):
    """Cumulative outcomes from the metrics workflow (shared by all API replicas and workers)."""

    def __init__(self) -> None:
        self.state = MetricsState()

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        finished = CounterMetricFamily(
            "taskservice_tasks_finished", "Tasks finished, by outcome (all workers).", labels=["status"]
        )
        for status, value in (
            ("completed", self.state.completed),
            ("failed", self.state.failed),
            ("cancelled", self.state.cancelled),
        ):
            finished.add_metric([status], value)
        yield finished
        retried = CounterMetricFamily("taskservice_tasks_retried", "Tasks re-submitted through /retry.")
        retried.add_metric([], self.state.retried)
        yield retried
        average = GaugeMetricFamily(
            "taskservice_task_duration_average_seconds",
            "Average processing time by task type.",
            labels=["task_type"],
        )
        for task_type, count in self.state.duration_count.items():
            if count:
                average.add_metric([task_type], self.state.duration_sum[task_type] / count)
        yield average
        yield from _cache_families(self.state)


def _cache_families(state: MetricsState) -> Iterable[CounterMetricFamily]:
    """The render cache's answers and savings by task type (all tenants, from the metrics workflow)."""
    answers = CounterMetricFamily(
        "taskservice_cache_tasks",
        "Completed tasks with a render-cache key, by task type and how they were answered "
        "(hit: from an entry, coalesced: from another task's render, miss: rendered).",
        labels=["task_type", "answer"],
    )
    for answer, counts in (
        ("hit", state.cache_hits),
        ("coalesced", state.cache_coalesced),
        ("miss", state.cache_misses),
    ):
        for task_type, value in counts.items():
            answers.add_metric([task_type, answer], value)
    yield answers
    saved = CounterMetricFamily(
        "taskservice_cache_gpu_seconds_saved",
        "Processing seconds the render cache saved (each answer: its source task's), by task type.",
        labels=["task_type"],
    )
    for task_type, seconds in state.cache_saved_seconds.items():
        saved.add_metric([task_type], seconds)
    yield saved


class WorkerMetrics:
    """One worker process: its tasks, webhooks, memory, model cache and image batches."""

    def __init__(self, queue: str, model_stats: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry()
        self.tasks = Counter(
            "taskservice_worker_tasks",
            "Task attempts run by this worker, by outcome.",
            ["queue", "task_type", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "taskservice_worker_task_duration_seconds",
            "Task attempt duration.",
            ["queue", "task_type"],
            buckets=TASK_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.webhooks = Counter(
            "taskservice_webhook_deliveries",
            "Webhook delivery attempts by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.rss = Gauge(
            "taskservice_worker_rss_bytes",
            "Resident memory of this worker.",
            ["queue"],
            registry=self.registry,
        )
        self.gpu_memory = Gauge(
            "taskservice_worker_gpu_memory_bytes",
            "GPU memory allocated by this worker.",
            ["queue", "gpu"],
            registry=self.registry,
        )
        self.cache_lookups = Counter(
            "taskservice_cache_lookups",
            "Render cache lookups answered by this worker, by task type and outcome (hit, miss, refresh).",
            ["task_type", "outcome"],
            registry=self.registry,
        )
        self.cache_saved_seconds = Counter(
            "taskservice_cache_saved_seconds",
            "Processing seconds of the source tasks whose results answered cache hits, by task type.",
            ["task_type"],
            registry=self.registry,
        )
        self.registry.register(_ModelCollector(queue, model_stats))


# Counters of `TaskActivities.model_stats`, as Prometheus counters (the exposition adds `_total`).
MODEL_COUNTERS = (
    ("taskservice_model_cache_hits", "hits", "Model cache hits (a warm model served) of this worker."),
    ("taskservice_model_cache_misses", "misses", "Model cache misses (a model was loaded) of this worker."),
    ("taskservice_model_load_seconds", "load_seconds", "Seconds this worker spent loading models."),
    ("taskservice_model_evictions", "evictions", "Models dropped to fit MODEL_CACHE_MAX_GB."),
    ("taskservice_model_compile_seconds", "compile_seconds", "Seconds spent compiling (TORCH_COMPILE)."),
    ("taskservice_image_batches", "image_batches", "Image pipeline calls (a batch of one counts)."),
    ("taskservice_image_batched_tasks", "image_batched_tasks", "Image tasks those calls held."),
)


class _ModelCollector(Collector):
    def __init__(self, queue: str, stats: Callable[[], dict[str, float]]) -> None:
        self._queue = queue
        self._stats = stats

    def collect(self) -> Iterable[CounterMetricFamily]:
        stats = self._stats()
        for metric, name, description in MODEL_COUNTERS:
            family = CounterMetricFamily(metric, description, labels=["queue"])
            family.add_metric([self._queue], stats.get(name, 0))
            yield family
