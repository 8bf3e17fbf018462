"""Long-lived bookkeeping workflows: cumulative task metrics and the worker registry.

Temporal is the only store of the service: these keep what visibility cannot (cumulative counters that
outlive retention, average durations, workers' own reports) and publish it in their memo, which the API
reads with `describe()` — no worker needed to answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from taskservice.contracts import (
        MetricsState,
        RetryRecorded,
        TaskEvent,
        TaskStatus,
        WorkerRegistryState,
        WorkerReport,
    )

# Continue-as-new before the history gets long; state is carried over whole.
HISTORY_LIMIT = 4000
# Reports of workers unseen this long are dropped at continue-as-new.
FORGET_WORKERS_AFTER = timedelta(hours=1)


class _MemoPublisher(ABC):
    """Publish state to the memo after each batch of signals; continue-as-new when history is long."""

    _dirty = False

    async def _serve(self) -> None:
        self._publish()
        while True:
            await workflow.wait_condition(lambda: self._dirty or _history_is_long())
            if self._dirty:
                self._dirty = False
                self._publish()
            if _history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._continue_as_new()

    @abstractmethod
    def _publish(self) -> None: ...

    @abstractmethod
    def _continue_as_new(self) -> None: ...


def _history_is_long() -> bool:
    return workflow.info().get_current_history_length() > HISTORY_LIMIT


@workflow.defn(name="TaskMetricsWorkflow")
class TaskMetricsWorkflow(_MemoPublisher):
    def __init__(self) -> None:
        self._state = MetricsState()

    @workflow.run
    async def run(self, state: MetricsState | None = None) -> None:
        self._state = state or MetricsState()
        await self._serve()

    @workflow.signal
    def record(self, event: TaskEvent) -> None:
        s = self._state
        s.total_finished += 1
        if event.status == TaskStatus.COMPLETED:
            s.completed += 1
            if event.processing_time is not None:
                s.duration_sum[event.task_type] = (
                    s.duration_sum.get(event.task_type, 0.0) + event.processing_time
                )
                s.duration_count[event.task_type] = s.duration_count.get(event.task_type, 0) + 1
        elif event.status == TaskStatus.FAILED:
            s.failed += 1
        elif event.status == TaskStatus.CANCELLED:
            s.cancelled += 1
        self._dirty = True

    @workflow.signal
    def record_retry(self, retry: RetryRecorded) -> None:
        self._state.retried += 1
        self._dirty = True

    def _publish(self) -> None:
        workflow.upsert_memo({"metrics": asdict(self._state)})

    def _continue_as_new(self) -> None:
        workflow.continue_as_new(self._state)


@workflow.defn(name="WorkerRegistryWorkflow")
class WorkerRegistryWorkflow(_MemoPublisher):
    def __init__(self) -> None:
        self._state = WorkerRegistryState()

    @workflow.run
    async def run(self, state: WorkerRegistryState | None = None) -> None:
        self._state = state or WorkerRegistryState()
        await self._serve()

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
