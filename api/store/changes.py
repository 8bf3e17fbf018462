"""Waiting on a task without polling it: one history long-poll per watched task per API replica.

A task's recorded state (memo, search attributes, close) changes only through events appended to its
workflow history, and Temporal long-polls a history (`GetWorkflowExecutionHistory` with `wait_new_event`).
Every request that waits on a task here shares that task's one long-poll and one describe per change, so a
thousand clients waiting on the same task cost Temporal what one does. What history does not record
(heartbeat progress, an attempt that started less than the worker's announce delay ago) is read by the
describe each waiter makes when it wakes or its wait ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import HistoryEventFilterType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.service import RPCError

from api.store.projection import TaskView

if TYPE_CHECKING:
    from temporalio.client import Client

    from api.store.store import TaskStore

log = logging.getLogger("taskservice.api")

# Events that change what a task view shows: memo and search-attribute upserts, a cancel request, the close.
# Workflow-task and activity bookkeeping events are not among them (an activity's start is recorded only
# when it ends; the worker's `task_started` signal is what records it, through the upserts it causes).
VIEW_EVENTS = frozenset(
    {
        "upsert_workflow_search_attributes_event_attributes",
        "workflow_properties_modified_event_attributes",
        "workflow_execution_cancel_requested_event_attributes",
        "workflow_execution_completed_event_attributes",
        "workflow_execution_failed_event_attributes",
        "workflow_execution_canceled_event_attributes",
        "workflow_execution_terminated_event_attributes",
        "workflow_execution_timed_out_event_attributes",
        "workflow_execution_continued_as_new_event_attributes",
    }
)
# A watch nobody uses keeps its long-poll this long: a client's next wait, sent right after an answer,
# continues from where the last one was instead of reading the history again.
IDLE_KEEP_S = 5.0
# A view read this recently (and after the last recorded change) answers concurrent waiters too.
SHARED_VIEW_AGE_S = 0.5


class TaskWatch:
    """One task's recorded changes, followed by one long-poll, and its view, read once per change."""

    def __init__(self, store: TaskStore, task_id: str, on_idle: Callable[[TaskWatch], None]) -> None:
        self.task_id = task_id
        self._store = store
        self._on_idle = on_idle
        # Id of the newest history event that changes the view (0: none seen yet).
        self.changed_at = 0
        self.ended = False  # the long-poll stopped: the workflow closed, or it failed
        self._wake = asyncio.Event()
        self._users = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._poller = asyncio.create_task(self._follow())
        self._view: asyncio.Future[tuple[TaskView, int]] | None = None
        self._view_read_at = 0.0

    async def view(self) -> tuple[TaskView, int]:
        """The task now and the history length it reflects; concurrent callers share one describe."""
        loop = asyncio.get_running_loop()
        shared = self._view
        if shared is not None and (
            not shared.done()
            or (
                shared.exception() is None
                and shared.result()[1] >= self.changed_at
                and loop.time() - self._view_read_at <= SHARED_VIEW_AGE_S
            )
        ):
            return await asyncio.shield(shared)
        self._view_read_at = loop.time()
        self._view = asyncio.ensure_future(self._store.read(self.task_id))
        return await asyncio.shield(self._view)

    async def recorded_after(self, position: int, timeout: float) -> bool:
        """Wait until history records a change after `position`; False after `timeout` without one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.changed_at <= position and not self.ended:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            wake = self._wake
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def _changed(self, events: list[HistoryEvent]) -> None:
        changes = [e.event_id for e in events if e.WhichOneof("attributes") in VIEW_EVENTS]
        if changes:
            self.changed_at = max(self.changed_at, *changes)
            self._wake_all()

    def _wake_all(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def _follow(self) -> None:
        client = self._store.client
        token = b""
        try:
            while True:
                response = await client.workflow_service.get_workflow_execution_history(
                    GetWorkflowExecutionHistoryRequest(
                        namespace=client.namespace,
                        execution=WorkflowExecution(workflow_id=self.task_id),
                        wait_new_event=True,
                        next_page_token=token,
                    ),
                    retry=True,
                )
                self._changed(list(response.history.events))
                # No token: the history is complete (the workflow closed).
                if not response.next_page_token:
                    return
                token = response.next_page_token
        except RPCError as err:
            # Waiters answer with what a describe says (it raises the same error, mapped, if it persists).
            log.info("Task watch stopped", extra={"task_id": self.task_id, "error": err.message})
        finally:
            self.ended = True
            self._wake_all()
            self._on_idle(self)

    def _enter(self) -> None:
        self._users += 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _leave(self) -> None:
        self._users -= 1
        if not self._users and not self.ended:
            self._idle_timer = asyncio.get_running_loop().call_later(IDLE_KEEP_S, self.stop)

    def stop(self) -> None:
        if not self._users:
            self._poller.cancel()


class TaskWatches:
    """The replica's watched tasks: at most one long-poll per task, whoever waits on it."""

    def __init__(self, store: TaskStore) -> None:
        self._store = store
        self._watches: dict[str, TaskWatch] = {}

    @asynccontextmanager
    async def watching(self, task_id: str) -> AsyncIterator[TaskWatch]:
        watch = self._watches.get(task_id)
        if watch is None or watch.ended:
            watch = self._watches[task_id] = TaskWatch(self._store, task_id, self._forget)
        watch._enter()
        try:
            yield watch
        finally:
            watch._leave()

    def _forget(self, watch: TaskWatch) -> None:
        if self._watches.get(watch.task_id) is watch:
            del self._watches[watch.task_id]

    def __len__(self) -> int:
        return len(self._watches)


async def wait_closed(client: Client, workflow_id: str, timeout: float) -> bool:
    """Whether the workflow closes within `timeout` seconds: a long-poll on its close event alone, as the
    SDK's `result()` waits (the server answers empty every ~20 s; it is then asked again)."""

    async def closed() -> None:
        token = b""
        while True:
            response = await client.workflow_service.get_workflow_execution_history(
                GetWorkflowExecutionHistoryRequest(
                    namespace=client.namespace,
                    execution=WorkflowExecution(workflow_id=workflow_id),
                    wait_new_event=True,
                    history_event_filter_type=HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT,
                    next_page_token=token,
                ),
                retry=True,
            )
            if response.history.events or not response.next_page_token:
                return
            token = response.next_page_token

    try:
        await asyncio.wait_for(closed(), timeout)
    except TimeoutError:
        return False
    return True
