"""The Python SDK (taskservice_client), sync and async, end to end against the real stack."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from taskservice import system
from taskservice_client import (
    AsyncTaskServiceClient,
    AuthenticationError,
    ConflictError,
    InvalidTaskStateError,
    RateLimitedError,
    ServiceConnectionError,
    TaskCancelledError,
    TaskFailedError,
    TaskNotFoundError,
    TaskServiceClient,
    TaskServiceError,
    TaskState,
    TaskStatus,
    ValidationError,
    WaitTimeoutError,
)
from tests.support.stack import API_KEYS, OTHER_KEYS, TENANT_WEBHOOK_SECRET, Replica, Stack
from tests.support.tasks import settled_metrics


def _project() -> str:
    return f"sdk_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(stack: Stack) -> Iterator[TaskServiceClient]:
    with TaskServiceClient(stack.api_url, API_KEYS[0]) as tasks:
        yield tasks


# -- submit, wait, progress ------------------------------------------------------------------------------


def test_sync_submit_and_wait_reports_progress(client: TaskServiceClient) -> None:
    submitted = client.submit(
        _project(),
        "test_prompt",
        {"prompt_template": "Describe {{who}} [[sleep=1.5]]", "test_parameters": {"who": "a detective"}},
        priority=1,
        metadata={"user_id": "u1"},
    )
    assert submitted.status is TaskState.QUEUED
    assert submitted.task_type == "test_prompt" and not submitted.replayed
    seen: list[TaskStatus] = []
    done = client.wait(submitted.task_id, timeout=60, poll_interval=0.1, on_progress=seen.append)

    assert done.status is TaskState.COMPLETED and done.succeeded and done.is_terminal
    assert done.result is not None
    assert done.result["output"] == "FAKE-LLM: " + done.result["rendered_prompt"]
    assert "a detective" in done.result["rendered_prompt"]
    assert done.progress == 1.0 and done.completed_at is not None
    # The callback saw the task running, with its step and a partial progress, then the final status.
    assert seen[-1] == done
    running = [s for s in seen if s.status is TaskState.PROCESSING]
    assert any(s.current_step == "calling_llm" and 0 < s.progress < 1 for s in running), seen
    # Only changes are reported (any field: a queued task's attempt turns 1 once its activity is scheduled),
    # and progress never goes back.
    assert all(before != after for before, after in itertools.pairwise(seen)), seen
    assert [s.progress for s in seen] == sorted(s.progress for s in seen)


async def test_async_submit_and_wait_with_coroutine_callback(stack: Stack) -> None:
    async with AsyncTaskServiceClient(stack.api_url, API_KEYS[1]) as tasks:
        seen: list[str] = []

        async def on_progress(status: TaskStatus) -> None:
            seen.append(status.status.value)

        done = await tasks.submit_and_wait(
            _project(),
            "test_prompt",
            {"prompt_template": "async hello"},
            poll_interval=0.1,
            on_progress=on_progress,
        )
        assert done.status is TaskState.COMPLETED
        assert done.result is not None and done.result["output"] == "FAKE-LLM: async hello"
        assert seen[-1] == "completed"
        again = await tasks.status(done.task_id)
        assert again.task_id == done.task_id and again.status is TaskState.COMPLETED


def test_failed_task_raises_task_failed_error_with_final_status(client: TaskServiceClient) -> None:
    submitted = client.submit(_project(), "test_prompt", {"prompt_template": "doomed [[status=400]]"})
    with pytest.raises(TaskFailedError) as caught:
        client.wait(submitted.task_id, timeout=60, poll_interval=0.1)
    final = caught.value.status
    assert final.task_id == submitted.task_id and final.status is TaskState.FAILED
    assert final.error and "UpstreamClientError" in final.error
    assert final.error in str(caught.value)
    assert isinstance(caught.value, TaskServiceError)


async def test_async_failed_task_raises(stack: Stack) -> None:
    async with AsyncTaskServiceClient(stack.api_url, API_KEYS[0]) as tasks:
        submitted = await tasks.submit(_project(), "test_prompt", {"prompt_template": "bad [[status=400]]"})
        with pytest.raises(TaskFailedError) as caught:
            await tasks.wait(submitted.task_id, timeout=60, poll_interval=0.1)
        assert caught.value.status.status is TaskState.FAILED


def test_cancel_a_slow_task(client: TaskServiceClient) -> None:
    submitted = client.submit(_project(), "test_prompt", {"prompt_template": "very slow [[sleep=30]]"})
    for status in client.stream(submitted.task_id, poll_interval=0.1, timeout=30):
        if status.status is TaskState.PROCESSING:
            break
    cancelled = client.cancel(submitted.task_id)
    assert cancelled.status is TaskState.CANCELLED
    assert cancelled.previous_state is TaskState.PROCESSING
    with pytest.raises(TaskCancelledError) as caught:
        client.wait(submitted.task_id, timeout=30, poll_interval=0.1)
    assert caught.value.status.status is TaskState.CANCELLED
    # Cancelling again is fine; a cancelled task cannot be cancelled into anything else.
    assert client.cancel(submitted.task_id).previous_state is TaskState.CANCELLED


def test_cancel_completed_and_retry_unfinished_are_invalid_state(client: TaskServiceClient) -> None:
    done = client.submit_and_wait(_project(), "test_prompt", {"prompt_template": "quick"}, poll_interval=0.1)
    with pytest.raises(InvalidTaskStateError) as caught:
        client.cancel(done.task_id)
    assert caught.value.status_code == 400 and caught.value.error == "invalid_task_state"
    assert isinstance(caught.value, ValidationError)

    slow = client.submit(_project(), "test_prompt", {"prompt_template": "not yet [[sleep=20]]"})
    try:
        with pytest.raises(InvalidTaskStateError):
            client.retry(slow.task_id)
    finally:
        client.cancel(slow.task_id)


async def test_async_cancel_and_retry(stack: Stack) -> None:
    async with AsyncTaskServiceClient(stack.api_url, API_KEYS[0]) as tasks:
        submitted = await tasks.submit(
            _project(), "test_prompt", {"prompt_template": "async slow [[sleep=30]]"}
        )
        result = await tasks.cancel(submitted.task_id)
        assert result.status is TaskState.CANCELLED
        with pytest.raises(TaskCancelledError):
            await tasks.wait(submitted.task_id, timeout=30, poll_interval=0.1)
        retried = await tasks.retry(submitted.task_id)
        assert retried.original_task_id == submitted.task_id and retried.new_task_id != submitted.task_id
        # Same inputs: the retry is slow too; cancel it.
        await tasks.cancel(retried.new_task_id)


def test_webhook_secret_is_the_tenants_own(client: TaskServiceClient) -> None:
    secret = client.webhook_secret()
    assert secret.tenant == "default" and secret.secret == TENANT_WEBHOOK_SECRET
    assert secret.secrets == [TENANT_WEBHOOK_SECRET]


async def test_async_webhook_secret_rotation_lists_both_secrets(stack: Stack) -> None:
    """Rotates tenant acme's secret (its deliveries then carry two signatures; tests read its secret anew)."""
    async with AsyncTaskServiceClient(stack.api_url, OTHER_KEYS[0]) as tasks:
        before = await tasks.webhook_secret()
        rotated = await tasks.rotate_webhook_secret()
        assert rotated.generation == before.generation + 1
        assert rotated.secrets == [rotated.secret, before.secret]
        assert rotated.previous_valid_until is not None


