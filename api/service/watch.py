"""Live task changes: read from Temporal on every poll (not a replica's memory), yielded when they differ."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from api.store.projection import TaskView
from api.store.store import TaskStore
from taskservice.visibility import TaskQuery

TASK_POLL_S = 0.5
PROJECT_POLL_S = 1.0
QUEUE_POLL_S = 2.0
# Project streams describe at most this many running tasks per poll (for their progress).
PROJECT_DESCRIBE_LIMIT = 50
PROJECT_STREAM_LIMIT = 1000


def fingerprint(view: TaskView) -> tuple[Any, ...]:
    """What a watcher sees change."""
    return (view.status, round(view.progress, 4), view.current_step, view.attempt, view.preview_at)


async def task_changes(
    store: TaskStore, first: TaskView, *, interval: float = TASK_POLL_S
) -> AsyncIterator[TaskView]:
    """`first`, then the task at every visible change; stops after it reaches a terminal state."""
    view, last = first, fingerprint(first)
    yield view
    while not view.status.is_terminal:
        await asyncio.sleep(interval)
        view = await store.get(view.task_id)
        if fingerprint(view) != last:
            last = fingerprint(view)
            yield view


async def project_changes(
    store: TaskStore, query: TaskQuery, *, interval: float = PROJECT_POLL_S
) -> AsyncIterator[TaskView]:
    """Each selected task when it changes: the unfinished ones and those that just closed. Never ends."""
    seen: dict[str, tuple[Any, ...]] = {}
    since = datetime.now(UTC) - timedelta(seconds=5)
    while True:
        window = query.with_(open_or_closed_since=since)
        since = datetime.now(UTC) - timedelta(seconds=interval * 3)
        views = await store.newest(window, PROJECT_STREAM_LIMIT)
        running = [v for v in views if not v.status.is_terminal][:PROJECT_DESCRIBE_LIMIT]
        detailed = {v.task_id: v for v in await asyncio.gather(*(store.get(v.task_id) for v in running))}
        for view in views:
            view = detailed.get(view.task_id, view)
            if seen.get(view.task_id) != fingerprint(view):
                seen[view.task_id] = fingerprint(view)
                yield view
        await asyncio.sleep(interval)
