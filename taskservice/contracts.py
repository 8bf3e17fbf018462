"""Typed inputs and outputs of workflows and activities.

Plain dataclasses of JSON-friendly values (timestamps are ISO-8601 strings), so they cross the Temporal
data converter unchanged and can grow new optional fields without breaking running histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskservice.durations import DurationSample, DurationWindows
from taskservice.previews import TaskPreview as TaskPreview

# TaskStatus is declared with the outcome it is part of; importable from here as ever.
from taskservice.record import TaskRecord
from taskservice.record import TaskStatus as TaskStatus
from taskservice.render_cache import CachePlan


@dataclass
class RetrySpec:
    initial_interval_s: float
    backoff_coefficient: float = 2.0
    maximum_attempts: int = 4
    non_retryable_error_types: list[str] = field(default_factory=list)


@dataclass
class TaskPlan:
    """How one task runs: resolved from the catalog by the API and frozen into the workflow input."""

    activity: str
    queue: str
    soft_timeout_s: float
    hard_timeout_s: float
    heartbeat_timeout_s: float
    retry: RetrySpec


@dataclass
class TaskWorkflowInput:
    task_id: str
    # What the task is; the API writes this same record into the workflow's memo.
    task: TaskRecord
    plan: TaskPlan
    # Not started by then: cancelled without running; still running then: cancelled.
    deadline_at: str | None = None
    # Cluster-wide concurrency slots to hold while the activity runs, acquired in this order.
    concurrency: list[ConcurrencySlot] = field(default_factory=list)
    # The tenant's share of each queue under load (Temporal task-queue fairness, keyed by tenant).
    fairness_weight: float = 1.0
    # What the task does with the render cache (None: nothing), decided at submit from its type and mode.
    cache: CachePlan | None = None

    @property
    def closes_with_outcome(self) -> bool:
        """Whether the workflow closes in the workflow task that records the outcome: nothing is left to
        do after it (no webhook to send, no concurrency slot to give back; see TaskWorkflow._finish)."""
        return not self.task.callback_url and not self.concurrency


@dataclass
class ConcurrencySlot:
    """A capped group (`image`, `video`, `total`) and its limit, frozen at submit."""

    group: str
    limit: int


# The signal a limiter workflow grants a slot with (the group's name), sent to the holder by its workflow ID:
# the task workflow's handler is declared with this name.
SLOT_GRANTED_SIGNAL = "slot_granted"
# The signal a limiter tells a waiting task to ask again later with (its tenant has enough waiting there).
SLOT_DEFERRED_SIGNAL = "slot_deferred"


@dataclass
class SlotRequest:
    """A task asking a limiter workflow for a slot; answered by the `SLOT_GRANTED_SIGNAL` signal, or by
    `SLOT_DEFERRED_SIGNAL` (ask again later)."""

    holder_id: str
    limit: int
    # Temporal priority key of the task: lower is served first; within a priority, tenants take turns.
    priority_key: int = 3
    # The slot is reclaimed after this long even if the holder never releases it (terminated by hand).
    lease_s: float = 3600.0
    # The task's tenant and its weight (TENANT_WEIGHTS, as its fairness key's): a tenant of weight 2 takes
    # two turns for another's one. Requests sent before fair slots existed are all of tenant "".
    tenant: str = ""
    weight: float = 1.0


@dataclass
class SlotDeferred:
    """The limiter's answer to a request it does not keep in line (its tenant has enough waiting there
    already): the task asks again later, so the limiter's state stays bounded whatever the backlog."""

    group: str


@dataclass
class LimiterState:
    group: str
    limit: int = 0
    # holder task_id -> ISO time its lease ends.
    holders: dict[str, str] = field(default_factory=dict)
    waiting: list[SlotRequest] = field(default_factory=list)
    # Weighted round robin (workflows/fair_slots.py): each tenant's next turn, in turns of virtual time, the
    # turn last served, and the tenant of each holder. Absent from a state written before fair slots.
    turns: dict[str, float] = field(default_factory=dict)
    clock: float = 0.0
    holder_tenants: dict[str, str] = field(default_factory=dict)


@dataclass
class TaskActivityInput:
    task_id: str
    project_id: str
    task_type: str
    task_data: dict[str, Any]
    soft_timeout_s: float
    # Signal the workflow as progress moves (only when the task asked for progress webhooks).
    progress_updates: bool = False
    # Signal the workflow at every new preview (only when the task asked for `preview` webhooks).
    preview_updates: bool = False
    # Announce the attempt (`task_started`) before it runs, not only once it has run a while: its start
    # webhook must precede its progress webhooks.
    announce_at_once: bool = False
    # The task whose name the output files take, when the attempt runs for others (a coalesced render
    # runs as its own workflow and names its files after the task that started it).
    output_id: str | None = None

    @property
    def output_name(self) -> str:
        return self.output_id or self.task_id


