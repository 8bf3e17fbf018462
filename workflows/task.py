"""The one workflow every task runs as: its workflow ID is the task_id."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import CancelledError as TemporalCancelledError

with workflow.unsafe.imports_passed_through():
    from taskservice.contracts import (
        ConcurrencySlot,
        SlotRequest,
        TaskActivityInput,
        TaskEvent,
        TaskOutcome,
        TaskProgressUpdate,
        TaskStarted,
        TaskStatus,
        TaskWorkflowInput,
    )
    from taskservice.priority import TaskPriority
    from taskservice.queues import METRICS_WORKFLOW_ID, WORKFLOW_QUEUE, limiter_workflow_id
    from workflows import search_attributes as sa
    from workflows.webhook import deliver_event_webhook, deliver_webhook

# Memo keys the API reads (memo is readable without a worker; queries are not).
MEMO_STARTED_AT = "started_at"
MEMO_ATTEMPT = "attempt"
MEMO_OUTCOME = "outcome"
MEMO_WAITING_FOR_SLOT = "waiting_for_slot"
# Tasks no longer signal the metrics workflow (it scans visibility); older histories replay the signal.
PATCH_METRICS_BY_SCAN = "metrics-by-scan"
# A task workflow that closed without recording an outcome (terminated, timed out) reads by how it closed.
CLOSED_AS_STATUS = {
    WorkflowExecutionStatus.COMPLETED: TaskStatus.COMPLETED,
    WorkflowExecutionStatus.FAILED: TaskStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT: TaskStatus.FAILED,
    WorkflowExecutionStatus.CANCELED: TaskStatus.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: TaskStatus.CANCELLED,
}
# Results larger than this stay in history only; the API then reads the workflow result.
MEMO_RESULT_LIMIT = 16_000


# Not sandboxed: building a sandbox for every new task cost ~10 ms of worker CPU per task (a third of the
# worker's share). The module imports only dataclasses and reads time only through `workflow.now()`;
# tests/test_replay.py replays recorded histories to keep it deterministic.
@workflow.defn(name="TaskWorkflow", sandboxed=False)
class TaskWorkflow:
    def __init__(self) -> None:
        self._started: TaskStarted | None = None
        self._deadline_exceeded = False
        self._progress_events = 0
        self._requested_slots: list[str] = []
        self._granted_slots: set[str] = set()

    @workflow.run
    async def run(self, task: TaskWorkflowInput) -> TaskOutcome:
        self._task = task
        try:
            await self._acquire_slots(task)
            result = await self._run_activity(task)
        except ActivityError as err:
            if isinstance(err.cause, TemporalCancelledError):
                await self._finish(task, TaskStatus.CANCELLED, error=self._cancel_reason())
                raise asyncio.CancelledError() from None
            message, trace = _failure_text(err)
            await self._finish(task, TaskStatus.FAILED, error=message, traceback=trace)
            raise ApplicationError(message, type="TaskFailed", non_retryable=True) from None
        except asyncio.CancelledError:
            await self._finish(task, TaskStatus.CANCELLED, error=self._cancel_reason())
            raise
        return await self._finish(task, TaskStatus.COMPLETED, result=result)

    async def _run_activity(self, task: TaskWorkflowInput) -> dict[str, Any]:
        plan = task.plan
        activity = workflow.start_activity(
            plan.activity,
            TaskActivityInput(
                task_id=task.task_id,
                project_id=task.project_id,
                task_type=task.task_type,
                task_data=task.task_data,
                soft_timeout_s=plan.soft_timeout_s,
                progress_updates=bool(task.callback_url) and "progress" in task.webhook_events,
            ),
            task_queue=plan.queue,
            start_to_close_timeout=timedelta(seconds=plan.hard_timeout_s),
            heartbeat_timeout=timedelta(seconds=plan.heartbeat_timeout_s),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=plan.retry.initial_interval_s),
                backoff_coefficient=plan.retry.backoff_coefficient,
                maximum_attempts=plan.retry.maximum_attempts,
                non_retryable_error_types=plan.retry.non_retryable_error_types,
            ),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            result_type=dict,
        )
        remaining = self._deadline_remaining()
        if remaining is not None:
            done, _ = await workflow.wait([activity], timeout=remaining)
            if not done:
                self._deadline_exceeded = True
                activity.cancel()
        result: dict[str, Any] = await activity
        return result

    def _deadline_remaining(self) -> float | None:
        if self._task.deadline_at is None:
            return None
        remaining = (datetime.fromisoformat(self._task.deadline_at) - workflow.now()).total_seconds()
        return max(remaining, 0.001)

    async def _acquire_slots(self, task: TaskWorkflowInput) -> None:
        """Hold every concurrency slot of the task's groups before its activity is scheduled."""
        if not task.concurrency:
            return
        for slot in task.concurrency:
            await self._acquire_slot(task, slot)
        workflow.upsert_memo({MEMO_WAITING_FOR_SLOT: None})

    async def _acquire_slot(self, task: TaskWorkflowInput, slot: ConcurrencySlot) -> None:
        self._requested_slots.append(slot.group)
        workflow.upsert_memo({MEMO_WAITING_FOR_SLOT: slot.group})
        # Asked from a task of its own: a cancel that lands while a signal is in flight is absorbed by the
        # SDK once the signal is sent, and must reach the wait below instead.
        asking = asyncio.create_task(self._request_slot(task, slot))
        try:
            await workflow.wait_condition(
                lambda: (
                    slot.group in self._granted_slots or (asking.done() and asking.exception() is not None)
                ),
                timeout=self._deadline_remaining(),
            )
        except TimeoutError:
            self._deadline_exceeded = True
            raise asyncio.CancelledError() from None
        if slot.group not in self._granted_slots:
            asking.result()  # the limiter could not be asked: fail this workflow task (it is retried)

    async def _request_slot(self, task: TaskWorkflowInput, slot: ConcurrencySlot) -> None:
        request = SlotRequest(
            holder_id=task.task_id,
            limit=slot.limit,
            priority_key=TaskPriority.parse(task.priority).temporal_key,
            lease_s=_longest_run_s(task),
        )
        limiter = workflow.get_external_workflow_handle(limiter_workflow_id(slot.group))
        try:
            await limiter.signal("acquire", request)
        except (ApplicationError, FailureError):
            # The limiter is gone (an operator terminated it): start it again, then ask.
            await workflow.execute_activity(
                "ensure_limiter",
                slot.group,
                task_queue=WORKFLOW_QUEUE,
                start_to_close_timeout=timedelta(seconds=30),
            )
            await limiter.signal("acquire", request)

    async def _release_slots(self) -> None:
        for group in reversed(self._requested_slots):
            try:
                await workflow.get_external_workflow_handle(limiter_workflow_id(group)).signal(
                    "release", self._task.task_id
                )
            except (ApplicationError, FailureError):
                workflow.logger.warning("Concurrency limiter not reachable", extra={"group": group})
        self._requested_slots.clear()

    @workflow.signal(name="slot_granted")
    def slot_granted(self, group: str) -> None:
        self._granted_slots.add(group)

    def _cancel_reason(self) -> str:
        if self._deadline_exceeded:
            return f"DeadlineExceeded: the task's deadline ({self._task.deadline_at}) passed"
        return "Task was cancelled"

    @workflow.signal(name="task_started")
    async def task_started(self, started: TaskStarted) -> None:
        first = self._started is None
        self._started = self._started or started
        memo: dict[str, Any] = {MEMO_ATTEMPT: started.attempt}
        if first:
            memo[MEMO_STARTED_AT] = started.started_at
            workflow.upsert_search_attributes([sa.TASK_STATUS.value_set(TaskStatus.PROCESSING.value)])
        workflow.upsert_memo(memo)
        task = self._task
        if first and task.callback_url and "start" in task.webhook_events:
            await deliver_event_webhook(task, "started", {"started_at": started.started_at, "progress": 0.0})

    @workflow.signal(name="task_progress")
    async def task_progress(self, update: TaskProgressUpdate) -> None:
        task = self._task
        if task.callback_url and "progress" in task.webhook_events:
            self._progress_events += 1
            await deliver_event_webhook(
                task,
                f"progress_{self._progress_events}",
                {"progress": update.progress, "current_step": update.step},
            )

    async def _finish(
        self,
        task: TaskWorkflowInput,
        status: TaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        traceback: str | None = None,
    ) -> TaskOutcome:
        """Record the terminal state first (the metrics workflow counts it from there), free the slots,
        then send the webhook."""
        now = workflow.now()
        started_at = self._started.started_at if self._started else None
        processing_time = None
        if started_at is not None:
            processing_time = round((now - datetime.fromisoformat(started_at)).total_seconds(), 3)
        outcome = TaskOutcome(
            task_id=task.task_id,
            status=status.value,
            result=result,
            error=error,
            started_at=started_at,
            completed_at=now.isoformat().replace("+00:00", "Z"),
            processing_time=processing_time,
        )
        memo_outcome = outcome
        if (
            result is not None
            and len(workflow.payload_converter().to_payload(result).data) > MEMO_RESULT_LIMIT
        ):
            memo_outcome = TaskOutcome(**{**outcome.__dict__, "result": None})
            workflow.upsert_memo({"result_in_history": True})
        workflow.upsert_memo({MEMO_OUTCOME: memo_outcome})
        workflow.upsert_search_attributes([sa.TASK_STATUS.value_set(status.value)])
        await self._release_slots()
        if not workflow.patched(PATCH_METRICS_BY_SCAN):
            # Histories recorded before the metrics workflow counted by scanning visibility.
            await self._count(task, outcome)
        # Start and progress webhooks (if any) go out before the final one.
        await workflow.wait_condition(workflow.all_handlers_finished)
        if task.callback_url and "completed" in task.webhook_events:
            await deliver_webhook(task, outcome, traceback)
        return outcome

    async def _count(self, task: TaskWorkflowInput, outcome: TaskOutcome) -> None:
        metrics = workflow.get_external_workflow_handle(METRICS_WORKFLOW_ID)
        try:
            await metrics.signal(
                "record",
                TaskEvent(
                    task_id=task.task_id,
                    task_type=task.task_type,
                    status=outcome.status,
                    processing_time=outcome.processing_time,
                ),
            )
        except (ApplicationError, FailureError):
            # Metrics are best effort: a missing metrics workflow must never fail a task.
            workflow.logger.warning("Metrics workflow not reachable", extra={"task_id": task.task_id})


def _longest_run_s(task: TaskWorkflowInput) -> float:
    """Every attempt at its hard timeout plus the backoff between them: a slot is never held longer."""
    retry = task.plan.retry
    attempts = max(retry.maximum_attempts, 1)
    backoff = sum(retry.initial_interval_s * retry.backoff_coefficient**i for i in range(attempts - 1))
    return attempts * task.plan.hard_timeout_s + backoff + 300.0


def _failure_text(err: ActivityError) -> tuple[str, str | None]:
    """The innermost failure's message (what went wrong) and its stack trace, if the worker sent one."""
    cause: BaseException = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    message = str(cause.message if isinstance(cause, FailureError) else cause) or type(cause).__name__
    if isinstance(cause, ApplicationError) and cause.type:
        message = f"{cause.type}: {message}"
    trace = cause.failure.stack_trace if isinstance(cause, FailureError) and cause.failure else None
    return message, f"Traceback (most recent call last):\n{trace}" if trace else None
