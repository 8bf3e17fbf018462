"""Following a task to its end, once for both clients: waiting reads of ``/status`` (``?wait=`` with the
``ETag`` of the last answer, which the server holds until the task changes) where the server has them, else
its event stream (Server-Sent Events), else polling ``/status``; each new status is emitted, the terminal one
last."""

from __future__ import annotations

import time
from typing import Any

import httpx

from taskservice_client.core import LONG_POLL_MAX_S, RETRYABLE_STATUS, ClientCore
from taskservice_client.errors import (
    TaskCancelledError,
    TaskFailedError,
    TaskServiceError,
    WaitTimeoutError,
    error_from_response,
)
from taskservice_client.events import (
    EventStreamParser,
    is_live_event_stream,
    status_from_event,
    stream_missing,
)
from taskservice_client.models import TaskState, TaskStatus
from taskservice_client.operations import status, submit
from taskservice_client.steps import Emit, Emitting, HttpCall, NextEventLine, OpenEventStream, Sleep


class _Follower:
    """What following one task has seen so far, and its deadline."""

    def __init__(self, core: ClientCore, task_id: str, timeout: float | None) -> None:
        self.core = core
        self.task_id = task_id
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.last: TaskStatus | None = None
        self.final: TaskStatus | None = None
        self._last_key: tuple[Any, ...] | None = None

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def pause(self, poll_interval: float) -> Sleep:
        remaining = self.remaining()
        return Sleep(poll_interval if remaining is None else min(poll_interval, remaining))

    def offer(self, seen: TaskStatus, *, from_event: bool) -> Emitting[TaskStatus, bool]:
        """Emit the status if it is new (state, progress, step, attempt or error changed); True at the end.

        A task's end that came as an event is read again from /status, since events may carry fewer fields
        (e.g. no ``processing_time`` or ``retry_of``); the event itself stands if that read fails."""
        if seen.is_terminal and from_event:
            try:
                seen = yield from status(self.core, self.task_id)
            except TaskServiceError:
                pass
        key = (seen.status, seen.progress, seen.current_step, seen.attempt, seen.error)
        if key != self._last_key or seen.is_terminal:
            self._last_key, self.last = key, seen
            yield Emit(seen)
        if seen.is_terminal:
            self.final = seen
        return seen.is_terminal

    def poll_once(self) -> Emitting[TaskStatus, bool]:
        return (yield from self.offer((yield from status(self.core, self.task_id)), from_event=False))


def follow(
    core: ClientCore, task_id: str, poll_interval: float, timeout: float | None, live: bool = True
) -> Emitting[TaskStatus, TaskStatus]:
    """Emit each new status of the task until it ends; return the terminal one. Raises ``WaitTimeoutError``
    after ``timeout`` seconds (None: no limit). ``live``: progress matters too, not only status changes (a
    waiting read then ends after ``poll_interval`` even without a change of status)."""
    follower = _Follower(core, task_id, timeout)
    while True:
        if core._long_poll_available is not False:
            yield from _wait_for_changes(follower, poll_interval if live else LONG_POLL_MAX_S)
        elif core._sse_available is not False:
            yield from _read_event_stream(follower)
        else:
            yield from _poll(follower, poll_interval)
        if follower.final is not None:
            return follower.final
        remaining = follower.remaining()
        if remaining is not None and remaining <= 0:
            raise WaitTimeoutError(task_id, timeout or 0.0, follower.last)
        if core._sse_available is not False:  # the stream ended early: reconnect after a pause
            yield follower.pause(poll_interval)


def _wait_for_changes(follower: _Follower, wait_s: float) -> Emitting[TaskStatus, None]:
    """Waiting reads until the task ends, the timeout passes or the server turns out not to wait (no
    ``ETag``: an older server answered at once; that answer still counts)."""
    core, etag = follower.core, None
    while True:
        remaining = follower.remaining()
        wait = round(max(0.05, min(wait_s, LONG_POLL_MAX_S, wait_s if remaining is None else remaining)), 2)
        response = yield from core._request(
            "GET",
            f"/api/v1/tasks/{follower.task_id}/status",
            params={"wait": str(wait)},
            headers={"If-None-Match": etag} if etag else None,
            accept=(304,),
            timeout=core._long_poll_timeout(wait),
        )
        if response.status_code != 304:
            etag = response.headers.get("ETag")
            core._long_poll_available = etag is not None
            if (yield from follower.offer(TaskStatus.model_validate(response.json()), from_event=False)):
                return
            if etag is None:
                return
        remaining = follower.remaining()
        if remaining is not None and remaining <= 0:
            return


def _poll(follower: _Follower, poll_interval: float) -> Emitting[TaskStatus, None]:
    while not (yield from follower.poll_once()):
        remaining = follower.remaining()
        if remaining is not None and remaining <= 0:
            return
        yield follower.pause(poll_interval)


def _read_event_stream(follower: _Follower) -> Emitting[TaskStatus, None]:
    """One connection to the event stream; returns when it ends, times out or turns out not to exist."""
    core = follower.core
    call = HttpCall(
        "GET",
        core._url(f"/api/v1/tasks/{follower.task_id}/events"),
        headers=core._headers({"Accept": "text/event-stream", "Cache-Control": "no-cache"}),
        timeout=core._sse_timeout(follower.deadline),
    )
    try:
        response: httpx.Response = yield OpenEventStream(call)
        if not is_live_event_stream(response):
            if stream_missing(response):
                core._sse_available = False
            elif response.status_code in RETRYABLE_STATUS:  # busy: one poll (which retries) instead
                yield from follower.poll_once()
            else:
                raise error_from_response(response)
            return
        core._sse_available = True
        parser = EventStreamParser()
        while (line := (yield NextEventLine())) is not None:
            event = parser.feed(line)
            seen = status_from_event(event) if event is not None else None
            if seen is not None and (yield from follower.offer(seen, from_event=True)):
                return
            if follower.deadline is not None and time.monotonic() >= follower.deadline:
                return
    except httpx.TransportError:  # includes timeouts: a silent stream is reconnected
        if core._sse_available is None:  # could not connect: one poll instead (it retries, then raises)
            yield from follower.poll_once()
        # dropped mid-stream: follow() reconnects


def wait(
    core: ClientCore, task_id: str, timeout: float | None, poll_interval: float, live: bool = True
) -> Emitting[TaskStatus, TaskStatus]:
    """``follow`` the task; raise ``TaskFailedError`` / ``TaskCancelledError`` when it ends so."""
    final = yield from follow(core, task_id, poll_interval, timeout, live)
    if final.status is TaskState.FAILED:
        raise TaskFailedError(final)
    if final.status is TaskState.CANCELLED:
        raise TaskCancelledError(final)
    return final


def submit_and_wait(
    core: ClientCore,
    project_id: str,
    task_type: str,
    task_data: dict[str, Any],
    timeout: float | None,
    poll_interval: float,
    submit_options: dict[str, Any],
    live: bool = True,
) -> Emitting[TaskStatus, TaskStatus]:
    submitted = yield from submit(core, project_id, task_type, task_data, **submit_options)
    return (yield from wait(core, submitted.task_id, timeout, poll_interval, live))
