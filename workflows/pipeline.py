"""The workflow a pipeline runs as (its workflow ID is the pipeline ID): each step a child `TaskWorkflow`.

A step starts once every step it waits for completed, its references resolved from their outcomes
(taskservice/pipeline_graph.py). A step that does not complete skips its dependents; the other branches go on
(`on_failure: stop`: every running and pending step is cancelled instead). Cancelling the pipeline cancels its
running steps; finished steps keep their results. The state is published in the memo at every change.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError
from temporalio.exceptions import CancelledError as TemporalCancelledError

with workflow.unsafe.imports_passed_through():
    from taskservice import search_attributes as sa
    from taskservice.contracts import TaskStatus, WebhookDelivery, WebhookPayload
    from taskservice.pipeline_contracts import (
        PIPELINE_WEBHOOK_TYPE,
        STEP_RESULT_MEMO_LIMIT,
        OnFailure,
        PipelineInput,
        PipelineMemoKey,
        PipelineState,
        StepOutcome,
        StepPlan,
        StepStatus,
    )
    from taskservice.pipeline_graph import UnresolvedReference, resolve
    from taskservice.queues import WORKFLOW_QUEUE
    from taskservice.record import MemoKey, TaskOutcome
    from taskservice.timefmt import iso_z
    from workflows import console
    from workflows.task import TaskWorkflow, task_priority
    from workflows.webhook import send

# A step's end as the pipeline's own status, once nothing runs.
_PIPELINE_STATUS = {
    StepStatus.COMPLETED: TaskStatus.COMPLETED,
    StepStatus.FAILED: TaskStatus.FAILED,
    StepStatus.CANCELLED: TaskStatus.CANCELLED,
}


@workflow.defn(name="PipelineWorkflow", sandboxed=False)
class PipelineWorkflow:
    def __init__(self) -> None:
        self._steps: dict[str, StepOutcome] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._changed = False
        self._stopping = False
        self._cancelled = False
        self._state = PipelineState(StepStatus.QUEUED, [])

    @workflow.run
    async def run(self, pipeline: PipelineInput) -> PipelineState:
        self._pipeline = pipeline
        self._steps = {p.step_id: p.reused or StepOutcome(p.step_id, p.task.task_id) for p in pipeline.steps}
        self._state.started_at = iso_z(workflow.now())
        self._publish(StepStatus.PROCESSING)
        try:
            await self._drive()
        except asyncio.CancelledError:
            # Cancelled (DELETE): its steps are cancelled, and it ends as cancelled with its webhook.
            self._cancelled = True
            await self._stop()
        return await self._finish()

    @workflow.query
    def state(self) -> PipelineState:
        return self._state

    async def _drive(self) -> None:
        """Start what may start, mark what never can, until nothing runs."""
        while True:
            self._skip_unreachable()
            for plan in self._pipeline.steps:
                if self._ready(plan):
                    self._start(plan)
            self._publish()
            if not self._running:
                return
            await workflow.wait_condition(lambda: self._changed)
            self._changed = False
            if self._stopping:
                await self._stop()
                return

    def _ready(self, plan: StepPlan) -> bool:
        outcome = self._steps[plan.step_id]
        if outcome.status != StepStatus.QUEUED or plan.step_id in self._running:
            return False
        return all(self._steps[up].status == StepStatus.COMPLETED for up in plan.depends_on)

    def _skip_unreachable(self) -> None:
        """A pending step one of whose upstream steps ended without completing is skipped (and so on down)."""
        skipped = True
        while skipped:
            skipped = False
            for plan in self._pipeline.steps:
                outcome = self._steps[plan.step_id]
                if outcome.status != StepStatus.QUEUED or plan.step_id in self._running:
                    continue
                blocked = [up for up in plan.depends_on if self._steps[up].status.is_terminal]
                if any(self._steps[up].status != StepStatus.COMPLETED for up in blocked):
                    outcome.status = StepStatus.SKIPPED
                    outcome.error = "an upstream step did not complete"
                    skipped = True

    def _start(self, plan: StepPlan) -> None:
        self._steps[plan.step_id].status = StepStatus.PROCESSING
        self._running[plan.step_id] = asyncio.create_task(self._run_step(plan))

    async def _run_step(self, plan: StepPlan) -> None:
        outcome = self._steps[plan.step_id]
        try:
            bodies = {up: self._steps[up].body() for up in plan.depends_on}
            task_data = resolve(plan.task.task.task_data, bodies)
            task = replace(plan.task, task=replace(plan.task.task, task_data=task_data))
            ended: TaskOutcome = await workflow.execute_child_workflow(
                TaskWorkflow.run,
                task,
                id=task.task_id,
                task_queue=WORKFLOW_QUEUE,
                memo={MemoKey.TASK: task.task},
                search_attributes=sa.task_attributes(task.task, TaskStatus.QUEUED.value),
                priority=task_priority(task),
                static_summary=console.task_summary(task),
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            )
            outcome.status, outcome.result = StepStatus.COMPLETED, ended.result
        except UnresolvedReference as err:
            outcome.status, outcome.error, outcome.error_type = (
                StepStatus.FAILED,
                str(err),
                "InvalidReference",
            )
        except ChildWorkflowError as err:
            _record_failure(outcome, err)
        except asyncio.CancelledError:
            outcome.status, outcome.error = StepStatus.CANCELLED, "Task was cancelled"
            raise
        finally:
            self._running.pop(plan.step_id, None)
            self._changed = True
        if outcome.status == StepStatus.FAILED and self._pipeline.record.on_failure == OnFailure.STOP:
            self._stopping = True

    async def _stop(self) -> None:
        """Cancel every running step (and wait for it to end); pending steps are cancelled unstarted."""
        running = list(self._running.values())
        for step in running:
            step.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for outcome in self._steps.values():
            if outcome.status == StepStatus.QUEUED:
                outcome.status, outcome.error = StepStatus.CANCELLED, "Pipeline was cancelled"

    def _publish(self, status: StepStatus | None = None) -> None:
        """The state into the memo (and the status search attribute when it changes)."""
        previous = self._state.status
        steps = [_for_memo(self._steps[p.step_id]) for p in self._pipeline.steps]
        self._state = replace(self._state, status=status or previous, steps=steps)
        workflow.upsert_memo({PipelineMemoKey.STATE: self._state})
        if self._state.status != previous:
            workflow.upsert_search_attributes([sa.TASK_STATUS.value_set(self._state.status.value)])

    async def _finish(self) -> PipelineState:
        ends = {outcome.status for outcome in self._steps.values()}
        status = StepStatus.COMPLETED
        if self._cancelled:
            status = StepStatus.CANCELLED
        elif ends - {StepStatus.COMPLETED}:
            status = StepStatus.FAILED
        self._state.completed_at = iso_z(workflow.now())
        self._publish(status)
        await self._send_webhook()
        return self._state

    async def _send_webhook(self) -> None:
        record = self._pipeline.record
        if not record.callback_url or "completed" not in record.webhook_events:
            return
        status = _PIPELINE_STATUS.get(self._state.status, TaskStatus.FAILED)
        payload = WebhookPayload(
            task_id=self._pipeline.pipeline_id,
            project_id=record.project_id,
            task_type=PIPELINE_WEBHOOK_TYPE,
            status=status,
            metadata=record.metadata,
            result=_summary(self._state),
            completed_at=self._state.completed_at,
        )
        if status != TaskStatus.COMPLETED:
            failed = [s.step_id for s in self._state.steps if s.status != StepStatus.COMPLETED]
            payload.error = f"steps not completed: {', '.join(failed)}"
            payload.failed_at = payload.cancelled_at = self._state.completed_at
        delivery = WebhookDelivery(
            url=record.callback_url,
            webhook_id=f"msg_{self._pipeline.pipeline_id}_completed",
            event="completed",
            payload=payload,
            task_id=self._pipeline.pipeline_id,
            project_id=record.project_id,
            task_type=PIPELINE_WEBHOOK_TYPE,
            tenant=record.tenant,
            user=record.user,
        )
        await send(delivery, f"pipeline webhook · {self._pipeline.pipeline_id}")


def _for_memo(outcome: StepOutcome) -> StepOutcome:
    """The step as the memo keeps it: a large result stays with its task (the workflow keeps its own copy
    to resolve references from)."""
    result = outcome.result
    if (
        result is not None
        and len(workflow.payload_converter().to_payload(result).data) > STEP_RESULT_MEMO_LIMIT
    ):
        return replace(outcome, result=None, result_in_task=True)
    return replace(outcome)


def _record_failure(outcome: StepOutcome, err: ChildWorkflowError) -> None:
    if isinstance(err.cause, TemporalCancelledError):
        outcome.status, outcome.error = StepStatus.CANCELLED, "Task was cancelled"
        return
    outcome.status = StepStatus.FAILED
    cause = err.cause
    outcome.error = cause.message if isinstance(cause, ApplicationError) else str(cause or err)


def _summary(state: PipelineState) -> dict[str, Any]:
    """The webhook's `result`: each step's task, status and result, by step ID."""
    return {
        "status": state.status.value,
        "steps": [
            {"id": s.step_id, "task_id": s.task_id, "status": s.status.value, "result": s.result}
            for s in state.steps
        ],
    }
