"""Operator work: cleaning up old and stale tasks (admin credentials only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.domain.caller import Caller
from api.domain.errors import Forbidden
from api.service.tasks import TaskService
from taskservice.contracts import TaskStatus
from taskservice.visibility import TaskQuery


@dataclass
class Cleanup:
    deleted: list[str]
    cancelled: list[str]


class AdminService:
    def __init__(self, tasks: TaskService) -> None:
        self._tasks = tasks

    @staticmethod
    def check_operator(caller: Caller, what: str) -> None:
        """Operator-only work: every tenant's tasks, or telemetry that counts them all."""
        if not caller.is_admin:
            raise Forbidden(f"{what} needs the admin key (ADMIN_API_KEY)")

    async def cleanup(
        self,
        caller: Caller,
        *,
        finished_older_than_h: float,
        queued_older_than_h: float | None,
        dry_run: bool,
    ) -> Cleanup:
        """Delete tasks finished before the cutoff (Temporal deletes asynchronously); cancel tasks queued for
        longer than the other cutoff, if given."""
        self.check_operator(caller, "This endpoint")
        store = self._tasks.store
        now = datetime.now(UTC)
        old = await store.task_ids(
            TaskQuery(running=False, closed_before=now - timedelta(hours=finished_older_than_h))
        )
        stale: list[str] = []
        if queued_older_than_h is not None:
            stale = await store.task_ids(
                TaskQuery(status=TaskStatus.QUEUED, started_before=now - timedelta(hours=queued_older_than_h))
            )
        if not dry_run:
            for task_id in old:
                await store.delete(task_id)
            for task_id in stale:
                await self._tasks.cancel(caller, task_id)
        return Cleanup(deleted=old, cancelled=stale)
