"""Live task events: poll Temporal (not a replica's cache) and yield whenever what a client sees changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from api.taskstore import QueueState, TaskStore, TaskView, filter_query

TASK_POLL_S = 0.5
PROJECT_POLL_S = 1.0
QUEUE_POLL_S = 2.0
# Project streams describe at most this many running tasks per poll (for their progress).
PROJECT_DESCRIBE_LIMIT = 50


def task_event(view: TaskView) -> dict[str, Any]:
    """The payload of every stream: the seed's status fields (progress 0-1) plus the type and project."""
    return {
        "task_id": view.task_id,
        "project_id": view.project_id,
        "task_type": view.task_type,
        "status": view.status.value,
        "progress": view.progress,
        "current_step": view.current_step,
        "result": view.result,
        "error": view.error,
        "attempt": view.attempt,
        "processing_time": view.processing_time,
        "retry_of": view.retry_of,
        "created_at": _iso(view.created_at),
        "started_at": _iso(view.started_at),
        "completed_at": _iso(view.completed_at),
        "updated_at": _iso(view.updated_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _fingerprint(view: TaskView) -> tuple[Any, ...]:
    return (view.status, round(view.progress, 4), view.current_step, view.attempt)


async def watch_task(
    store: TaskStore, task_id: str, *, interval: float = TASK_POLL_S
) -> AsyncIterator[TaskView]:
    """Yield the task now and at every visible change; stop after it reaches a terminal state."""
    last: tuple[Any, ...] | None = None
    while True:
        view = await store.get(task_id)
        if _fingerprint(view) != last:
            last = _fingerprint(view)
            yield view
        if view.status.is_terminal:
            return
        await asyncio.sleep(interval)


async def watch_project(
    store: TaskStore, project_id: str, *, interval: float = PROJECT_POLL_S
) -> AsyncIterator[TaskView]:
    """Yield each of the project's tasks when it changes: unfinished ones and those that just closed."""
    seen: dict[str, tuple[Any, ...]] = {}
    since = datetime.now(UTC) - timedelta(seconds=5)
    while True:
        window_start = since.isoformat().replace("+00:00", "Z")
        since = datetime.now(UTC) - timedelta(seconds=interval * 3)
        query = (
            f'{filter_query(project_id=project_id)} AND (ExecutionStatus = "Running" '
            f'OR CloseTime >= "{window_start}")'
        )
        views = await store.latest(query, 1000)
        running = [v for v in views if not v.status.is_terminal][:PROJECT_DESCRIBE_LIMIT]
        detailed = {v.task_id: v for v in await asyncio.gather(*(store.get(v.task_id) for v in running))}
        for view in views:
            view = detailed.get(view.task_id, view)
            if seen.get(view.task_id) != _fingerprint(view):
                seen[view.task_id] = _fingerprint(view)
                yield view
        await asyncio.sleep(interval)


async def watch_queues(
    store: TaskStore, *, interval: float = QUEUE_POLL_S
) -> AsyncIterator[list[QueueState]]:
    """Yield all queue states now and whenever a backlog or the set of pollers changes."""
    last: Any = None
    while True:
        states = list((await store.all_queue_states()).values())
        fingerprint = [(s.name, s.backlog, sorted(s.pollers)) for s in states]
        if fingerprint != last:
            last = fingerprint
            yield states
        await asyncio.sleep(interval)