@dataclass
class ClipCheckpoint:
    """The finished clips of a video or animation render, kept in storage: a retry of the task renders from
    the first unfinished clip with the same seed (`activities.media.resume`)."""

    seed: int
    clips: int  # clips of the whole render
    keys: list[str] = field(default_factory=list)  # storage keys of the finished clips' frames, in order
    attempts: int = 1  # attempts that rendered clips of it, the current one included
    resumed_from: int = 0  # clips the current attempt found finished


@dataclass
class TaskProgressUpdate:
    """How far an attempt is (0..1) and what it does: its heartbeat details (read back by the API's task
    view) and the payload of the `task_progress` signal; `clips` where a render keeps finished clips,
    `preview` where it has written a live preview (both absent from older histories)."""

    progress: float
    step: str
    clips: ClipCheckpoint | None = None
    preview: TaskPreview | None = None


@dataclass
class TaskStarted:
    """Sent by a worker to the task's workflow when an activity attempt starts executing."""

    attempt: int
    started_at: str
    worker: str


@dataclass
class TaskAttemptResult:
    """What a task's activity attempt returns to its workflow (`activities.runtime.run_task` builds it): the
    task's result, and the attempt's start, which the workflow records if no `task_started` signal told it."""

    result: dict[str, Any]
    started_at: str
    attempt: int


# The fields each kind of webhook carries besides the task's identity, status and metadata: seed 001's
# success and failure payloads, the same shape for a cancelled task, and the `started` and `progress` events
# (webhook_events_filter) of a task still processing.
WEBHOOK_FIELDS: dict[str, tuple[str, ...]] = {
    TaskStatus.COMPLETED: ("result", "processing_time", "completed_at"),
    TaskStatus.FAILED: ("error", "traceback", "failed_at"),
    TaskStatus.CANCELLED: ("error", "cancelled_at"),
    "started": ("event", "started_at", "progress"),
    "progress": ("event", "progress", "current_step"),
    "preview": ("event", "preview_url", "preview_at"),
}


@dataclass
class WebhookPayload:
    """What a webhook tells, written by the task workflow; its body (`body`) holds only the fields of its kind
    (`WEBHOOK_FIELDS`)."""

    task_id: str
    project_id: str
    task_type: str
    status: TaskStatus
    metadata: dict[str, Any] = field(default_factory=dict)
    # `started`, `progress`, `preview`: the events of a task still processing; None for the final webhook.
    event: str | None = None
    result: dict[str, Any] | None = None
    processing_time: float | None = None
    completed_at: str | None = None
    # The seed's one-string error (`Type: message`).
    error: str | None = None
    traceback: str | None = None
    failed_at: str | None = None
    cancelled_at: str | None = None
    started_at: str | None = None
    progress: float | None = None
    current_step: str | None = None
    preview_url: str | None = None
    preview_at: str | None = None

    def body(self) -> dict[str, Any]:
        kind = WEBHOOK_FIELDS[self.event or self.status]
        names = ("task_id", "project_id", "task_type", "status", *kind, "metadata")
        return {name: getattr(self, name) for name in names}


@dataclass
class WebhookDelivery:
    """One webhook to send: the input of the `deliver_webhook` activity."""

    url: str
    webhook_id: str
    event: str
    payload: WebhookPayload
    task_id: str
    project_id: str
    task_type: str
    # Whose delivery it is: signed with this tenant's secret, recorded in its scope if it fails.
    tenant: str = "default"
    user: str | None = None


@dataclass
class RetryRecorded:
    original_task_id: str
    new_task_id: str
    tenant: str = "default"


