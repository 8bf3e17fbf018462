"""Task state in Temporal, the only store: starts, cancels, deletes; task views; listings; counts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution as WorkflowExecutionRef
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.domain.errors import TaskNotFound
from api.store.changes import TaskWatches, wait_closed
from api.store.listing import TaskListing
from api.store.projection import (
    CANCELLING_STEP,
    TaskView,
    apply_activity,
    base_view,
    record_view,
    running_time,
    task_activity,
)
from api.store.queues import QueueStates
from taskservice import search_attributes as sa
from taskservice.contracts import MetricsState, RetryRecorded, TaskStatus, TaskWorkflowInput, WorkerReport
from taskservice.durations import DurationWindows
from taskservice.payloads import decode
from taskservice.queues import METRICS_WORKFLOW_ID, WORKER_REGISTRY_WORKFLOW_ID, WORKFLOW_QUEUE
from taskservice.record import DURATIONS_MEMO, METRICS_MEMO, WORKERS_MEMO, MemoKey, TaskMemo, TaskOutcome
from taskservice.scoped import bound
from taskservice.visibility import TaskQuery
from workflows import console
from workflows.bookkeeping import TaskMetricsWorkflow
from workflows.task import TaskWorkflow, task_priority

# How long a cancel waits for the workflow to close before answering.
CANCEL_WAIT_S = 8.0
# A running task whose attempt has ended records its outcome in one workflow task (milliseconds when its
# queue is served); a read that lands in that gap looks again after these pauses to report the outcome.
OUTCOME_GAP_PAUSES_S = (0.02, 0.05, 0.1, 0.2, 0.4)
# With no workflow worker at all a cancel request cannot be processed; a never-started task is then
# terminated after this long so that it is still removed without running.
QUEUED_CANCEL_TERMINATE_AFTER_S = 3.0


@dataclass
class Meter:
    """Visibility queries (counts and listings) run while it is open: what a read costs."""

    queries: int = 0


_meter: ContextVar[Meter | None] = ContextVar("visibility_meter", default=None)


def metered() -> AbstractContextManager[Meter]:
    """Count the visibility queries of the work done inside (tasks it gathers included)."""
    return bound(_meter, Meter())


def _metered_query() -> None:
    meter = _meter.get()
    if meter is not None:
        meter.queries += 1


def is_task_id(value: str) -> bool:
    """Task ids are UUIDs: anything else cannot name a task (and costs no Temporal call)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class TaskStore:
    """One per Temporal connection (it keeps the task-queue cache across requests)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.queues = QueueStates(client)
        self.watches = TaskWatches(self)
        self._listing = TaskListing(self)

    # --- workflow commands -------------------------------------------------------------------------

    async def start(self, task: TaskWorkflowInput) -> tuple[TaskView, bool]:
        """Start the task's workflow; if its ID exists (an idempotent replay) return that task instead."""
        record = task.task
        try:
            await self.client.start_workflow(
                TaskWorkflow.run,
                task,
                id=task.task_id,
                task_queue=WORKFLOW_QUEUE,
                memo={MemoKey.TASK: record},
                search_attributes=sa.task_attributes(record, TaskStatus.QUEUED.value),
                priority=task_priority(task),
                static_summary=console.task_summary(task),
                static_details=console.task_details(task),
                # One task per ID for the whole retention window, even after it closed.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            )
        except WorkflowAlreadyStartedError:
            return await self.get(task.task_id), False
        return record_view(task.task_id, record), True

    async def cancel(self, task_id: str) -> TaskView:
        """Ask the task's workflow to cancel and wait (a few seconds) for it to close; the task after."""
        handle = self.client.get_workflow_handle(task_id)
        await handle.cancel()
        loop = asyncio.get_running_loop()
        asked_at = loop.time()
        while loop.time() - asked_at < CANCEL_WAIT_S:
            desc = await handle.describe()
            if desc.status != WorkflowExecutionStatus.RUNNING:
                break
            view = await self.project(desc)
            if view.status.is_terminal:
                break
            if (
                view.status == TaskStatus.QUEUED
                and loop.time() - asked_at > QUEUED_CANCEL_TERMINATE_AFTER_S
                and not await self.queues.has_workflow_worker()
            ):
                await handle.terminate(reason="cancelled while queued (no workflow worker was running)")
                continue
            await asyncio.sleep(0.1)
        return await self.get(task_id)

    async def delete(self, task_id: str) -> None:
        """Remove a finished task from Temporal (history and visibility)."""
        await self.client.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=self.client.namespace, workflow_execution=WorkflowExecutionRef(workflow_id=task_id)
            )
        )

    async def record_retry(self, retry: RetryRecorded) -> None:
        try:
            metrics = self.client.get_workflow_handle_for(TaskMetricsWorkflow.run, METRICS_WORKFLOW_ID)
            await metrics.signal(TaskMetricsWorkflow.record_retry, retry)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    async def wait_closed(self, task_id: str, timeout: float) -> bool:
        """Whether the task's workflow closes within `timeout` seconds (one long-poll, no describes)."""
        return await wait_closed(self.client, task_id, timeout)

    # --- task views --------------------------------------------------------------------------------

    async def get(self, task_id: str) -> TaskView:
        return (await self.read(task_id))[0]

    async def read(self, task_id: str) -> tuple[TaskView, int]:
        """The task, and the length of the history it was read at (what `TaskWatches` compares)."""
        if not is_task_id(task_id):
            raise TaskNotFound(task_id)
        handle = self.client.get_workflow_handle(task_id)
        for pause in (*OUTCOME_GAP_PAUSES_S, None):
            try:
                desc = await handle.describe()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    raise TaskNotFound(task_id) from None
                raise
            view, in_gap = await self._projected(desc)
            if not in_gap or pause is None:
                break
            await asyncio.sleep(pause)
        if view.status == TaskStatus.COMPLETED and view.result is None and view.result_in_history:
            outcome = await self.client.get_workflow_handle(task_id, result_type=TaskOutcome).result()
            view.result = outcome.result
        return view, int(desc.raw_description.workflow_execution_info.history_length)

    async def _render_activities(self, render_id: str) -> list[PendingActivityInfo]:
        """The pending activities of the render a task waits on (none once it has ended)."""
        try:
            desc = await self.client.get_workflow_handle(render_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return []
            raise
        return list(desc.raw_description.pending_activities)

    async def project(self, desc: WorkflowExecutionDescription) -> TaskView:
        """The whole view of one task: memo and search attributes, then its pending activity or queue."""
        return (await self._projected(desc))[0]

    async def _projected(self, desc: WorkflowExecutionDescription) -> tuple[TaskView, bool]:
        """The view, and whether it was read between the end of an attempt and the recorded outcome."""
        memo = TaskMemo.parse(await desc.memo())
        if memo is None:
            raise TaskNotFound(desc.id)
        view = base_view(desc, memo)
        if view.status.is_terminal:
            return view, False
        pending = list(desc.raw_description.pending_activities)
        if view.render_id is not None:
            pending = await self._render_activities(view.render_id)
        activity = task_activity(view, pending)
        in_gap = activity is None and view.status == TaskStatus.PROCESSING
        if activity is not None:
            apply_activity(view, activity, self.client.data_converter.payload_converter)
        elif in_gap and desc.raw_description.workflow_extended_info.cancel_requested:
            # The attempt acknowledged a cancel; the workflow is recording it (it did not finish the work).
            view.current_step = CANCELLING_STEP
        elif in_gap:
            view.progress, view.current_step = 1.0, "finishing"
        if view.status == TaskStatus.QUEUED and view.current_step != CANCELLING_STEP:
            view.current_step = (
                f"waiting_for_slot: the '{view.waiting_for_slot}' concurrency limit is reached"
                if view.waiting_for_slot
                else await self.queues.queued_step(view.queue)
            )
        running_time(view)
        return view, in_gap

    async def page(self, query: TaskQuery, *, page: int, limit: int) -> tuple[list[TaskView], int]:
        """Page `page` of the matching tasks, newest first, and how many match in all."""
        executions, total = await self._listing.page(query, page=page, limit=limit)
        return await self._views(executions), total

    async def executions_page(
        self, query: TaskQuery, *, page: int, limit: int
    ) -> tuple[list[WorkflowExecution], int]:
        """Page `page` of the matching executions (of any workflow type the query names), newest first."""
        return await self._listing.page(query, page=page, limit=limit)

    async def newest(self, query: TaskQuery, count: int) -> list[TaskView]:
        """The `count` matching tasks created last, newest first (from visibility: no pending detail)."""
        return await self._views(await self._listing.newest(query, count))

    async def some(self, query: TaskQuery, limit: int) -> list[TaskView]:
        """Up to `limit` matching tasks in visibility's own order (one listing; no order asked for)."""
        executions: list[WorkflowExecution] = []
        async for execution in self.executions(query, min(limit, 1000)):
            executions.append(execution)
            if len(executions) >= limit:
                break
        return await self._views(executions)

    async def _views(self, executions: list[WorkflowExecution]) -> list[TaskView]:
        views = []
        for execution in executions:
            memo = TaskMemo.parse(await execution.memo())
            if memo is not None:
                views.append(base_view(execution, memo))
        return views

    async def task_ids(self, query: TaskQuery, limit: int = 10_000) -> list[str]:
        ids = []
        async for execution in self.executions(query, 1000):
            ids.append(execution.id)
            if len(ids) >= limit:
                break
        return ids

    # --- visibility (also what TaskListing counts and reads through) -------------------------------

    async def count(self, query: TaskQuery) -> int:
        _metered_query()
        return (await self.client.count_workflows(str(query))).count

    def executions(self, query: TaskQuery, page_size: int) -> AsyncIterator[WorkflowExecution]:
        _metered_query()
        return self.client.list_workflows(str(query), page_size=page_size)

    # --- bookkeeping workflows' memos --------------------------------------------------------------

    async def metrics_state(self) -> MetricsState:
        memo = await self._bookkeeping_memo(METRICS_WORKFLOW_ID)
        state = decode(MetricsState, memo.get(METRICS_MEMO) or {})
        state.durations = decode(DurationWindows, memo.get(DURATIONS_MEMO) or {})
        return state

    async def worker_reports(self) -> list[WorkerReport]:
        memo = await self._bookkeeping_memo(WORKER_REGISTRY_WORKFLOW_ID)
        return list(decode(dict[str, WorkerReport], memo.get(WORKERS_MEMO) or {}).values())

    async def _bookkeeping_memo(self, workflow_id: str) -> Mapping[str, Any]:
        try:
            desc = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return {}
            raise
        return await desc.memo()