def test_retry_runs_the_same_inputs_as_a_new_task(client: TaskServiceClient) -> None:
    original = client.submit_and_wait(
        _project(), "test_prompt", {"prompt_template": "again please"}, poll_interval=0.1
    )
    retried = client.retry(original.task_id)
    assert retried.original_task_id == original.task_id
    assert retried.new_task_id != original.task_id
    assert retried.status in (TaskState.QUEUED, TaskState.PROCESSING, TaskState.COMPLETED)
    again = client.wait(retried.new_task_id, timeout=60, poll_interval=0.1)
    assert again.retry_of == original.task_id
    assert again.result is not None and again.result["output"] == "FAKE-LLM: again please"


def test_wait_timeout_carries_the_last_status(client: TaskServiceClient) -> None:
    submitted = client.submit(_project(), "test_prompt", {"prompt_template": "too slow [[sleep=20]]"})
    try:
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as caught:
            client.wait(submitted.task_id, timeout=1.0, poll_interval=0.2)
        assert time.monotonic() - started < 5
        assert caught.value.task_id == submitted.task_id and caught.value.timeout == 1.0
        assert caught.value.last_status is not None
        assert not caught.value.last_status.is_terminal
    finally:
        client.cancel(submitted.task_id)


# -- listing -------------------------------------------------------------------------------------------


