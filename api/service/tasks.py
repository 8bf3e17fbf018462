"""Every operation on tasks, whatever the surface that asks: its rules, limits and domain errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from api.domain.caller import Caller, Role
from api.domain.commands import StartTask
from api.domain.errors import InvalidState, RateLimited, TaskNotFound
from api.service import submission
from api.service.estimates import TaskEstimate, TypeModel
from api.service.quotas import Quota, Quotas, StreamSlot
from api.service.scope import scope_of
from api.service.starts import Quote, Submitted, TaskStarts
from api.service.waiting import MAX_WAIT_S, wait_for
from api.service.watch import project_changes, task_changes
from api.store.projection import TaskView
from api.store.store import TaskStore, metered
from taskservice.contracts import TaskStatus
from taskservice.render_cache import CacheMode
from taskservice.settings import Settings
from taskservice.telemetry import ApiMetrics
from taskservice.visibility import TaskQuery

CANCEL_MESSAGES = {
    TaskStatus.QUEUED: "Task was queued and has been revoked",
    TaskStatus.PROCESSING: "Task was running and has been cancelled",
    TaskStatus.CANCELLED: "Task was already cancelled",
}


@dataclass
class Cancelled:
    before: TaskView
    after: TaskView
    message: str


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks a listing or a bulk operation selects; `mine`: only the caller's own."""

    project_id: str | None = None
    task_type: str | None = None
    status: TaskStatus | None = None
    mine: bool = False


