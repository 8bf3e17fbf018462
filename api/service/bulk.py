"""Operations on many tasks at once: batch submit, bulk cancel and retry by filter (each item costs what one
task costs)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from temporalio.service import RPCError

from api.domain.caller import Caller
from api.domain.commands import StartTask
from api.domain.errors import ServiceError, ValidationFailed, from_temporal
from api.service import submission
from api.service.quotas import Quota
from api.service.starts import Submitted
from api.service.tasks import TaskFilter, TaskService
from api.store.projection import TaskView
from api.store.store import metered
from taskservice.contracts import TaskStatus

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 100
# Items run side by side, bounded: Temporal and the API share the machine.
BATCH_PARALLELISM = 8
BULK_CANCEL_PARALLELISM = 16
BULK_MATCH_LIMIT = 10_000


@dataclass
class BatchItem:
    """One item of a batch: the submitted task, or why it was not created."""

    index: int
    submitted: Submitted | None = None
    error: ServiceError | None = None


@dataclass
class BulkResult:
    matched: int
    task_ids: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


async def bounded(limit: int, items: Sequence[T], run: Callable[[T], Awaitable[R]]) -> list[R]:
    """`run` over every item, at most `limit` at a time, results in input order."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with gate:
            return await run(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


class BulkService:
    def __init__(self, tasks: TaskService) -> None:
        self._tasks = tasks
        self._quotas = tasks.quotas

    async def submit_batch(
        self, caller: Caller, items: Sequence[StartTask | ServiceError], *, items_field: str = "tasks"
    ) -> list[BatchItem]:
        """Up to MAX_BATCH tasks, N submit tokens for N; each item is started or fails on its own.

        An item is a task to start, or the ServiceError its surface met parsing it.
        """
        if not 1 <= len(items) <= MAX_BATCH:
            raise ValidationFailed({items_field: f"give 1 to {MAX_BATCH} tasks"}, message="Invalid arguments")
        self._quotas.spend(caller, Quota.SUBMIT, cost=len(items))

        async def one(entry: tuple[int, StartTask | ServiceError]) -> BatchItem:
            index, item = entry
            try:
                if isinstance(item, ServiceError):
                    raise item
                return BatchItem(index, submitted=await self._tasks.starts.start(item))
            except ServiceError as err:
                return BatchItem(index, error=err)
            except RPCError as err:
                return BatchItem(index, error=from_temporal(err))

        return await bounded(BATCH_PARALLELISM, list(enumerate(items)), one)

    async def cancel(self, caller: Caller, selection: TaskFilter) -> BulkResult:
        self._quotas.spend(caller, Quota.READ)
        views = [v for v in await self._matching(caller, selection) if not v.status.is_terminal]
        result = BulkResult(matched=len(views))

        async def cancel(view: TaskView) -> None:
            try:
                await self._tasks.cancel_visible(view)
                result.task_ids.append(view.task_id)
            except ServiceError as err:
                result.errors[view.task_id] = err.message

        await bounded(BULK_CANCEL_PARALLELISM, views, cancel)
        return result

    async def retry(self, caller: Caller, selection: TaskFilter) -> BulkResult:
        """Retries what matches, each through the start path as one retry is: one submit token and every
        admission rule apply to each task it starts (what they refuse is reported in `errors`)."""
        self._quotas.spend(caller, Quota.READ)
        retryable = (TaskStatus.FAILED, TaskStatus.CANCELLED)
        views = [v for v in await self._matching(caller, selection) if v.status in retryable]
        result = BulkResult(matched=len(views))

        async def retry(view: TaskView) -> None:
            try:
                self._quotas.spend(caller, Quota.SUBMIT)
                result.task_ids.append((await self._tasks.retry_visible(caller, view)).task_id)
            except ServiceError as err:
                result.errors[view.task_id] = err.message

        await bounded(BATCH_PARALLELISM, views, retry)
        return result

    async def _matching(self, caller: Caller, selection: TaskFilter) -> list[TaskView]:
        if selection.project_id is None and selection.task_type is None and selection.status is None:
            raise ValidationFailed({"body": "give at least one of project_id, task_type, status"})
        submission.known_task_type(selection.task_type, field="task_type", message="Invalid query parameters")
        query = self._tasks.selection_query(caller, selection)
        with metered() as meter:
            views, _ = await self._tasks.store.page(query, page=1, limit=BULK_MATCH_LIMIT)
        self._quotas.charge(caller, Quota.READ, meter.queries - 1)
        return views