def _wait_listed(client: TaskServiceClient, project: str, count: int) -> None:
    """Temporal visibility is eventually consistent: wait until the listing has caught up."""
    deadline = time.monotonic() + 20
    while client.list_page(project, status="completed", limit=1).pagination.total < count:
        assert time.monotonic() < deadline, "visibility did not catch up"
        time.sleep(0.2)


def test_list_tasks_pages_through_everything(client: TaskServiceClient) -> None:
    project = _project()
    ids = [client.submit(project, "test_prompt", {"prompt_template": f"item {i}"}).task_id for i in range(5)]
    for task_id in ids:
        client.wait(task_id, timeout=60, poll_interval=0.1)
    _wait_listed(client, project, 5)

    everything = list(client.list_tasks(project, page_size=2))  # 3 pages
    assert [t.task_id for t in everything] == list(reversed(ids))
    assert all(t.status is TaskState.COMPLETED and t.project_id == project for t in everything)
    assert everything[0].task_data["prompt_template"] == "item 4"
    assert everything[0].result is not None

    assert len(list(client.list_tasks(project, status=TaskState.COMPLETED, page_size=3))) == 5
    assert list(client.list_tasks(project, status="failed")) == []
    assert list(client.list_tasks(project, task_type="evaluate_department")) == []
    assert [t.task_id for t in client.list_tasks(project, page_size=2, max_items=3)] == list(reversed(ids))[
        :3
    ]

    page = client.list_page(project, page=2, limit=2)
    assert page.pagination.total == 5 and page.pagination.total_pages == 3
    assert [t.task_id for t in page.tasks] == [ids[2], ids[1]]
    with pytest.raises(ValueError):
        list(client.list_tasks(project, page_size=101))


async def test_async_list_tasks_pages_through_everything(stack: Stack) -> None:
    project = _project()
    async with AsyncTaskServiceClient(stack.api_url, API_KEYS[0]) as tasks:
        ids = [
            (await tasks.submit(project, "test_prompt", {"prompt_template": f"a{i}"})).task_id
            for i in range(3)
        ]
        for task_id in ids:
            await tasks.wait(task_id, timeout=60, poll_interval=0.1)
        listed: list[str] = []
        deadline = time.monotonic() + 20
        while len(listed) < 3 and time.monotonic() < deadline:
            listed = [t.task_id async for t in tasks.list_tasks(project, status="completed", page_size=1)]
        assert listed == list(reversed(ids))


# -- errors -------------------------------------------------------------------------------------------


def test_errors_map_to_exceptions(client: TaskServiceClient, stack: Stack) -> None:
    with pytest.raises(TaskNotFoundError) as not_found:
        client.status("no-such-task")
    assert not_found.value.status_code == 404 and not_found.value.error == "task_not_found"
    assert not_found.value.message == "Task with ID 'no-such-task' not found"
    with pytest.raises(TaskNotFoundError):
        client.cancel("00000000-0000-4000-8000-000000000000")
    with pytest.raises(TaskNotFoundError):
        client.retry("no-such-task")

    with pytest.raises(ValidationError) as invalid:
        client.submit(_project(), "test_prompt", {"test_parameters": {}})
    assert invalid.value.status_code == 400 and invalid.value.error == "validation_error"
    assert "task_data.prompt_template" in invalid.value.details
    assert "task_data.prompt_template" in str(invalid.value)

    with pytest.raises(ValidationError) as unknown_type:
        client.submit(_project(), "make_coffee", {})
    assert "task_type" in unknown_type.value.details

    with pytest.raises(ValidationError) as bad_priority:
        client.submit(_project(), "test_prompt", {"prompt_template": "x"}, priority=7)
    assert "priority" in bad_priority.value.details

    with TaskServiceClient(stack.api_url, "wrong-key") as wrong:
        with pytest.raises(AuthenticationError) as denied:
            wrong.status("anything")
    assert denied.value.status_code == 401 and denied.value.error == "authentication_failed"

    with TaskServiceClient("http://127.0.0.1:9", API_KEYS[0], max_retries=0) as nowhere:
        with pytest.raises(ServiceConnectionError):
            nowhere.status("x")
        assert nowhere.ping() is False


