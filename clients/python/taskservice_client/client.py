"""``TaskServiceClient`` (blocking) and ``AsyncTaskServiceClient`` (asyncio): the same methods, over httpx.

Configuration comes from the arguments, else the environment: ``TASK_SERVICE_URL`` (default
``http://localhost:8001``) and ``TASK_SERVICE_API_KEY`` (falling back to ``CELERY_TASK_API_KEY``, the name
seed 001's client reads).

429 and 503 answers are retried automatically, honouring ``Retry-After``: at most ``max_retries`` times,
and never when the server asks for a wait longer than ``max_retry_wait`` seconds (the error is raised
instead, with its ``retry_after``). ``max_retries=0`` turns this off.

Both clients run the same operations (``operations``, ``following``); each only brings its transport.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Self

import httpx

from taskservice_client import following, operations
from taskservice_client.core import ClientCore
from taskservice_client.models import (
    CancelResult,
    Health,
    Metrics,
    QueueHealth,
    Quote,
    RetryResult,
    SubmitResult,
    TaskListItem,
    TaskPage,
    TaskState,
    TaskStatus,
    WebhookSecret,
)
from taskservice_client.pipelines import AsyncPipelines, Pipelines
from taskservice_client.transport import AsyncTransport, BlockingTransport
from taskservice_client.version import __version__

__all__ = ["AsyncTaskServiceClient", "ProgressCallback", "TaskServiceClient", "__version__"]

ProgressCallback = Callable[[TaskStatus], object]
"""``on_progress`` of ``wait()``: called with each new status (the async client also awaits coroutines)."""


class TaskServiceClient(ClientCore):
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
        use_long_poll: bool = True,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, max_retry_wait, use_sse, use_long_poll)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._transport = BlockingTransport(self._http)
        self.pipelines = Pipelines(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

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
        cache: str | None = None,
    ) -> SubmitResult:
        """Submit a task. With ``idempotency_key``, repeating the call returns the same task
        (``result.replayed`` is then True); the same key with another body raises ``ConflictError``.
        ``cache``: ``auto`` (the server's default), ``reuse``, ``refresh`` or ``off`` (the render cache)."""
        submission = operations.submit(
            self, project_id, task_type, task_data, priority, callback_url, metadata, idempotency_key, cache
        )
        return self._transport.run(submission)

    def quote(self, project_id: str, task_type: str, task_data: dict[str, Any], **options: Any) -> Quote:
        """When a task would start and finish if submitted now, starting nothing (a read, not a submit).
        ``deadline_s=…, strict=True``: a deadline it would miss raises (422 ``deadline_unreachable``)."""
        return self._transport.run(operations.quote(self, project_id, task_type, task_data, **options))

    def status(self, task_id: str) -> TaskStatus:
        """The task's current status, progress, step, result or error."""
        return self._transport.run(operations.status(self, task_id))

    def cancel(self, task_id: str) -> CancelResult:
        """Cancel a queued or running task (cancelling a cancelled task is fine; a finished one raises
        ``InvalidTaskStateError``)."""
        return self._transport.run(operations.cancel(self, task_id))

    def retry(self, task_id: str) -> RetryResult:
        """Run a finished task again as a new task (``result.new_task_id``)."""
        return self._transport.run(operations.retry(self, task_id))

    def webhook_secret(self) -> WebhookSecret:
        """Your tenant's webhook secret: verify deliveries with ``webhooks.verify(..., secret.secrets)``."""
        return self._transport.run(operations.webhook_secret(self))

    def rotate_webhook_secret(self) -> WebhookSecret:
        """A new webhook secret; deliveries carry the old one's signature too until the answer's
        ``previous_valid_until``."""
        return self._transport.run(operations.rotate_webhook_secret(self))

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
        return self._transport.run(operations.list_page(self, project_id, page, limit, status, task_type))

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
        listing = operations.list_tasks(self, project_id, status, task_type, page_size, max_items)
        yield from self._transport.iterate(listing)

    def stream(
        self, task_id: str, *, poll_interval: float = 1.0, timeout: float | None = None
    ) -> Iterator[TaskStatus]:
        """Each new status of the task until it ends (the terminal status is the last item).

        Waits on ``/status?wait=`` with the last answer's ``ETag`` (the server answers when the task changes,
        and at least every ``poll_interval`` seconds with its progress); against a server without waiting
        reads, its event stream (``GET /api/v1/tasks/{id}/events``), else polls ``/status`` every
        ``poll_interval`` seconds. Raises ``WaitTimeoutError`` after ``timeout`` seconds (None: no limit)."""
        yield from self._transport.iterate(following.follow(self, task_id, poll_interval, timeout))

    def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: ProgressCallback | None = None,
    ) -> TaskStatus:
        """Block until the task ends and return its final status. ``on_progress`` gets every new status.

        Without ``on_progress`` it waits on the server for up to a minute at a time (one request per change
        of status); with it, at most ``poll_interval`` seconds at a time, so that progress shows.

        Raises ``TaskFailedError`` / ``TaskCancelledError`` (with ``.status``) when the task ends so, and
        ``WaitTimeoutError`` after ``timeout`` seconds (None: wait forever)."""
        live = on_progress is not None
        return self._transport.run(following.wait(self, task_id, timeout, poll_interval, live), on_progress)

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
        operation = following.submit_and_wait(
            self,
            project_id,
            task_type,
            task_data,
            timeout,
            poll_interval,
            submit_options,
            on_progress is not None,
        )
        return self._transport.run(operation, on_progress)

    # -- service ---------------------------------------------------------------------------------------

    def health(self) -> Health:
        """Service health (``status`` healthy / degraded / unhealthy; unhealthy is returned, not raised)."""
        return self._transport.run(operations.health(self))

    def queue_health(self) -> QueueHealth:
        """The seed's task-queue alerts (failure rate, long-running tasks, worker memory)."""
        return self._transport.run(operations.queue_health(self))

    def metrics(self) -> Metrics:
        """Cumulative task counters, success/failure rates, average durations per task type."""
        return self._transport.run(operations.metrics(self))

    def ping(self) -> bool:
        """True when the API answers its liveness probe (needs no key)."""
        return self._transport.run(operations.ping(self))