@dataclass
class FinishedTally:
    """Finished tasks counted together: one visibility scan's worth, or the running total."""

    total_finished: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    duration_sum: dict[str, float] = field(default_factory=dict)
    duration_count: dict[str, int] = field(default_factory=dict)
    # Render cache, per task type: completed tasks answered by an entry (hits), by another task's render
    # (coalesced), rendered with a key (misses), and the source's processing seconds every answer saved.
    cache_hits: dict[str, int] = field(default_factory=dict)
    cache_coalesced: dict[str, int] = field(default_factory=dict)
    cache_misses: dict[str, int] = field(default_factory=dict)
    cache_saved_seconds: dict[str, float] = field(default_factory=dict)

    def add(self, other: FinishedTally) -> None:
        self.total_finished += other.total_finished
        self.completed += other.completed
        self.failed += other.failed
        self.cancelled += other.cancelled
        for task_type, seconds in other.duration_sum.items():
            self.duration_sum[task_type] = self.duration_sum.get(task_type, 0.0) + seconds
        for task_type, count in other.duration_count.items():
            self.duration_count[task_type] = self.duration_count.get(task_type, 0) + count
        for mine, theirs in (
            (self.cache_hits, other.cache_hits),
            (self.cache_coalesced, other.cache_coalesced),
            (self.cache_misses, other.cache_misses),
        ):
            for task_type, number in theirs.items():
                mine[task_type] = mine.get(task_type, 0) + number
        for task_type, seconds in other.cache_saved_seconds.items():
            saved = self.cache_saved_seconds.get(task_type, 0.0) + seconds
            self.cache_saved_seconds[task_type] = round(saved, 3)

    def count_cache(self, task_type: str, cache: dict[str, Any]) -> None:
        """A completed task's `result.cache`: a hit (from an entry or a shared render) or a miss."""
        if not cache.get("hit"):
            self.cache_misses[task_type] = self.cache_misses.get(task_type, 0) + 1
            return
        counts = self.cache_coalesced if cache.get("coalesced") else self.cache_hits
        counts[task_type] = counts.get(task_type, 0) + 1
        saved = float(cache.get("saved_seconds") or 0.0)
        self.cache_saved_seconds[task_type] = round(self.cache_saved_seconds.get(task_type, 0.0) + saved, 3)

    def count(self, status: TaskStatus, task_type: str, processing_time: float | None) -> None:
        """One finished task (a completed one's processing time counts toward its type's average)."""
        self.total_finished += 1
        if status == TaskStatus.COMPLETED:
            self.completed += 1
            if processing_time is not None:
                self.duration_sum[task_type] = self.duration_sum.get(task_type, 0.0) + processing_time
                self.duration_count[task_type] = self.duration_count.get(task_type, 0) + 1
        elif status == TaskStatus.FAILED:
            self.failed += 1
        elif status == TaskStatus.CANCELLED:
            self.cancelled += 1


@dataclass
class ScanTally(FinishedTally):
    """One visibility scan's worth of finished tasks, in all and per tenant."""

    tenants: dict[str, FinishedTally] = field(default_factory=dict)
    # Completed tasks' measured run times, for the learned durations.
    samples: list[DurationSample] = field(default_factory=list)


@dataclass
class TenantTally(FinishedTally):
    retried: int = 0


@dataclass
class MetricsState(FinishedTally):
    retried: int = 0
    # The same counts per tenant (what a tenant's own metrics show).
    tenants: dict[str, TenantTally] = field(default_factory=dict)
    # Tasks that closed before this instant (server time, ISO) are counted; later ones by the next scan.
    counted_until: str | None = None
    # The newest measured run times per task type and build (taskservice.durations).
    durations: DurationWindows = field(default_factory=DurationWindows)

    def add_scan(self, scan: ScanTally) -> None:
        self.add(scan)
        for sample in scan.samples:
            self.durations.add(sample)
        for tenant, tally in scan.tenants.items():
            self.tenants.setdefault(tenant, TenantTally()).add(tally)

    def add_retry(self, tenant: str) -> None:
        self.retried += 1
        self.tenants.setdefault(tenant, TenantTally()).retried += 1

    def of_tenant(self, tenant: str | None) -> TenantTally:
        """A tenant's own counts; with None, everyone's."""
        if tenant is None:
            whole = TenantTally(retried=self.retried)
            whole.add(self)
            return whole
        return self.tenants.get(tenant) or TenantTally()


@dataclass
class ScanWindow:
    """Task workflows with `since <= CloseTime < until`."""

    since: str
    until: str


@dataclass
class WorkerReport:
    """A worker process's own account of itself, kept by the worker registry workflow."""

    identity: str
    queue: str
    pid: int
    host: str
    state: str
    started_at: str
    tasks_done: int = 0
    tasks_failed: int = 0
    rss_mb: float = 0.0
    gpu_memory_mb: list[float] = field(default_factory=list)
    loaded_models: list[str] = field(default_factory=list)
    concurrency: int = 0
    # Warm models: cache answers (hits), loads (misses) and the seconds those loads took, since it started.
    model_cache_hits: int = 0
    model_cache_misses: int = 0
    model_load_seconds: float = 0.0
    # Image tasks run as batched pipeline calls: how many calls, and how many tasks they held.
    image_batches: int = 0
    image_batched_tasks: int = 0
    reported_at: str = ""
    last_seen: str = ""
    # How often this worker reports (WORKER_REPORT_INTERVAL_S); 0 from workers that predate the field.
    report_interval_s: float = 0.0


@dataclass
class WorkerRegistryState:
    workers: dict[str, WorkerReport] = field(default_factory=dict)


# Seed: 1 initial + 3 retries, spaced 1/2/4 s.
WEBHOOK_ATTEMPTS = 4