async def test_async_errors_map_to_exceptions(stack: Stack) -> None:
    async with AsyncTaskServiceClient(stack.api_url, "wrong-key") as wrong:
        with pytest.raises(AuthenticationError):
            await wrong.metrics()
    async with AsyncTaskServiceClient(stack.api_url, API_KEYS[0]) as tasks:
        with pytest.raises(TaskNotFoundError):
            await tasks.status("no-such-task")
        with pytest.raises(ValidationError) as invalid:
            await tasks.submit(_project(), "test_prompt", {"prompt_template": "{{missing}}"})
        assert any(path.startswith("task_data") for path in invalid.value.details)


def test_idempotency_key_returns_the_same_task(client: TaskServiceClient) -> None:
    project, key = _project(), f"sdk-{uuid.uuid4()}"
    first = client.submit(project, "test_prompt", {"prompt_template": "once"}, idempotency_key=key)
    second = client.submit(project, "test_prompt", {"prompt_template": "once"}, idempotency_key=key)
    assert second.task_id == first.task_id
    assert not first.replayed and second.replayed
    with pytest.raises(ConflictError) as conflict:
        client.submit(project, "test_prompt", {"prompt_template": "twice"}, idempotency_key=key)
    assert conflict.value.status_code == 422 and conflict.value.error == "idempotency_key_reused"
    client.wait(first.task_id, timeout=60, poll_interval=0.1)


def test_rate_limits_are_retried_honouring_retry_after(stack: Stack, client: TaskServiceClient) -> None:
    task_id = client.submit(_project(), "test_prompt", {"prompt_template": "limited"}).task_id
    # One token every 2 s: once the bucket is empty, three more reads need at least 4 s of refill, less
    # whatever fraction of a token the last refused read left (under 2 s of it).
    process, url = stack.start_api("api-sdk-ratelimit", RATE_LIMIT_STATUS_PER_MIN="30")
    try:
        with TaskServiceClient(url, API_KEYS[0], max_retries=0) as strict:
            with pytest.raises(RateLimitedError) as limited:
                for _ in range(200):
                    strict.status(task_id)
            assert limited.value.status_code == 429 and limited.value.retry_after is not None
            assert 1 <= limited.value.retry_after <= 5
        with TaskServiceClient(url, API_KEYS[0], max_retries=3, max_retry_wait=5) as patient:
            started = time.monotonic()
            for _ in range(3):
                assert patient.status(task_id).task_id == task_id
            assert time.monotonic() - started >= 2.0  # it waited for the bucket to refill
        with TaskServiceClient(url, API_KEYS[0], max_retries=3, max_retry_wait=0.1) as hasty:
            with pytest.raises(RateLimitedError):  # the server asks for longer than we may wait
                for _ in range(5):
                    hasty.status(task_id)
    finally:
        process.stop()


# -- configuration, health, metrics ---------------------------------------------------------------------


