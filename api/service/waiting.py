"""Reads that wait for a task to change (long-polling clients), on the replica's shared history watches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from api.domain.errors import TaskNotFound
from api.service.scope import Scope
from api.store.projection import TaskView
from api.store.store import TaskStore, is_task_id

# The longest a request may wait (`?wait=`, `Prefer: wait=`): below common proxy and client timeouts.
MAX_WAIT_S = 60.0


async def wait_for(
    store: TaskStore, scope: Scope, task_id: str, done: Callable[[TaskView], bool], timeout: float
) -> TaskView:
    """The task as soon as `done(view)` holds or it has finished, else as it is after `timeout` seconds.

    Wakes on what the task's history records (status, attempt, outcome, a cancel request), not on a timer.
    A task outside `scope` is missing, as everywhere.
    """
    if not is_task_id(task_id):
        raise TaskNotFound(task_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(timeout, MAX_WAIT_S)
    async with store.watches.watching(task_id) as watch:
        view, position = await watch.view()
        if not scope.allows(view):
            raise TaskNotFound(task_id)
        while not (done(view) or view.status.is_terminal):
            if not await watch.recorded_after(position, deadline - loop.time()):
                # The wait is over: the task as it is now (progress moves without history events).
                return (await watch.view())[0]
            view, position = await watch.view()
            if watch.ended:  # nothing more will be recorded (or the long-poll failed): answer now
                break
        return view
