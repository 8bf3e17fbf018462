"""Activities of the bookkeeping workflows: counting finished tasks, keeping the limiters running."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from taskservice.contracts import FinishedTally, LimiterState, ScanWindow, TaskStatus
from taskservice.queues import WORKFLOW_QUEUE, limiter_workflow_id
from workflows import search_attributes as sa
from workflows.limiter import ConcurrencyLimiterWorkflow
from workflows.task import CLOSED_AS_STATUS, MEMO_OUTCOME


async def ensure_limiter_running(client: Client, group: str) -> None:
    """Start the group's limiter, or attach to the one already running."""
    await client.start_workflow(
        ConcurrencyLimiterWorkflow.run,
        LimiterState(group=group),
        id=limiter_workflow_id(group),
        task_queue=WORKFLOW_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
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
    async def scan_finished_tasks(self, window: ScanWindow) -> FinishedTally:
        """Tally the task workflows that closed in the window, from their visibility records and memo."""
        tally = FinishedTally()
        query = (
            f'WorkflowType = "TaskWorkflow" AND CloseTime >= "{window.since}"'
            f' AND CloseTime < "{window.until}"'
        )
        async for execution in self._client.list_workflows(query, page_size=1000):
            outcome = (await execution.memo()).get(MEMO_OUTCOME) or {}
            if outcome.get("status"):
                status = TaskStatus(outcome["status"])
            elif execution.status in CLOSED_AS_STATUS:
                status = CLOSED_AS_STATUS[execution.status]
            else:
                continue
            tally.total_finished += 1
            if status == TaskStatus.COMPLETED:
                tally.completed += 1
                task_type = execution.typed_search_attributes.get(sa.TASK_TYPE)
                seconds = outcome.get("processing_time")
                if task_type and seconds is not None:
                    tally.duration_sum[task_type] = tally.duration_sum.get(task_type, 0.0) + float(seconds)
                    tally.duration_count[task_type] = tally.duration_count.get(task_type, 0) + 1
            elif status == TaskStatus.FAILED:
                tally.failed += 1
            elif status == TaskStatus.CANCELLED:
                tally.cancelled += 1
        return tally
