"""Long-lived bookkeeping workflows: cumulative task metrics and the worker registry.

Temporal is the only store of the service: these keep what visibility cannot (cumulative counters that
outlive retention, average durations, workers' own reports) and publish it in their memo, which the API
reads with `describe()` — no worker needed to answer.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.bookkeeping import BookkeepingActivities
    from taskservice.contracts import (
        MetricsState,
        RetryRecorded,
        ScanWindow,
        WorkerRegistryState,
        WorkerReport,
    )
    from taskservice.record import DURATIONS_MEMO, METRICS_MEMO, WORKERS_MEMO
    from workflows import console
    from workflows.history import history_is_long

# The metrics and registry workflows take their carried-over state at init (signals of a run's first
# activation used to land on an empty state).
STATE_AT_INIT_PATCH = "bookkeeping-state-at-init"
# How often finished tasks are counted, and how far behind now: a task's visibility record is written
# shortly after it closes, so the newest seconds are left to the next scan.
SCAN_EVERY = timedelta(seconds=2)
VISIBILITY_LAG = timedelta(seconds=3)
# Reports of workers unseen this long are dropped (a stopped worker's sooner), whenever the memo is published:
# the memo holds every report (~500 bytes each) and Temporal refuses a memo above 32 KiB, so it must hold the
# workers of now, not of every run since the registry started (55 of them, 52 gone, were seen in make dev).
FORGET_WORKERS_AFTER = timedelta(minutes=10)
FORGET_STOPPED_WORKERS_AFTER = timedelta(minutes=2)
# Reports that only refresh known workers' figures are published together, at most this often (and at most
# once per the shortest report interval, so a live worker's published `last_seen` never falls behind by more
# than two of its intervals: the API's "gone after 3 missed reports" keeps its margin). A new worker or a
# change of state is published at once. One memo upsert per window instead of one per report.
PUBLISH_REFRESHES_EVERY = timedelta(seconds=5)
# With nothing new to count, `counted_until` is still published this often: the API tells fresh counts
# from frozen ones by it (a metrics workflow that stopped moving reads as stale).
PUBLISH_PROGRESS_EVERY = timedelta(seconds=10)


# The registry's report signal, by name: workers send their first report with signal-with-start, which takes
# a signal's name only.
REPORT_SIGNAL = "report"


@workflow.defn(name="TaskMetricsWorkflow")
class TaskMetricsWorkflow:
    """Counts finished tasks by scanning visibility for the task workflows that closed since the last scan.

    Pulling in windows keeps tasks from paying for a signal (and the workflow-task round trip that waits
    for it) each; half-open `[counted_until, now - lag)` windows count each task exactly once.
    """

    @workflow.init
    def __init__(self, state: MetricsState | None = None) -> None:
        # The carried-over state is taken before any signal is handled: taken in `run`, it overwrote what the
        # signals of a new run's first activation (a retry recorded during the continue-as-new) had counted.
        self._state_at_init = workflow.patched(STATE_AT_INIT_PATCH)
        self._state = (state or MetricsState()) if self._state_at_init else MetricsState()
        self._dirty = False
        self._published_until: datetime | None = None
        # The duration samples are published with the first memo of a run, then when a scan adds some.
        self._durations_changed = True

    @workflow.run
    async def run(self, state: MetricsState | None = None) -> None:
        if not self._state_at_init:
            self._state = state or MetricsState()
        if self._state.counted_until is None:
            self._state.counted_until = workflow.now().isoformat()
        self._publish()
        next_scan = workflow.now() + SCAN_EVERY
        while True:
            wait_s = (next_scan - workflow.now()).total_seconds()
            if wait_s > 0:
                try:
                    # A retry recorded by the API is published at once, scans keep their pace.
                    await workflow.wait_condition(lambda: self._dirty, timeout=wait_s, timeout_summary="scan")
                except TimeoutError:
                    pass
            if workflow.now() >= next_scan:
                await self._scan()
                next_scan = workflow.now() + SCAN_EVERY
            if self._dirty:
                self._dirty = False
                self._publish()
            if history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)

    async def _scan(self) -> None:
        assert self._state.counted_until is not None
        until = workflow.now() - VISIBILITY_LAG
        if until <= datetime.fromisoformat(self._state.counted_until):
            return
        tally = await workflow.execute_local_activity_method(
            BookkeepingActivities.scan_finished_tasks,
            ScanWindow(since=self._state.counted_until, until=until.isoformat()),
            start_to_close_timeout=timedelta(minutes=5),
        )
        self._state.add_scan(tally)
        self._durations_changed = self._durations_changed or bool(tally.samples)
        self._state.counted_until = until.isoformat()
        self._dirty = self._dirty or tally.total_finished > 0
        if workflow.patched("metrics-publish-progress"):
            published = self._published_until
            self._dirty = self._dirty or published is None or until - published >= PUBLISH_PROGRESS_EVERY

    @workflow.signal
    def record_retry(self, retry: RetryRecorded) -> None:
        self._state.add_retry(retry.tenant)
        self._dirty = True

    def _publish(self) -> None:
        counters = asdict(self._state)
        durations = counters.pop("durations")
        memo = {METRICS_MEMO: counters}
        if self._durations_changed:
            memo[DURATIONS_MEMO] = durations
            self._durations_changed = False
        workflow.upsert_memo(memo)
        workflow.set_current_details(console.metrics_state(self._state))
        if self._state.counted_until is not None:
            self._published_until = datetime.fromisoformat(self._state.counted_until)


@workflow.defn(name="WorkerRegistryWorkflow")
class WorkerRegistryWorkflow:
    """Workers' own reports, published in the memo: new workers and changes of state at once, refreshes
    together (PUBLISH_REFRESHES_EVERY)."""

    @workflow.init
    def __init__(self, state: WorkerRegistryState | None = None) -> None:
        # The carried-over state is taken before any signal is handled, so the reports of a new run's first
        # activation (a signal-with-start's, or those sent during the continue-as-new) are kept.
        self._state_at_init = workflow.patched(STATE_AT_INIT_PATCH)
        self._state = (state or WorkerRegistryState()) if self._state_at_init else WorkerRegistryState()
        self._dirty = False
        self._urgent = False  # a new worker or a change of state: publish at once
        self._published_at: datetime | None = None

    @workflow.run
    async def run(self, state: WorkerRegistryState | None = None) -> None:
        if not self._state_at_init:
            # A signal-with-start's report is handled before this runs (first activation): keep it.
            self._state = state or self._state
        self._publish()
        while True:
            await workflow.wait_condition(lambda: self._dirty or history_is_long())
            if self._dirty and not self._urgent and workflow.patched("registry-coalesce-refreshes"):
                await self._gather_refreshes()
            if self._dirty:
                self._dirty = self._urgent = False
                self._publish()
            if history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._continue_as_new()

    async def _gather_refreshes(self) -> None:
        """Wait out the rest of the publish window, unless something urgent arrives meanwhile."""
        intervals = [timedelta(seconds=w.report_interval_s) for w in self._state.workers.values()]
        window = min([PUBLISH_REFRESHES_EVERY, *intervals])
        published_at = self._published_at or workflow.now()
        wait_s = (published_at + window - workflow.now()).total_seconds()
        if wait_s <= 0:
            return
        try:
            await workflow.wait_condition(lambda: self._urgent or history_is_long(), timeout=wait_s)
        except TimeoutError:
            pass

    @workflow.signal(name=REPORT_SIGNAL)
    def report(self, report: WorkerReport) -> None:
        # Server-side time of arrival: workers' clocks may drift, the API compares against this.
        report.last_seen = workflow.now().isoformat()
        known = self._state.workers.get(report.identity)
        self._urgent = self._urgent or known is None or known.state != report.state
        self._state.workers[report.identity] = report
        self._dirty = True

    def _publish(self) -> None:
        self._forget_long_gone()
        workflow.upsert_memo({WORKERS_MEMO: {k: asdict(w) for k, w in self._state.workers.items()}})
        workflow.set_current_details(console.registry_state(list(self._state.workers.values())))
        self._published_at = workflow.now()

    def _forget_long_gone(self) -> None:
        now = workflow.now()
        self._state.workers = {
            k: w
            for k, w in self._state.workers.items()
            if now - datetime.fromisoformat(w.last_seen)
            < (FORGET_STOPPED_WORKERS_AFTER if w.state == "stopped" else FORGET_WORKERS_AFTER)
        }

    def _continue_as_new(self) -> None:
        self._forget_long_gone()
        workflow.continue_as_new(self._state)