def test_configuration_from_the_environment(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_SERVICE_URL", stack.api_url + "/")
    monkeypatch.delenv("TASK_SERVICE_API_KEY", raising=False)
    monkeypatch.setenv("CELERY_TASK_API_KEY", API_KEYS[1])
    with TaskServiceClient() as tasks:
        assert tasks.base_url == stack.api_url
        assert tasks.health().temporal_status == "connected"
    monkeypatch.setenv("TASK_SERVICE_API_KEY", "wrong-key")  # takes precedence over CELERY_TASK_API_KEY
    with TaskServiceClient() as tasks, pytest.raises(AuthenticationError):
        tasks.metrics()


async def test_health_metrics_and_alerts(counting: Replica, counting_temporal: Client) -> None:
    """Against the counting namespace's replica, where only this test's task finishes meanwhile."""
    with TaskServiceClient(counting.url, API_KEYS[0]) as client:
        assert client.ping() is True
        health = client.health()
        assert health.status == "healthy" and health.is_healthy
        assert health.worker_count == 1  # the replica's one worker
        assert set(health.queue_sizes) == {"gpu_heavy", "gpu_medium", "cpu_intensive", "default"}
        assert 0 <= health.system_load.cpu_percent <= 100 and 0 < health.system_load.memory_percent <= 100
        assert len(health.system_load.gpu_utilization) == len(system.gpu_utilization())

        async with counting.client() as rest:
            before = await settled_metrics(rest, counting_temporal)
            client.submit_and_wait(
                _project(), "test_prompt", {"prompt_template": "count me"}, poll_interval=0.1
            )
            after = await settled_metrics(rest, counting_temporal)
        metrics = client.metrics()
        assert metrics.total_tasks == before["total_tasks"] + 1 == after["total_tasks"]
        assert metrics.completed_tasks == before["completed_tasks"] + 1 == after["completed_tasks"]
        assert metrics.timestamp is not None
        assert metrics.average_durations == after["average_durations"]
        assert metrics.average_durations["test_prompt"] > 0

        queue = client.queue_health()
        assert queue.status in {"healthy", "warning", "critical"}
        assert queue.metrics["total_tasks"] == after["total_tasks"]


async def test_async_health_and_metrics(counting: Replica, counting_temporal: Client) -> None:
    async with AsyncTaskServiceClient(counting.url, API_KEYS[0]) as tasks, counting.client() as rest:
        assert await tasks.ping()
        assert (await tasks.health()).temporal_status == "connected"
        settled = await settled_metrics(rest, counting_temporal)
        metrics = await tasks.metrics()
        assert (metrics.total_tasks, metrics.completed_tasks, metrics.failed_tasks) == (
            settled["total_tasks"],
            settled["completed_tasks"],
            settled["failed_tasks"],
        )
        assert (await tasks.queue_health()).metrics["total_tasks"] == settled["total_tasks"]


# -- stream(): Server-Sent Events when the server has them, else polling ----------------------------------


class _EventRelay:
    """A real HTTP server in front of the API that forwards every request, except the task event stream
    (``GET /api/v1/tasks/{id}/events``): with ``events=True`` it serves one itself (text/event-stream,
    relaying the API's status as it changes), with ``events=False`` it answers 404 like a server that has
    no such route. Either way independent of whether the API behind it has an event stream. With
    ``waits=False`` it is a server without waiting reads: ``/status`` is forwarded without its query and
    conditional headers, and answered without an ``ETag``."""

    def __init__(self, api_url: str, *, events: bool, waits: bool = True) -> None:
        self.api_url = api_url
        self.paths: list[str] = []
        self.waits = waits
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                relay.paths.append(self.path)
                if self.path.startswith("/api/v1/tasks/") and self.path.endswith("/events"):
                    if events:
                        relay.events(self)
                    else:
                        relay.reply(self, 404, b'{"detail":"Not Found"}')
                else:
                    relay.forward(self, "GET")

            def do_POST(self) -> None:
                relay.paths.append(self.path)
                relay.forward(self, "POST")

            def do_DELETE(self) -> None:
                relay.paths.append(self.path)
                relay.forward(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def count(self, suffix: str) -> int:
        return sum(1 for p in self.paths if p.endswith(suffix))

    @staticmethod
    def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        dropped = {"host", "content-length"}
        dropped_answer = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        path = handler.path
        if not self.waits and "/status" in path:
            path, dropped, dropped_answer = (
                path.split("?")[0],
                dropped | {"if-none-match"},
                dropped_answer | {"etag"},
            )
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in dropped}
        response = httpx.request(method, self.api_url + path, content=body, headers=headers, timeout=90)
        handler.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in dropped_answer:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(response.content)))
        handler.end_headers()
        handler.wfile.write(response.content)

    def events(self, handler: BaseHTTPRequestHandler) -> None:
        status_path = handler.path.removesuffix("/events") + "/status"
        headers = {"X-API-Key": handler.headers.get("X-API-Key", "")}
        first = httpx.get(self.api_url + status_path, headers=headers, timeout=30)
        if first.status_code != 200:  # unknown task, wrong key: the API's own error
            self.reply(handler, first.status_code, first.content)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        handler.wfile.write(b"retry: 500\n: connected\n\n")
        last = None
        body = first.json()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if body != last:
                # Events may carry fewer fields than /status: the SDK reads the final record itself.
                data = json.dumps({k: v for k, v in body.items() if k not in {"processing_time", "retry_of"}})
                handler.wfile.write(f"event: task\nid: {time.monotonic()}\ndata: {data}\n\n".encode())
                handler.wfile.flush()
                last = body
            if body["status"] in {"completed", "failed", "cancelled"}:
                handler.wfile.write(b"event: end\ndata: {}\n\n")
                return
            handler.wfile.write(b": keep-alive\n\n")
            time.sleep(0.1)
            body = httpx.get(self.api_url + status_path, headers=headers, timeout=30).json()

    def __enter__(self) -> _EventRelay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_stream_uses_server_sent_events_when_the_server_has_them(stack: Stack) -> None:
    with (
        _EventRelay(stack.api_url, events=True, waits=False) as relay,
        TaskServiceClient(relay.url, API_KEYS[0], use_long_poll=False) as tasks,
    ):
        submitted = tasks.submit(_project(), "test_prompt", {"prompt_template": "streamed [[sleep=1.5]]"})
        seen = list(tasks.stream(submitted.task_id, poll_interval=5.0, timeout=60))
        assert seen[-1].status is TaskState.COMPLETED
        assert seen[-1].processing_time is not None  # the full final record, not just the last event
        assert any(s.status is TaskState.PROCESSING and s.current_step == "calling_llm" for s in seen)
        # Progress came over the event stream; /status was read once, for the final record.
        assert relay.count(f"/{submitted.task_id}/events") == 1
        assert relay.count("/status") == 1

        retried = tasks.retry(submitted.task_id)
        done = tasks.wait(retried.new_task_id, timeout=60)
        assert done.status is TaskState.COMPLETED and done.retry_of == submitted.task_id
        with pytest.raises(TaskNotFoundError):  # a 404 for the task is not "no event stream"
            list(tasks.stream("no-such-task", timeout=5))