class AsyncTaskServiceClient(ClientCore):
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
        use_long_poll: bool = True,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, max_retry_wait, use_sse, use_long_poll)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._transport = AsyncTransport(self._http)
        self.pipelines = AsyncPipelines(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

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
        cache: str | None = None,
    ) -> SubmitResult:
        """See ``TaskServiceClient.submit``."""
        submission = operations.submit(
            self, project_id, task_type, task_data, priority, callback_url, metadata, idempotency_key, cache
        )
        return await self._transport.run(submission)

    async def quote(
        self, project_id: str, task_type: str, task_data: dict[str, Any], **options: Any
    ) -> Quote:
        """See ``TaskServiceClient.quote``."""
        return await self._transport.run(operations.quote(self, project_id, task_type, task_data, **options))

    async def status(self, task_id: str) -> TaskStatus:
        return await self._transport.run(operations.status(self, task_id))

    async def cancel(self, task_id: str) -> CancelResult:
        return await self._transport.run(operations.cancel(self, task_id))

    async def retry(self, task_id: str) -> RetryResult:
        return await self._transport.run(operations.retry(self, task_id))

    async def webhook_secret(self) -> WebhookSecret:
        return await self._transport.run(operations.webhook_secret(self))

    async def rotate_webhook_secret(self) -> WebhookSecret:
        return await self._transport.run(operations.rotate_webhook_secret(self))

    async def list_page(
        self,
        project_id: str,
        *,
        page: int = 1,
        limit: int = 20,
        status: TaskState | str | None = None,
        task_type: str | None = None,
    ) -> TaskPage:
        return await self._transport.run(
            operations.list_page(self, project_id, page, limit, status, task_type)
        )

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
        listing = operations.list_tasks(self, project_id, status, task_type, page_size, max_items)
        async with contextlib.aclosing(self._transport.iterate(listing)) as items:
            async for item in items:
                yield item

    async def stream(
        self, task_id: str, *, poll_interval: float = 1.0, timeout: float | None = None
    ) -> AsyncIterator[TaskStatus]:
        """See ``TaskServiceClient.stream``."""
        following_ = following.follow(self, task_id, poll_interval, timeout)
        async with contextlib.aclosing(self._transport.iterate(following_)) as statuses:
            async for status in statuses:
                yield status

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: Callable[[TaskStatus], object | Awaitable[object]] | None = None,
    ) -> TaskStatus:
        """See ``TaskServiceClient.wait``; ``on_progress`` may be a plain function or a coroutine function."""
        live = on_progress is not None
        operation = following.wait(self, task_id, timeout, poll_interval, live)
        return await self._transport.run(operation, on_progress)

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
        operation = following.submit_and_wait(
            self,
            project_id,
            task_type,
            task_data,
            timeout,
            poll_interval,
            submit_options,
            on_progress is not None,
        )
        return await self._transport.run(operation, on_progress)

    async def health(self) -> Health:
        return await self._transport.run(operations.health(self))

    async def queue_health(self) -> QueueHealth:
        return await self._transport.run(operations.queue_health(self))

    async def metrics(self) -> Metrics:
        return await self._transport.run(operations.metrics(self))

    async def ping(self) -> bool:
        return await self._transport.run(operations.ping(self))
