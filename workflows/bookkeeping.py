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
    from taskservice.contracts import (
        FinishedTally,
        MetricsState,
        RetryRecorded,
        ScanWindow,
        TaskEvent,
        WorkerRegistryState,
        WorkerReport,
    )

# Continue-as-new before the history gets long; state is carried over whole.
HISTORY_LIMIT = 4000
# How often finished tasks are counted, and how far behind now: a task's visibility record is written
# shortly after it closes, so the newest seconds are left to the next scan.
SCAN_EVERY = timedelta(seconds=2)
VISIBILITY_LAG = timedelta(seconds=3)
# Reports of workers unseen this long are dropped at continue-as-new.
FORGET_WORKERS_AFTER = timedelta(hours=1)


def history_is_long() -> bool:
    return workflow.info().get_current_history_length() > HISTORY_LIMIT


@workflow.defn(name="TaskMetricsWorkflow")
class TaskMetricsWorkflow:
    """Counts finished tasks by scanning visibility for the task workflows that closed since the last scan.

    Pulling in windows keeps tasks from paying for a signal (and the workflow-task round trip that waits
    for it) each; half-open `[counted_until, now - lag)` windows count each task exactly once.
    """

    def __init__(self) -> None:
        self._state = MetricsState()
        self._dirty = False

    @workflow.run
    async def run(self, state: MetricsState | None = None) -> None:
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
                    await workflow.wait_condition(lambda: self._dirty, timeout=wait_s)
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
        tally = await workflow.execute_local_activity(
            "scan_finished_tasks",
            ScanWindow(since=self._state.counted_until, until=until.isoformat()),
            result_type=FinishedTally,
            start_to_close_timeout=timedelta(minutes=5),
        )
        self._state.add(tally)
        self._state.counted_until = until.isoformat()
        self._dirty = self._dirty or tally.total_finished > 0

    @workflow.signal
    def record(self, event: TaskEvent) -> None:
        """From task workflows started before counting moved to visibility scans (they are scanned too)."""

    @workflow.signal
    def record_retry(self, retry: RetryRecorded) -> None:
        self._state.retried += 1
        self._dirty = True

    def _publish(self) -> None:
        workflow.upsert_memo({"metrics": asdict(self._state)})


@workflow.defn(name="WorkerRegistryWorkflow")
class WorkerRegistryWorkflow:
    """Workers' own reports, published in the memo after each batch of them."""

    def __init__(self) -> None:
        self._state = WorkerRegistryState()
        self._dirty = False

    @workflow.run
    async def run(self, state: WorkerRegistryState | None = None) -> None:
        self._state = state or WorkerRegistryState()
        self._publish()
        while True:
            await workflow.wait_condition(lambda: self._dirty or history_is_long())
            if self._dirty:
                self._dirty = False
                self._publish()
            if history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._continue_as_new()

    @workflow.signal
    def report(self, report: WorkerReport) -> None:
        # Server-side time of arrival: workers' clocks may drift, the API compares against this.
        report.last_seen = workflow.now().isoformat()
        self._state.workers[report.identity] = report
        self._dirty = True

    def _publish(self) -> None:
        workflow.upsert_memo({"workers": {k: asdict(w) for k, w in self._state.workers.items()}})

    def _continue_as_new(self) -> None:
        now = workflow.now()
        self._state.workers = {
            k: w
            for k, w in self._state.workers.items()
            if now - datetime.fromisoformat(w.last_seen) < FORGET_WORKERS_AFTER
        }
        workflow.continue_as_new(self._state)