async def test_async_stream_uses_server_sent_events(stack: Stack) -> None:
    with _EventRelay(stack.api_url, events=True, waits=False) as relay:
        async with AsyncTaskServiceClient(relay.url, API_KEYS[0], use_long_poll=False) as tasks:
            submitted = await tasks.submit(_project(), "test_prompt", {"prompt_template": "async streamed"})
            seen = [s async for s in tasks.stream(submitted.task_id, poll_interval=5.0, timeout=60)]
            assert seen[-1].status is TaskState.COMPLETED and seen[-1].processing_time is not None
            assert relay.count("/events") == 1 and relay.count("/status") == 1
            bad = await tasks.submit(_project(), "test_prompt", {"prompt_template": "x [[status=400]]"})
            with pytest.raises(TaskFailedError) as caught:
                await tasks.wait(bad.task_id, timeout=60)
            assert caught.value.status.error and "UpstreamClientError" in caught.value.status.error


def test_stream_falls_back_to_polling_without_an_event_stream(stack: Stack) -> None:
    with (
        _EventRelay(stack.api_url, events=False, waits=False) as relay,
        TaskServiceClient(relay.url, API_KEYS[0], use_long_poll=False) as tasks,
    ):
        submitted = tasks.submit(_project(), "test_prompt", {"prompt_template": "polled [[sleep=1]]"})
        seen = list(tasks.stream(submitted.task_id, poll_interval=0.1, timeout=60))
        assert seen[-1].status is TaskState.COMPLETED
        assert [s.status for s in seen].count(TaskState.COMPLETED) == 1
        assert relay.count("/events") == 1 and relay.count("/status") >= 2
        # The client remembers that this server has no event stream.
        assert tasks.wait(submitted.task_id, timeout=10).status is TaskState.COMPLETED
        assert relay.count("/events") == 1
        with pytest.raises(TaskNotFoundError):
            list(tasks.stream("no-such-task", timeout=5))


