"""``TaskServiceClient`` (blocking) and ``AsyncTaskServiceClient`` (asyncio): the same methods, over httpx.

Configuration comes from the arguments, else the environment: ``TASK_SERVICE_URL`` (default
``http://localhost:8001``) and ``TASK_SERVICE_API_KEY`` (falling back to ``CELERY_TASK_API_KEY``, the name
seed 001's client reads).

429 and 503 answers are retried automatically, honouring ``Retry-After``: at most ``max_retries`` times,
and never when the server asks for a wait longer than ``max_retry_wait`` seconds (the error is raised
instead, with its ``retry_after``). ``max_retries=0`` turns this off.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from taskservice_client.errors import (
    ServiceConnectionError,
    TaskCancelledError,
    TaskFailedError,
    TaskServiceError,
    WaitTimeoutError,
    error_from_response,
    retry_after_seconds,
)
from taskservice_client.models import (
    CancelResult,
    Health,
    Metrics,
    QueueHealth,
    RetryResult,
    SubmitResult,
    TaskListItem,
    TaskPage,
    TaskState,
    TaskStatus,
)

__all__ = ["AsyncTaskServiceClient", "ProgressCallback", "TaskServiceClient"]

__version__ = "0.1.0"

DEFAULT_URL = "http://localhost:8001"
ENV_URL = "TASK_SERVICE_URL"
ENV_API_KEY = "TASK_SERVICE_API_KEY"
ENV_API_KEY_FALLBACK = "CELERY_TASK_API_KEY"
RETRYABLE_STATUS = (429, 503)
# Answers of the events URL that mean "this server has no event stream": fall back to polling.
NO_STREAM_STATUS = (404, 405, 406, 501)
# How long an event stream may stay silent before the SDK reconnects (servers send keep-alives sooner).
SSE_IDLE_TIMEOUT_S = 60.0

ProgressCallback = Callable[[TaskStatus], object]
"""``on_progress`` of ``wait()``: called with each new status (the async client also awaits coroutines)."""


def _status_key(status: TaskStatus) -> tuple[Any, ...]:
    """What makes a status "new" for ``stream()``: state, progress, step, attempt, error."""
    return (status.status, status.progress, status.current_step, status.attempt, status.error)


def _final(status: TaskStatus) -> TaskStatus:
    if status.status is TaskState.FAILED:
        raise TaskFailedError(status)
    if status.status is TaskState.CANCELLED:
        raise TaskCancelledError(status)
    return status


@dataclass
class _SSEEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None


@dataclass
class _SSEParser:
    """Incremental text/event-stream parser (WHATWG rules: ``data`` lines join with newlines, a blank line
    dispatches, lines starting with ``:`` are comments)."""

    retry_ms: int | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> _SSEEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = _SSEEvent(event=self._event or "message", data="\n".join(self._data), id=self._id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None


def _status_from_event(event: _SSEEvent) -> TaskStatus | None:
    """A task status from an event whose data is the /status JSON; None for keep-alives and other events."""
    try:
        data = json.loads(event.data)
    except ValueError:
        return None
    if not isinstance(data, dict) or "status" not in data or "task_id" not in data:
        return None
    return TaskStatus.model_validate(data)


def _is_event_stream(response: httpx.Response) -> bool:
    content_type = str(response.headers.get("content-type", ""))
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


def _stream_missing(response: httpx.Response) -> bool:
    """True when the events URL does not exist on this server (as opposed to: the task does not exist)."""
    if response.status_code == 200:
        return not _is_event_stream(response)
    if response.status_code not in NO_STREAM_STATUS:
        return False
    try:
        body = response.json()
    except ValueError:
        return True
    return not (isinstance(body, dict) and body.get("error") == "task_not_found")


class _ClientBase:
    """Configuration, request building and answer parsing shared by both clients."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout: float,
        max_retries: int,
        max_retry_wait: float,
        use_sse: bool,
    ) -> None:
        self.base_url = (base_url or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")
        if api_key is None:
            api_key = os.environ.get(ENV_API_KEY) or os.environ.get(ENV_API_KEY_FALLBACK)
        self.api_key = api_key or None
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.max_retry_wait = max_retry_wait
        # None: not yet known; False: this server answered that it has no event stream.
        self._sse_available: bool | None = None if use_sse else False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"taskservice-client/{__version__}"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers | (extra or {})

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to sleep before retrying this answer, or None to raise it."""
        if response.status_code not in RETRYABLE_STATUS or attempt >= self.max_retries:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        delay = retry_after_seconds(response, body)
        if delay is None:
            delay = min(0.5 * 2.0**attempt, self.max_retry_wait)
        return delay if delay <= self.max_retry_wait else None

    def _connect_retry_delay(self, method: str, attempt: int) -> float | None:
        # Only reads are retried after a transport error: a POST may have reached the server.
        if method != "GET" or attempt >= self.max_retries:
            return None
        return min(0.5 * 2.0**attempt, self.max_retry_wait)

    def _connection_error(self, err: httpx.HTTPError) -> ServiceConnectionError:
        kind = "timed out" if isinstance(err, httpx.TimeoutException) else "failed"
        return ServiceConnectionError(
            f"Request to {self.base_url} {kind}: {err or type(err).__name__}", error="connection_error"
        )

    def _sse_timeout(self, deadline: float | None) -> httpx.Timeout:
        read = SSE_IDLE_TIMEOUT_S
        if deadline is not None:
            read = max(0.05, min(read, deadline - time.monotonic()))
        return httpx.Timeout(self.timeout, read=read)

    @staticmethod
    def _submit_request(
        project_id: str,
        task_type: str,
        task_data: dict[str, Any],
        priority: int,
        callback_url: str | None,
        metadata: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        body: dict[str, Any] = {
            "project_id": project_id,
            "task_type": task_type,
            "task_data": task_data,
            "priority": priority,
            "metadata": metadata or {},
        }
        if callback_url is not None:
            body["callback_url"] = callback_url
        return body, ({"Idempotency-Key": idempotency_key} if idempotency_key else {})

    @staticmethod
    def _submit_result(response: httpx.Response) -> SubmitResult:
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return SubmitResult.model_validate({**response.json(), "replayed": replayed})

    @staticmethod
    def _list_params(
        page: int, limit: int, status: TaskState | str | None, task_type: str | None
    ) -> dict[str, str | int]:
        if not 1 <= limit <= 100:
            raise ValueError("limit/page_size must be between 1 and 100")
        params: dict[str, str | int] = {"page": page, "limit": limit}
        if status is not None:
            params["status"] = str(status)
        if task_type is not None:
            params["task_type"] = task_type
        return params

    @staticmethod
    def _health(response: httpx.Response) -> Health:
        # 503 with a health body means "unhealthy" (Temporal unreachable): a result, not an error.
        body = response.json() if response.status_code == 503 else None
        if response.status_code == 503 and not (isinstance(body, dict) and "temporal_status" in body):
            raise error_from_response(response)
        return Health.model_validate(response.json())

    @staticmethod
    def _metrics(response: httpx.Response) -> Metrics:
        body = response.json()
        return Metrics.model_validate({**body.get("metrics", {}), "timestamp": body.get("timestamp")})


class TaskServiceClient(_ClientBase):
    """Blocking client. Use as a context manager, or call ``close()``.

    >>> with TaskServiceClient() as tasks:
    ...     submitted = tasks.submit("proj", "test_prompt", {"prompt_template": "Hi"})
    ...     done = tasks.wait(submitted.task_id, timeout=120, on_progress=print)
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 10.0,
        use_sse: bool = True,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            use_sse=use_sse,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # -- transport -------------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, self._url(path), params=params, json=json_body, headers=self._headers(headers)
                )
            except httpx.TransportError as err:
                delay = self._connect_retry_delay(method, attempt) if retry else None
                if delay is None:
                    raise self._connection_error(err) from err
            else:
                if response.is_success or response.status_code in accept:
                    return response
                delay = self._retry_delay(response, attempt) if retry else None
                if delay is None:
                    raise error_from_response(response)
            time.sleep(delay)
            attempt += 1

    # -- tasks -----------------------------------------------------------------------------------------

    def submit(
        self,
        project_id: str,
        task_type: str,
        task_data: dict[str, Any],
        *,
        priority: int = 2,
        callback_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> SubmitResult:
        """Submit a task. With ``idempotency_key``, repeating the call returns the same task
        (``result.replayed`` is then True); the same key with another body raises ``ConflictError``."""
        body, headers = self._submit_request(
            project_id, task_type, task_data, priority, callback_url, metadata, idempotency_key
        )
        response = self._request("POST", "/api/v1/tasks/submit", json_body=body, headers=headers)
        return self._submit_result(response)

    def status(self, task_id: str) -> TaskStatus:
        """The task's current status, progress, step, result or error."""
        response = self._request("GET", f"/api/v1/tasks/{task_id}/status")
        return TaskStatus.model_validate(response.json())

    def cancel(self, task_id: str) -> CancelResult:
        """Cancel a queued or running task (cancelling a cancelled task is fine; a finished one raises
        ``InvalidTaskStateError``)."""
        return CancelResult.model_validate(self._request("DELETE", f"/api/v1/tasks/{task_id}").json())

    def retry(self, task_id: str) -> RetryResult:
        """Run a finished task again as a new task (``result.new_task_id``)."""
        return RetryResult.model_validate(self._request("POST", f"/api/v1/tasks/{task_id}/retry").json())

    def list_page(
        self,
        project_id: str,
        *,
        page: int = 1,
        limit: int = 20,
        status: TaskState | str | None = None,
        task_type: str | None = None,
    ) -> TaskPage:
        """One page of a project's tasks, newest first."""
        params = self._list_params(page, limit, status, task_type)
        response = self._request("GET", f"/api/v1/projects/{project_id}/tasks", params=params)
        return TaskPage.model_validate(response.json())

    def list_tasks(
        self,
        project_id: str,
        status: TaskState | str | None = None,
        task_type: str | None = None,
        page_size: int = 100,
        *,
        max_items: int | None = None,
    ) -> Iterator[TaskListItem]:
        """All of a project's tasks, newest first, fetching pages as the iteration goes (a task that moves
        between pages while iterating is yielded once)."""
        seen: set[str] = set()
        page = 1
        while True:
            result = self.list_page(
                project_id, page=page, limit=page_size, status=status, task_type=task_type
            )
            for item in result.tasks:
                if item.task_id in seen:
                    continue
                seen.add(item.task_id)
                yield item
                if max_items is not None and len(seen) >= max_items:
                    return
            if not result.tasks or page >= result.pagination.total_pages:
                return
            page += 1

    def stream(
        self, task_id: str, *, poll_interval: float = 1.0, timeout: float | None = None
    ) -> Iterator[TaskStatus]:
        """Each new status of the task until it ends (the terminal status is the last item).

        Uses the server's event stream (``GET /api/v1/tasks/{id}/events``, Server-Sent Events) when it has
        one, else polls ``/status`` every ``poll_interval`` seconds. Raises ``WaitTimeoutError`` after
        ``timeout`` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_key: tuple[Any, ...] | None = None
        last: TaskStatus | None = None
        while True:
            events = self._sse_available is not False
            source = (
                self._events(task_id, deadline) if events else self._poll(task_id, poll_interval, deadline)
            )
            with contextlib.closing(source):
                for status in source:
                    if status.is_terminal and events:
                        status = self._final_status(status)
                    key = _status_key(status)
                    if key != last_key or status.is_terminal:
                        last_key, last = key, status
                        yield status
                    if status.is_terminal:
                        return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeoutError(task_id, timeout or 0.0, last)
            if self._sse_available is not False:  # the stream ended early: reconnect after a pause
                time.sleep(poll_interval if remaining is None else min(poll_interval, remaining))

    def _final_status(self, event: TaskStatus) -> TaskStatus:
        """The full /status record of a task whose end came as an event (events may carry fewer fields,
        e.g. no ``processing_time`` or ``retry_of``); the event itself if that read fails."""
        try:
            return self.status(event.task_id)
        except TaskServiceError:
            return event

    def _poll(
        self, task_id: str, poll_interval: float, deadline: float | None
    ) -> Generator[TaskStatus, None, None]:
        while True:
            yield self.status(task_id)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            time.sleep(poll_interval if remaining is None else min(poll_interval, remaining))

    def _events(self, task_id: str, deadline: float | None) -> Generator[TaskStatus, None, None]:
        """One connection to the event stream; returns when it ends, times out or turns out not to exist."""
        headers = self._headers({"Accept": "text/event-stream", "Cache-Control": "no-cache"})
        url = self._url(f"/api/v1/tasks/{task_id}/events")
        try:
            with self._http.stream(
                "GET", url, headers=headers, timeout=self._sse_timeout(deadline)
            ) as response:
                if not response.is_success or not _is_event_stream(response):
                    response.read()
                    if _stream_missing(response):
                        self._sse_available = False
                        return
                    if response.status_code in RETRYABLE_STATUS:  # busy: one poll (which retries) instead
                        yield self.status(task_id)
                        return
                    raise error_from_response(response)
                self._sse_available = True
                parser = _SSEParser()
                for line in response.iter_lines():
                    event = parser.feed(line)
                    status = _status_from_event(event) if event is not None else None
                    if status is not None:
                        yield status
                    if deadline is not None and time.monotonic() >= deadline:
                        return
        except httpx.TransportError:  # includes timeouts: a silent stream is reconnected
            if self._sse_available is None:  # could not connect: one poll instead (it retries, then raises)
                yield self.status(task_id)
            return  # dropped mid-stream: the caller reconnects

    def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: ProgressCallback | None = None,
    ) -> TaskStatus:
        """Block until the task ends and return its final status. ``on_progress`` gets every new status.

        Raises ``TaskFailedError`` / ``TaskCancelledError`` (with ``.status``) when the task ends so, and
        ``WaitTimeoutError`` after ``timeout`` seconds (None: wait forever)."""
        final: TaskStatus | None = None
        for status in self.stream(task_id, poll_interval=poll_interval, timeout=timeout):
            if on_progress is not None:
                on_progress(status)
            final = status
        if final is None:  # pragma: no cover - stream() always yields the terminal status
            raise TaskServiceError(f"Task {task_id} status stream ended without a final status")
        return _final(final)

    def submit_and_wait(
        self,
        project_id: str,
        task_type: str,
        task_data: dict[str, Any],
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: ProgressCallback | None = None,
        **submit_options: Any,
    ) -> TaskStatus:
        """``submit()`` then ``wait()``."""
        submitted = self.submit(project_id, task_type, task_data, **submit_options)
        return self.wait(
            submitted.task_id, timeout=timeout, poll_interval=poll_interval, on_progress=on_progress
        )

    # -- service ---------------------------------------------------------------------------------------

    def health(self) -> Health:
        """Service health (``status`` healthy / degraded / unhealthy; unhealthy is returned, not raised)."""
        return self._health(self._request("GET", "/api/v1/health", retry=False, accept=(503,)))

    def queue_health(self) -> QueueHealth:
        """The seed's task-queue alerts (failure rate, long-running tasks, worker memory)."""
        return QueueHealth.model_validate(self._request("GET", "/api/v1/tasks/health").json())

    def metrics(self) -> Metrics:
        """Cumulative task counters, success/failure rates, average durations per task type."""
        return self._metrics(self._request("GET", "/api/v1/tasks/metrics"))

    def ping(self) -> bool:
        """True when the API answers its liveness probe (needs no key)."""
        try:
            return self._http.get(self._url("/health"), timeout=self.timeout).status_code == 200
        except httpx.HTTPError:
            return False


class AsyncTaskServiceClient(_ClientBase):
    """asyncio client with the same methods as ``TaskServiceClient`` (``list_tasks`` and ``stream`` are
    async iterators). Use ``async with``, or ``await close()``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 10.0,
        use_sse: bool = True,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            use_sse=use_sse,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method, self._url(path), params=params, json=json_body, headers=self._headers(headers)
                )
            except httpx.TransportError as err:
                delay = self._connect_retry_delay(method, attempt) if retry else None
                if delay is None:
                    raise self._connection_error(err) from err
            else:
                if response.is_success or response.status_code in accept:
                    return response
                delay = self._retry_delay(response, attempt) if retry else None
                if delay is None:
                    raise error_from_response(response)
            await asyncio.sleep(delay)
            attempt += 1

    async def submit(
        self,
        project_id: str,
        task_type: str,
        task_data: dict[str, Any],
        *,
        priority: int = 2,
        callback_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> SubmitResult:
        """See ``TaskServiceClient.submit``."""
        body, headers = self._submit_request(
            project_id, task_type, task_data, priority, callback_url, metadata, idempotency_key
        )
        response = await self._request("POST", "/api/v1/tasks/submit", json_body=body, headers=headers)
        return self._submit_result(response)

    async def status(self, task_id: str) -> TaskStatus:
        response = await self._request("GET", f"/api/v1/tasks/{task_id}/status")
        return TaskStatus.model_validate(response.json())

    async def cancel(self, task_id: str) -> CancelResult:
        return CancelResult.model_validate((await self._request("DELETE", f"/api/v1/tasks/{task_id}")).json())

    async def retry(self, task_id: str) -> RetryResult:
        response = await self._request("POST", f"/api/v1/tasks/{task_id}/retry")
        return RetryResult.model_validate(response.json())

    async def list_page(
        self,
        project_id: str,
        *,
        page: int = 1,
        limit: int = 20,
        status: TaskState | str | None = None,
        task_type: str | None = None,
    ) -> TaskPage:
        params = self._list_params(page, limit, status, task_type)
        response = await self._request("GET", f"/api/v1/projects/{project_id}/tasks", params=params)
        return TaskPage.model_validate(response.json())

    async def list_tasks(
        self,
        project_id: str,
        status: TaskState | str | None = None,
        task_type: str | None = None,
        page_size: int = 100,
        *,
        max_items: int | None = None,
    ) -> AsyncIterator[TaskListItem]:
        """See ``TaskServiceClient.list_tasks`` (an async iterator: ``async for task in ...``)."""
        seen: set[str] = set()
        page = 1
        while True:
            result = await self.list_page(
                project_id, page=page, limit=page_size, status=status, task_type=task_type
            )
            for item in result.tasks:
                if item.task_id in seen:
                    continue
                seen.add(item.task_id)
                yield item
                if max_items is not None and len(seen) >= max_items:
                    return
            if not result.tasks or page >= result.pagination.total_pages:
                return
            page += 1

    async def stream(
        self, task_id: str, *, poll_interval: float = 1.0, timeout: float | None = None
    ) -> AsyncIterator[TaskStatus]:
        """See ``TaskServiceClient.stream``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_key: tuple[Any, ...] | None = None
        last: TaskStatus | None = None
        while True:
            events = self._sse_available is not False
            source = (
                self._events(task_id, deadline) if events else self._poll(task_id, poll_interval, deadline)
            )
            async with contextlib.aclosing(source):
                async for status in source:
                    if status.is_terminal and events:
                        status = await self._final_status(status)
                    key = _status_key(status)
                    if key != last_key or status.is_terminal:
                        last_key, last = key, status
                        yield status
                    if status.is_terminal:
                        return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeoutError(task_id, timeout or 0.0, last)
            if self._sse_available is not False:
                await asyncio.sleep(poll_interval if remaining is None else min(poll_interval, remaining))

    async def _final_status(self, event: TaskStatus) -> TaskStatus:
        try:
            return await self.status(event.task_id)
        except TaskServiceError:
            return event

    async def _poll(
        self, task_id: str, poll_interval: float, deadline: float | None
    ) -> AsyncGenerator[TaskStatus, None]:
        while True:
            yield await self.status(task_id)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            await asyncio.sleep(poll_interval if remaining is None else min(poll_interval, remaining))

    async def _events(self, task_id: str, deadline: float | None) -> AsyncGenerator[TaskStatus, None]:
        headers = self._headers({"Accept": "text/event-stream", "Cache-Control": "no-cache"})
        url = self._url(f"/api/v1/tasks/{task_id}/events")
        try:
            async with self._http.stream(
                "GET", url, headers=headers, timeout=self._sse_timeout(deadline)
            ) as response:
                if not response.is_success or not _is_event_stream(response):
                    await response.aread()
                    if _stream_missing(response):
                        self._sse_available = False
                        return
                    if response.status_code in RETRYABLE_STATUS:
                        yield await self.status(task_id)
                        return
                    raise error_from_response(response)
                self._sse_available = True
                parser = _SSEParser()
                async for line in response.aiter_lines():
                    event = parser.feed(line)
                    status = _status_from_event(event) if event is not None else None
                    if status is not None:
                        yield status
                    if deadline is not None and time.monotonic() >= deadline:
                        return
        except httpx.TransportError:  # includes timeouts: a silent stream is reconnected
            if self._sse_available is None:
                yield await self.status(task_id)
            return

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: Callable[[TaskStatus], object | Awaitable[object]] | None = None,
    ) -> TaskStatus:
        """See ``TaskServiceClient.wait``; ``on_progress`` may be a plain function or a coroutine function."""
        final: TaskStatus | None = None
        async for status in self.stream(task_id, poll_interval=poll_interval, timeout=timeout):
            if on_progress is not None:
                outcome = on_progress(status)
                if inspect.isawaitable(outcome):
                    await outcome
            final = status
        if final is None:  # pragma: no cover
            raise TaskServiceError(f"Task {task_id} status stream ended without a final status")
        return _final(final)

    async def submit_and_wait(
        self,
        project_id: str,
        task_type: str,
        task_data: dict[str, Any],
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: Callable[[TaskStatus], object | Awaitable[object]] | None = None,
        **submit_options: Any,
    ) -> TaskStatus:
        submitted = await self.submit(project_id, task_type, task_data, **submit_options)
        return await self.wait(
            submitted.task_id, timeout=timeout, poll_interval=poll_interval, on_progress=on_progress
        )

    async def health(self) -> Health:
        return self._health(await self._request("GET", "/api/v1/health", retry=False, accept=(503,)))

    async def queue_health(self) -> QueueHealth:
        return QueueHealth.model_validate((await self._request("GET", "/api/v1/tasks/health")).json())

    async def metrics(self) -> Metrics:
        return self._metrics(await self._request("GET", "/api/v1/tasks/metrics"))

    async def ping(self) -> bool:
        try:
            return (await self._http.get(self._url("/health"), timeout=self.timeout)).status_code == 200
        except httpx.HTTPError:
            return False