class TaskService:
    """The operations on tasks; built once per replica (api/runtime.py), so what it holds lives as long."""

    def __init__(
        self, store: TaskStore, settings: Settings, quotas: Quotas, metrics: ApiMetrics | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.quotas = quotas
        self.starts = TaskStarts(store, settings, metrics)

    # --- submit ------------------------------------------------------------------------------------

    async def submit(self, caller: Caller, command: StartTask) -> Submitted:
        """Start a task: one submit token, then the start path's admission."""
        self.quotas.spend(caller, Quota.SUBMIT)
        return await self.starts.start(command)

    async def quote(self, caller: Caller, command: StartTask) -> Quote:
        """What a submit would answer about time, starting nothing: one read token, no submit token."""
        self.quotas.spend(caller, Quota.READ)
        return await self.starts.quote(command)

    async def duration_models(self, caller: Caller) -> list[TypeModel]:
        self.quotas.spend(caller, Quota.READ)
        return await self.starts.estimates.models()

    async def estimate(self, view: TaskView) -> TaskEstimate | None:
        """A task's start and finish as they stand now (a view the caller already may read)."""
        return await self.starts.estimates.for_view(view)

    async def submit_and_wait(self, caller: Caller, command: StartTask, wait_s: float) -> Submitted:
        """Submit, then wait up to `wait_s` for the task to finish (without a free wait slot: no wait)."""
        submitted = await self.submit(caller, command)
        try:
            slot = self.quotas.waits.hold(caller)
        except RateLimited:
            return submitted
        with slot:
            submitted.finished = await self._finished_within(caller, submitted, wait_s)
        submitted.waited = True
        return submitted

    async def _finished_within(self, caller: Caller, submitted: Submitted, wait_s: float) -> TaskView | None:
        task_id = submitted.view.task_id
        if submitted.closes_with_outcome:
            # One long-poll on the close (what an SDK's result() costs), then one read of the task.
            if not await self.store.wait_closed(task_id, min(wait_s, MAX_WAIT_S)):
                return None
            view = await self.store.get(task_id)
        else:
            view = await wait_for(self.store, scope_of(caller), task_id, _is_finished, wait_s)
        return view if view.status.is_terminal else None

    # --- reads -------------------------------------------------------------------------------------

    async def get(self, caller: Caller, task_id: str) -> TaskView:
        self.quotas.spend(caller, Quota.READ)
        return await self.visible(caller, task_id)

    async def wait_for_change(
        self, caller: Caller, task_id: str, changed: Callable[[TaskView], bool], wait_s: float
    ) -> TaskView:
        """The task as soon as `changed(view)` holds or it has finished, else after `wait_s` seconds (one
        read token; at most `max_waits_per_tenant` of the tenant's requests wait at once, 429 beyond)."""
        self.quotas.spend(caller, Quota.READ)
        if wait_s <= 0:
            return await self.visible(caller, task_id)
        with self.quotas.waits.hold(caller):
            return await wait_for(self.store, scope_of(caller), task_id, changed, wait_s)

    async def visible(self, caller: Caller, task_id: str) -> TaskView:
        """The task, if the caller's scope holds it; anywhere else it does not exist."""
        view = await self.store.get(task_id)
        if not scope_of(caller).allows(view):
            raise TaskNotFound(task_id)
        return view

    async def list_tasks(
        self,
        caller: Caller,
        selection: TaskFilter,
        *,
        page: int,
        limit: int,
        task_type_field: str = "task_type",
        message: str = "Invalid query parameters",
    ) -> tuple[list[TaskView], int]:
        """A page of the selected tasks, newest first, and how many there are."""
        self.quotas.spend(caller, Quota.READ)
        submission.known_task_type(selection.task_type, field=task_type_field, message=message)
        with metered() as meter:
            found = await self.store.page(self.selection_query(caller, selection), page=page, limit=limit)
        self.quotas.charge(caller, Quota.READ, meter.queries - 1)
        return found

    def selection_query(self, caller: Caller, selection: TaskFilter) -> TaskQuery:
        query = TaskQuery(
            project_id=selection.project_id,
            task_types=(selection.task_type,) if selection.task_type else (),
            status=selection.status,
        )
        if selection.mine:
            query = query.with_(tenant=caller.tenant, user=caller.subject)
        return scope_of(caller).narrow(query)

    async def watch(self, caller: Caller, task_id: str, *, held: bool = True) -> AsyncIterator[TaskView]:
        """The task now and at every visible change, until it ends (TaskNotFound before anything).

        The stream holds one of the tenant's stream slots while open (429 when none is free); `held=False`
        is for a surface that holds a slot per subscription itself (`hold_stream`)."""
        first = await self.get(caller, task_id)
        changes = task_changes(self.store, first)
        return self.quotas.stream(caller, changes) if held else changes

    async def watch_project(
        self, caller: Caller, project_id: str, *, held: bool = True
    ) -> AsyncIterator[TaskView]:
        """Each of the project's tasks whenever it changes (unfinished ones and those that just closed)."""
        self.quotas.spend(caller, Quota.READ)
        changes = project_changes(self.store, scope_of(caller).narrow(TaskQuery(project_id=project_id)))
        return self.quotas.stream(caller, changes) if held else changes

    def hold_stream(self, caller: Caller) -> StreamSlot:
        """One of the tenant's stream slots, for a subscription that shares a stream with others."""
        return self.quotas.streams.hold(caller)

    # --- cancel and retry --------------------------------------------------------------------------

    async def cancel(self, caller: Caller, task_id: str) -> Cancelled:
        """Seed 001's state table: queued/running → cancelled, cancelled → unchanged, finished → refused."""
        self.quotas.spend(caller, Quota.READ)
        return await self.cancel_visible(await self.visible(caller, task_id))

    async def cancel_visible(self, before: TaskView) -> Cancelled:
        task_id = before.task_id
        if before.status == TaskStatus.COMPLETED:
            raise InvalidState("Task has already completed successfully and cannot be cancelled")
        if before.status == TaskStatus.FAILED:
            raise InvalidState("Task has already failed and cannot be cancelled")
        if before.status == TaskStatus.CANCELLED:
            return Cancelled(before, before, CANCEL_MESSAGES[before.status])
        after = await self.store.cancel(task_id)
        if after.status == TaskStatus.COMPLETED:
            raise InvalidState("Task completed before the cancellation took effect")
        message = CANCEL_MESSAGES[before.status]
        if not after.status.is_terminal:
            message += "; it is still cleaning up (up to 30 s)"
        return Cancelled(before, after, message)

    async def retry(self, caller: Caller, task_id: str) -> TaskView:
        """A new task with the same inputs as a finished one."""
        self.quotas.spend(caller, Quota.SUBMIT)
        return await self.retry_visible(caller, await self.visible(caller, task_id))

    async def retry_visible(self, caller: Caller, original: TaskView) -> TaskView:
        if not original.status.is_terminal:
            raise InvalidState(f"Task is still {original.status.value}; only a finished task can be retried")
        return (await self.starts.start(retry_command(caller, original))).view


def retry_command(caller: Caller, original: TaskView) -> StartTask:
    """A new task with a finished one's inputs, its tenant's, created by the caller if a user retries it."""
    return StartTask(
        tenant=original.tenant,
        user=caller.subject if caller.role == Role.USER else original.user,
        project_id=original.project_id,
        task_type=original.task_type,
        task_data=original.task_data,
        priority=original.priority,
        callback_url=original.callback_url,
        metadata=original.metadata,
        deadline_s=original.deadline_s,
        webhook_events=tuple(original.webhook_events),
        retry_of=original.task_id,
        cache=CacheMode(original.cache),
    )


def _is_finished(view: TaskView) -> bool:
    return view.status.is_terminal
