"""One render per tenant and content key, however many tasks ask for it at once.

A task whose key missed the cache attaches to `RenderWorkflow` (workflow ID `render-<tenant>-<key>`, started
by signal-with-start from the `join_render` activity, so the first task starts it and the rest attach). The
render holds the concurrency slots and runs the activity exactly as a task does (it is a `TaskWorkflow` with
its own ID, no webhooks and no cache), tells every waiting task when it starts, and sends each the outcome.
A waiting task that is cancelled detaches; the render is cancelled once no task waits on it. A failed render
fails every waiting task with its error and is not cached.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import CancelledError as TemporalCancelledError

with workflow.unsafe.imports_passed_through():
    from taskservice.contracts import TaskAttemptResult, TaskPreview, TaskStarted
    from taskservice.render_cache import ATTACH_SIGNAL, DETACH_SIGNAL, RENDER_WORKFLOW
    from taskservice.render_contracts import RenderInput, RenderOutcome
    from workflows import render
    from workflows.failures import activity_failure
    from workflows.task import TaskWorkflow

CANCELLED = ("the render was cancelled", "RenderCancelled")


@workflow.defn(name=RENDER_WORKFLOW, sandboxed=False)
class RenderWorkflow(TaskWorkflow):
    _forwards_previews = True

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[str] = []
        self._joined = False
        self._told: set[str] = set()
        self._render_result: RenderOutcome | None = None

    @workflow.run
    async def run(self, render_input: RenderInput) -> None:  # type: ignore[override]
        self._task = render_input.task
        self._output_id = render_input.first_task_id
        work = asyncio.create_task(self._render_once())
        await workflow.wait_condition(lambda: work.done() or (self._joined and not self._waiters))
        if not work.done():
            work.cancel()
        self._render_result = await self._ended(work, render_input)
        await self._release_slots()
        while pending := [w for w in self._waiters if w not in self._told]:
            for waiter in pending:
                await self._tell(waiter)
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _render_once(self) -> TaskAttemptResult:
        await self._acquire_slots(self._task)
        return await self._run_activity(self._task)

    async def _ended(self, work: asyncio.Task[TaskAttemptResult], render_input: RenderInput) -> RenderOutcome:
        source = render_input.first_task_id
        began = (
            (self._started.started_at, self._attempt.attempt)
            if self._started and self._attempt
            else (None, 0)
        )
        try:
            ran = await work
        except ActivityError as err:
            if isinstance(err.cause, TemporalCancelledError):
                return RenderOutcome(source, None, *CANCELLED, 0.0, *began)
            failure = activity_failure(err)
            return RenderOutcome(source, None, failure.message, failure.type, 0.0, *began)
        except asyncio.CancelledError:
            return RenderOutcome(source, None, *CANCELLED, 0.0, *began)
        seconds = self._seconds_since(ran.started_at)
        if render_input.store:
            record = self._task.task
            await render.keep(record.tenant, record.task_type, render_input.key, source, ran.result, seconds)
        return RenderOutcome(
            source, result=ran.result, saved_seconds=seconds, started_at=ran.started_at, attempt=ran.attempt
        )

    async def _tell(self, waiter: str) -> None:
        self._told.add(waiter)
        await self._signal(waiter, TaskWorkflow.render_finished, self._render_result)

    async def _signal(self, waiter: str, signal: Any, arg: Any) -> None:
        try:
            await workflow.get_external_workflow_handle(waiter).signal(signal, arg)
        except (ApplicationError, FailureError):
            workflow.logger.warning("A task waiting on a render is gone", extra={"task_id": waiter})

    @workflow.signal(name=ATTACH_SIGNAL)
    async def attach(self, task_id: str) -> None:
        self._joined = True
        if task_id not in self._waiters:
            self._waiters.append(task_id)
        if self._render_result is not None and task_id not in self._told:
            await self._tell(task_id)
        elif self._attempt is not None:
            await self._signal(task_id, TaskWorkflow.task_started, self._attempt)

    @workflow.signal(name=DETACH_SIGNAL)
    def detach(self, task_id: str) -> None:
        if task_id in self._waiters:
            self._waiters.remove(task_id)

    @workflow.signal(name="task_started")
    async def task_started(self, started: TaskStarted) -> None:
        """An attempt of the render started (a retry too): every waiting task shows it from now."""
        self._started = self._started or started
        self._attempt = started
        for waiter in list(self._waiters):
            await self._signal(waiter, TaskWorkflow.task_started, started)

    @workflow.signal(name="task_preview")
    async def task_preview(self, preview: TaskPreview) -> None:
        """A new live preview of the render: each waiting task sends it if it asked for `preview` webhooks."""
        if self._render_result is None:
            for waiter in list(self._waiters):
                await self._signal(waiter, TaskWorkflow.task_preview, preview)