async def test_async_stream_falls_back_to_polling(stack: Stack) -> None:
    with _EventRelay(stack.api_url, events=False, waits=False) as relay:
        async with AsyncTaskServiceClient(relay.url, API_KEYS[0], use_long_poll=False) as tasks:
            submitted = await tasks.submit(_project(), "test_prompt", {"prompt_template": "polled async"})
            seen = [s async for s in tasks.stream(submitted.task_id, poll_interval=0.1, timeout=60)]
            assert seen[-1].status is TaskState.COMPLETED
            assert relay.count("/events") == 1 and relay.count("/status") >= 1


def test_stream_against_the_api_itself(client: TaskServiceClient) -> None:
    """Whatever the API offers (event stream or not), stream() and wait() see the task through."""
    submitted = client.submit(_project(), "test_prompt", {"prompt_template": "direct [[sleep=1]]"})
    seen = list(client.stream(submitted.task_id, poll_interval=0.1, timeout=60))
    assert seen[-1].status is TaskState.COMPLETED and seen[-1].processing_time is not None
    assert any(s.status is TaskState.PROCESSING for s in seen)
    with pytest.raises(TaskNotFoundError):
        list(client.stream("no-such-task", timeout=5))


# -- waiting reads (/status?wait=) by default; an older server without them is detected -------------------


def _status_reads(relay: _EventRelay, task_id: str) -> list[str]:
    return [p for p in relay.paths if f"/{task_id}/status" in p]


def test_wait_and_stream_wait_on_the_server(stack: Stack) -> None:
    with _EventRelay(stack.api_url, events=True) as relay, TaskServiceClient(relay.url, API_KEYS[0]) as tasks:
        submitted = tasks.submit(_project(), "test_prompt", {"prompt_template": "waited [[sleep=2]]"})
        done = tasks.wait(submitted.task_id, timeout=60)
        assert done.status is TaskState.COMPLETED and done.processing_time is not None
        reads = _status_reads(relay, submitted.task_id)
        # The current status, then one waiting read per change (queued → processing → completed).
        assert 2 <= len(reads) <= 4, reads
        assert all("wait=" in p for p in reads) and relay.count("/events") == 0

        streamed = tasks.submit(_project(), "test_prompt", {"prompt_template": "waited live [[sleep=2]]"})
        seen = list(tasks.stream(streamed.task_id, poll_interval=0.5, timeout=60))
        assert seen[-1].status is TaskState.COMPLETED
        assert any(s.status is TaskState.PROCESSING and s.current_step == "calling_llm" for s in seen)
        # Live: each read waits at most poll_interval, so progress shows: a few reads a second, no more.
        assert len(_status_reads(relay, streamed.task_id)) <= 12
        assert relay.count("/events") == 0


async def test_async_wait_waits_on_the_server(stack: Stack) -> None:
    with _EventRelay(stack.api_url, events=True) as relay:
        async with AsyncTaskServiceClient(relay.url, API_KEYS[0]) as tasks:
            submitted = await tasks.submit(_project(), "test_prompt", {"prompt_template": "async waited"})
            done = await tasks.wait(submitted.task_id, timeout=60)
            assert done.status is TaskState.COMPLETED
            assert 1 <= len(_status_reads(relay, submitted.task_id)) <= 4
            assert relay.count("/events") == 0


def test_wait_falls_back_against_a_server_without_waiting_reads(stack: Stack) -> None:
    with (
        _EventRelay(stack.api_url, events=False, waits=False) as relay,
        TaskServiceClient(relay.url, API_KEYS[0]) as tasks,
    ):
        submitted = tasks.submit(_project(), "test_prompt", {"prompt_template": "old server [[sleep=1]]"})
        done = tasks.wait(submitted.task_id, timeout=60, poll_interval=0.1)
        assert done.status is TaskState.COMPLETED
        # One read answered without an ETag, then the event stream (absent here), then polling.
        assert relay.count("/events") == 1
        assert len(_status_reads(relay, submitted.task_id)) >= 3
        # The client remembers that this server does not wait.
        before = len(relay.paths)
        assert tasks.wait(submitted.task_id, timeout=10).status is TaskState.COMPLETED
        assert len(relay.paths) == before + 1
