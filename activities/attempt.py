"""A task activity's attempt tells its workflow that it started (the `task_started` signal), once.

A first attempt is announced only once it has run ANNOUNCE_AFTER_S: most of a short task's orchestration
cost was that signal's workflow task, and its result carries its start instead (`TaskAttemptResult`). A
retry, and an attempt whose task sends start or progress webhooks (they must follow the start), is
announced before it runs; an attempt that ends without a result is announced before it ends. Until then,
listings filtered by status still show the task `queued`; its /status shows `processing` at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from taskservice.contracts import TaskActivityInput, TaskAttemptResult, TaskStarted
from taskservice.queues import worker_identity
from taskservice.timefmt import now_z
from workflows.task import TaskWorkflow

log = logging.getLogger("taskservice.workers")

ANNOUNCE_AFTER_S = 0.5

# Signals under way, held until sent: one may outlive the attempt that asked for it.
_SENDING: set[asyncio.Task[None]] = set()


def workflow_handle() -> WorkflowHandle[TaskWorkflow, Any] | None:
    """The workflow of the running attempt; None where the activity runs without a client, hence without a
    workflow to tell (a test's `ActivityEnvironment`)."""
    try:
        client = activity.client()
    except RuntimeError:  # documented: no client in this activity context
        return None
    return client.get_workflow_handle_for(TaskWorkflow.run, activity.info().workflow_id or "")


class AttemptAnnouncement:
    """The start of the running attempt, and its announcement (at once, after a while, or never)."""

    def __init__(self) -> None:
        info = activity.info()
        self.started = TaskStarted(
            attempt=info.attempt, started_at=now_z(), worker=worker_identity(info.task_queue)
        )
        self._workflow_id = info.workflow_id
        self._workflow = workflow_handle()
        self._due = asyncio.Event()
        self._signalling = False
        self._sending = asyncio.create_task(self._send_when_due())
        _SENDING.add(self._sending)
        self._sending.add_done_callback(_SENDING.discard)

    @classmethod
    async def begin(cls, task: TaskActivityInput) -> AttemptAnnouncement:
        """Start announcing the running attempt: before it runs when it is a retry or its task sends start
        or progress webhooks, else once it has run a while."""
        announcement = cls()
        if announcement.started.attempt > 1 or task.announce_at_once:
            await announcement.now()
        return announcement

    def result(self, result: dict[str, Any]) -> TaskAttemptResult:
        """What the attempt returns to its workflow: the task's result and the attempt's start."""
        return TaskAttemptResult(
            result=result, started_at=self.started.started_at, attempt=self.started.attempt
        )

    async def now(self) -> None:
        self._due.set()
        await asyncio.shield(self._sending)

    def drop(self) -> None:
        """The attempt is over: an announcement not yet under way is not needed any more."""
        if not self._signalling:
            self._sending.cancel()

    async def _send_when_due(self) -> None:
        try:
            await asyncio.wait_for(self._due.wait(), ANNOUNCE_AFTER_S)
        except TimeoutError:
            pass
        self._signalling = True
        if self._workflow is None:
            return
        try:
            await self._workflow.signal(TaskWorkflow.task_started, self.started)
        except RPCError as err:
            # The task runs regardless; only the queued→processing flip is late.
            log.warning(
                "Could not signal task start", extra={"task_id": self._workflow_id, "error": str(err)}
            )
