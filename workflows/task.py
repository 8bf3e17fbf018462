"""The one workflow every task runs as: its workflow ID is the task_id."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import CancelledError as TemporalCancelledError

with workflow.unsafe.imports_passed_through():
    from activities.bookkeeping import BookkeepingActivities
    from taskservice import search_attributes as sa
    from taskservice.contracts import (
        SLOT_DEFERRED_SIGNAL,
        SLOT_GRANTED_SIGNAL,
        ConcurrencySlot,
        SlotDeferred,
        SlotRequest,
        TaskActivityInput,
        TaskAttemptResult,
        TaskPreview,
        TaskProgressUpdate,
        TaskStarted,
        TaskStatus,
        TaskWorkflowInput,
    )
    from taskservice.priority import TaskPriority
    from taskservice.queues import WORKFLOW_QUEUE, limiter_workflow_id
    from taskservice.record import MEMO_RESULT_LIMIT, MemoKey, TaskOutcome, TaskRecord, error_text
    from taskservice.render_cache import CacheHit, CacheLookup, cache_field, render_workflow_id
    from taskservice.render_contracts import RenderOutcome
    from taskservice.timefmt import iso_z
    from workflows import console, render, webhook
    from workflows.failures import TaskFailure, activity_failure
    from workflows.limiter import ConcurrencyLimiterWorkflow


# Not sandboxed: building a sandbox for every new task cost ~10 ms of worker CPU per task (a third of the
# worker's share). The module imports only dataclasses and reads time only through `workflow.now()`;
# tests/test_replay.py replays recorded histories to keep it deterministic.
@workflow.defn(name="TaskWorkflow", sandboxed=False)
class TaskWorkflow:
    _forwards_previews = False  # a coalesced render hands every preview on to the tasks waiting on it

    def __init__(self) -> None:
        self._started: TaskStarted | None = None
        # The latest attempt announced and its latest progress: what the UI's current details say.
        self._attempt: TaskStarted | None = None
        self._progress: TaskProgressUpdate | None = None
        # The attempt that produced the result, as its worker returned it (recorded if not announced).
        self._ran: TaskAttemptResult | None = None
        self._outcome_recorded = False
        self._deadline_exceeded = False
        self._progress_events = 0
        self._preview_events = 0
        self._requested_slots: list[str] = []
        self._granted_slots: set[str] = set()
        self._deferred_slots: set[str] = set()
        self._render_outcome: RenderOutcome | None = None
        # Set by a coalesced render: the task its output files are named after.
        self._output_id: str | None = None

    @workflow.run
    async def run(self, task: TaskWorkflowInput) -> TaskOutcome:
        self._task = task
        workflow.set_current_details(console.queued(task))
        try:
            lookup = await render.look_up(task)
            if lookup is not None and (cached := render.hit_result(lookup)) is not None:
                # Answered from the render cache: no slot, no GPU-queue activity.
                return await self._finish(TaskStatus.COMPLETED, result=cached)
            if lookup is not None and lookup.key is not None and render.coalesces(task, lookup):
                result = await self._coalesced(task, lookup.key)
            else:
                result = await self._render(task, lookup)
        except _RenderFailed as err:
            await self._finish(TaskStatus.FAILED, failure=err.failure)
            message = error_text(err.failure.message, err.failure.type) or ""
            raise ApplicationError(message, type="TaskFailed", non_retryable=True) from None
        except ActivityError as err:
            if isinstance(err.cause, TemporalCancelledError):
                await self._finish(TaskStatus.CANCELLED, failure=self._cancel_reason())
                raise asyncio.CancelledError() from None
            failure = activity_failure(err)
            await self._finish(TaskStatus.FAILED, failure=failure)
            raise ApplicationError(
                error_text(failure.message, failure.type) or "", type="TaskFailed", non_retryable=True
            ) from None
        except asyncio.CancelledError:
            await self._finish(TaskStatus.CANCELLED, failure=self._cancel_reason())
            raise
        return await self._finish(TaskStatus.COMPLETED, result=result)

    async def _render(self, task: TaskWorkflowInput, lookup: CacheLookup | None) -> dict[str, Any]:
        """Run the task's activity itself (holding its slots); keep the result when the cache asks."""
        await self._acquire_slots(task)
        self._ran = await self._run_activity(task)
        result = self._ran.result
        if lookup is not None:
            seconds = self._seconds_since(self._ran.started_at)
            result = await render.remember(task, lookup, result, seconds)
        return result

    async def _coalesced(self, task: TaskWorkflowInput, key: str) -> dict[str, Any]:
        """Wait on the one render of the key (started by the first task to ask) and take its result."""
        workflow.upsert_memo({MemoKey.RENDER: render_workflow_id(task.task.tenant, key)})
        try:
            await render.join(task, key)
            await workflow.wait_condition(
                lambda: self._render_outcome is not None, timeout=self._deadline_remaining()
            )
        except TimeoutError:
            self._deadline_exceeded = True
            await render.detach(task, key)
            raise asyncio.CancelledError() from None
        except (asyncio.CancelledError, ActivityError):
            await render.detach(task, key)
            raise
        outcome = self._render_outcome
        assert outcome is not None
        if self._started is None and outcome.started_at is not None:
            # The render's attempt was not announced (it was short): record it as this task's.
            self._ran = TaskAttemptResult(outcome.result or {}, outcome.started_at, outcome.attempt)
        if outcome.result is None:
            raise _RenderFailed(TaskFailure(outcome.error or "the render failed", outcome.error_type))
        coalesced = outcome.source_task_id != task.task_id
        hit = CacheHit(outcome.result, outcome.source_task_id, outcome.saved_seconds) if coalesced else None
        return {**outcome.result, "cache": cache_field(key, hit, coalesced=coalesced)}

    @workflow.signal
    def render_finished(self, outcome: RenderOutcome) -> None:
        """The render this task waited on ended (sent by `RenderWorkflow`)."""
        self._render_outcome = outcome

    def _seconds_since(self, started_at: str) -> float:
        return round((workflow.now() - datetime.fromisoformat(started_at)).total_seconds(), 3)

    async def _run_activity(self, task: TaskWorkflowInput) -> TaskAttemptResult:
        plan, record = task.plan, task.task
        activity = workflow.start_activity(
            plan.activity,
            TaskActivityInput(
                task_id=task.task_id,
                project_id=record.project_id,
                task_type=record.task_type,
                task_data=record.task_data,
                soft_timeout_s=plan.soft_timeout_s,
                progress_updates=_sends(record, "progress"),
                preview_updates=self._forwards_previews or _sends(record, "preview"),
                announce_at_once=_sends(record, "start") or _sends(record, "progress"),
                output_id=self._output_id,
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
            # Priority orders each queue; within a priority, tenants get their fair share of it.
            priority=task_priority(task),
            result_type=TaskAttemptResult,
            summary=console.activity_summary(task),
        )
        remaining = self._deadline_remaining()
        if remaining is not None:
            done, _ = await workflow.wait([activity], timeout=remaining)
            if not done:
                self._deadline_exceeded = True
                activity.cancel()
        ran: TaskAttemptResult = await activity
        return ran

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
        workflow.upsert_memo({MemoKey.WAITING_FOR_SLOT: None})
        workflow.set_current_details(console.queued(task))

    async def _acquire_slot(self, task: TaskWorkflowInput, slot: ConcurrencySlot) -> None:
        self._requested_slots.append(slot.group)
        workflow.upsert_memo({MemoKey.WAITING_FOR_SLOT: slot.group})
        workflow.set_current_details(console.waiting_for_slot(task, slot))
        deferrals = 0
        while not await self._ask_for_slot(task, slot):
            # Not kept in line (its tenant has enough waiting there): ask again later.
            deferrals += 1
            await self._wait_while_queued(lambda: False, _reask_delay_s(deferrals))

    async def _ask_for_slot(self, task: TaskWorkflowInput, slot: ConcurrencySlot) -> bool:
        """Ask the group's limiter once: True once it grants the slot, False if it says to ask later."""
        self._deferred_slots.discard(slot.group)
        # Asked from a task of its own: a cancel that lands while a signal is in flight is absorbed by the
        # SDK once the signal is sent, and must reach the wait below instead.
        asking = asyncio.create_task(self._request_slot(task, slot))
        await self._wait_while_queued(
            lambda: (
                slot.group in self._granted_slots
                or slot.group in self._deferred_slots
                or (asking.done() and asking.exception() is not None)
            )
        )
        if slot.group in self._granted_slots:
            return True
        if slot.group not in self._deferred_slots:
            asking.result()  # the limiter could not be asked: fail this workflow task (it is retried)
        return False

    async def _wait_while_queued(self, ready: Callable[[], bool], at_most: float | None = None) -> None:
        """Wait until `ready` (or `at_most` seconds); the deadline passing first cancels the task."""
        remaining = self._deadline_remaining()
        if at_most is not None and (remaining is None or at_most < remaining):
            try:
                await workflow.wait_condition(ready, timeout=at_most, timeout_summary="ask the limiter again")
            except TimeoutError:
                pass
            return
        try:
            await workflow.wait_condition(ready, timeout=remaining, timeout_summary="the task's deadline")
        except TimeoutError:
            self._deadline_exceeded = True
            raise asyncio.CancelledError() from None

    async def _request_slot(self, task: TaskWorkflowInput, slot: ConcurrencySlot) -> None:
        request = SlotRequest(
            holder_id=task.task_id,
            limit=slot.limit,
            priority_key=TaskPriority.parse(task.task.priority).temporal_key,
            lease_s=_longest_run_s(task),
            tenant=task.task.tenant,
            weight=task.fairness_weight,
        )
        limiter = workflow.get_external_workflow_handle(limiter_workflow_id(slot.group))
        try:
            await limiter.signal(ConcurrencyLimiterWorkflow.acquire, request)
        except (ApplicationError, FailureError):
            # The limiter is gone (an operator terminated it): start it again, then ask.
            await workflow.execute_activity_method(
                BookkeepingActivities.ensure_limiter,
                slot.group,
                task_queue=WORKFLOW_QUEUE,
                start_to_close_timeout=timedelta(seconds=30),
                summary=f"start the {slot.group} limiter again",
            )
            await limiter.signal(ConcurrencyLimiterWorkflow.acquire, request)

    async def _release_slots(self) -> None:
        for group in reversed(self._requested_slots):
            try:
                await workflow.get_external_workflow_handle(limiter_workflow_id(group)).signal(
                    ConcurrencyLimiterWorkflow.release, self._task.task_id
                )
            except (ApplicationError, FailureError):
                workflow.logger.warning("Concurrency limiter not reachable", extra={"group": group})
        self._requested_slots.clear()

    @workflow.signal(name=SLOT_GRANTED_SIGNAL)
    def slot_granted(self, group: str) -> None:
        self._granted_slots.add(group)

    @workflow.signal(name=SLOT_DEFERRED_SIGNAL)
    def slot_deferred(self, deferred: SlotDeferred) -> None:
        self._deferred_slots.add(deferred.group)

    def _cancel_reason(self) -> TaskFailure:
        if self._deadline_exceeded:
            return TaskFailure(f"the task's deadline ({self._task.deadline_at}) passed", "DeadlineExceeded")
        return TaskFailure("Task was cancelled")

    @workflow.signal(name="task_started")
    async def task_started(self, started: TaskStarted) -> None:
        if self._outcome_recorded:  # a late announcement of an attempt that has already ended
            return
        first = self._started is None
        self._started = self._started or started
        self._attempt, self._progress = started, None
        workflow.set_current_details(console.processing(self._task, started.attempt, started.worker, None))
        memo: dict[str, Any] = {MemoKey.ATTEMPT: started.attempt}
        if first:
            memo[MemoKey.STARTED_AT] = started.started_at
            workflow.upsert_search_attributes([sa.TASK_STATUS.value_set(TaskStatus.PROCESSING.value)])
        workflow.upsert_memo(memo)
        if first and _sends(self._task.task, "start"):
            await webhook.deliver_started_webhook(self._task, started.started_at)

    @workflow.signal(name="task_progress")
    async def task_progress(self, update: TaskProgressUpdate) -> None:
        if not self._outcome_recorded and self._attempt is not None:
            self._progress = update
            ran = self._attempt
            workflow.set_current_details(console.processing(self._task, ran.attempt, ran.worker, update))
        if _sends(self._task.task, "progress"):
            self._progress_events += 1
            await webhook.deliver_progress_webhook(self._task, self._progress_events, update)

    @workflow.signal(name="task_preview")
    async def task_preview(self, preview: TaskPreview) -> None:
        if not self._outcome_recorded and _sends(self._task.task, "preview"):  # a new live preview
            self._preview_events += 1
            await webhook.deliver_preview_webhook(self._task, self._preview_events, preview)

    async def _finish(
        self, status: TaskStatus, *, result: dict[str, Any] | None = None, failure: TaskFailure | None = None
    ) -> TaskOutcome:
        """Record the terminal state first (the metrics workflow counts it from there), free the slots,
        then send the webhook."""
        task = self._task
        now = workflow.now()
        started = self._started or self._ran
        started_at = started.started_at if started else None
        processing_time = None
        if started_at is not None:
            processing_time = round((now - datetime.fromisoformat(started_at)).total_seconds(), 3)
        outcome = TaskOutcome(
            task_id=task.task_id,
            status=status,
            result=result,
            error=failure.message if failure else None,
            error_type=failure.type if failure else None,
            started_at=started_at,
            completed_at=iso_z(now),
            processing_time=processing_time,
        )
        memo: dict[str, Any] = {MemoKey.OUTCOME: outcome}
        if (
            result is not None
            and len(workflow.payload_converter().to_payload(result).data) > MEMO_RESULT_LIMIT
        ):
            memo = {MemoKey.OUTCOME: replace(outcome, result=None), MemoKey.RESULT_IN_HISTORY: True}
        if self._started is None and self._ran is not None:  # an attempt that ended before it was announced
            memo |= {MemoKey.ATTEMPT: self._ran.attempt, MemoKey.STARTED_AT: self._ran.started_at}
        self._outcome_recorded = True
        last = self._ran or self._attempt
        workflow.set_current_details(console.finished(task, outcome, last.attempt if last else None))
        workflow.upsert_memo(memo)
        workflow.upsert_search_attributes([sa.TASK_STATUS.value_set(status.value)])
        await self._release_slots()
        # Start and progress webhooks (if any) go out before the final one.
        await workflow.wait_condition(workflow.all_handlers_finished)
        if _sends(task.task, "completed"):
            await webhook.deliver_webhook(task, outcome, failure.traceback if failure else None)
        return outcome


class _RenderFailed(Exception):
    """The render a task waited on failed: the task fails with the render's error."""

    def __init__(self, failure: TaskFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def task_priority(task: TaskWorkflowInput) -> Priority:
    """The task's Temporal priority: its priority key, and its tenant as the fairness key."""
    return Priority(
        priority_key=TaskPriority.parse(task.task.priority).temporal_key,
        fairness_key=task.task.tenant,
        fairness_weight=task.fairness_weight,
    )


def _sends(record: TaskRecord, event: str) -> bool:
    """Whether the task asked for this webhook event (`start`, `progress`, `preview`, `completed`)."""
    return bool(record.callback_url) and event in record.webhook_events


def _longest_run_s(task: TaskWorkflowInput) -> float:
    """Every attempt at its hard timeout plus the backoff between them: a slot is never held longer."""
    retry = task.plan.retry
    attempts = max(retry.maximum_attempts, 1)
    backoff = sum(retry.initial_interval_s * retry.backoff_coefficient**i for i in range(attempts - 1))
    return attempts * task.plan.hard_timeout_s + backoff + 300.0


def _reask_delay_s(deferrals: int) -> float:
    """How long a task the limiter did not keep in line waits before asking again: 5 s, doubling to 60 s."""
    return float(min(5 * 2 ** (deferrals - 1), 60))
