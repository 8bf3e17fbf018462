"""Activities of the bookkeeping workflows: counting finished tasks, keeping the limiters running."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from taskservice.contracts import FinishedTally, LimiterState, ScanTally, ScanWindow, TaskStatus
from taskservice.durations import DurationSample, warm_run_seconds
from taskservice.queues import WORKFLOW_QUEUE, limiter_workflow_id
from taskservice.record import TaskMemo, TaskOutcome
from taskservice.visibility import CLOSED_AS_STATUS, TaskQuery
from taskservice.work_units import work_units
from workflows import console
from workflows.limiter import ConcurrencyLimiterWorkflow


async def ensure_limiter_running(client: Client, group: str) -> None:
    """Start the group's limiter, or attach to the one already running."""
    await client.start_workflow(
        ConcurrencyLimiterWorkflow.run,
        LimiterState(group=group),
        id=limiter_workflow_id(group),
        task_queue=WORKFLOW_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=console.limiter_summary(group),
        static_details=console.limiter_details(group),
    )


class BookkeepingActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [self.ensure_limiter, self.scan_finished_tasks]

    @activity.defn(name="ensure_limiter")
    async def ensure_limiter(self, group: str) -> None:
        await ensure_limiter_running(self._client, group)

    @activity.defn(name="scan_finished_tasks")
    async def scan_finished_tasks(self, window: ScanWindow) -> ScanTally:
        """Tally the task workflows that closed in the window, from their visibility records and memo."""
        tally = ScanTally()
        query = TaskQuery(
            closed_since=datetime.fromisoformat(window.since),
            closed_before=datetime.fromisoformat(window.until),
        )
        async for execution in self._client.list_workflows(str(query), page_size=1000):
            memo = TaskMemo.parse(await execution.memo())
            if memo is None:
                continue
            outcome = memo.outcome
            if outcome is not None:
                status = outcome.status
            elif execution.status in CLOSED_AS_STATUS:
                status = CLOSED_AS_STATUS[execution.status]
            else:
                continue
            seconds = outcome.processing_time if outcome is not None else None
            tenant_tally = tally.tenants.setdefault(memo.task.tenant, FinishedTally())
            for counted in (tally, tenant_tally):
                counted.count(status, memo.task.task_type, seconds)
            cache = (outcome.result or {}).get("cache") if outcome is not None else None
            if status == TaskStatus.COMPLETED and isinstance(cache, dict):
                for counted in (tally, tenant_tally):
                    counted.count_cache(memo.task.task_type, cache)
            if outcome is not None and status == TaskStatus.COMPLETED and seconds is not None:
                tally.samples.append(_sample(memo, outcome, seconds))
        return tally


def _sample(memo: TaskMemo, outcome: TaskOutcome, seconds: float) -> DurationSample:
    """A completed task's measured run on a warm worker; its build is the model its result names."""
    metadata = (outcome.result or {}).get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    task = memo.task
    return DurationSample(
        task.task_type,
        str(metadata.get("model") or ""),
        work_units(task.task_type, task.task_data),
        warm_run_seconds(seconds, metadata),
    )
