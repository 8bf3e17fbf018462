"""Seed 003's Socket.IO events with a real python-socketio client against the real stack."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import socketio

from tests.support.stack import API_KEYS, Stack
from tests.support.tasks import submit, wait_status

SEED_PATH = "/ws/ai-tasks"
JWT_SECRET = "socketio-test-jwt-secret-0123456789abcdef"


class Recorder:
    """A connected AsyncClient whose events land in one queue per event name."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: dict[str, asyncio.Queue[Any]] = {}
        for name in ("task:status", "task:failed", "queue:update"):
            self.events[name] = asyncio.Queue()
            self.client.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any) -> None:
            await self.events[name].put(data)

        return record

    async def next(self, name: str, timeout: float = 30) -> Any:
        return await asyncio.wait_for(self.events[name].get(), timeout)

    async def statuses_until(self, task_id: str, final: str, timeout: float = 60) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next("task:status", timeout)
                if event["taskId"] != task_id:
                    continue
                seen.append(event)
                if event["task"]["status"] == final:
                    return seen


async def connect(url: str, path: str = SEED_PATH, **kwargs: Any) -> Recorder:
    recorder = Recorder()
    await recorder.client.connect(url, socketio_path=path, wait_timeout=10, **kwargs)
    return recorder


@pytest.fixture
async def sio(stack: Stack) -> AsyncIterator[Recorder]:
    recorder = await connect(stack.api_url, auth={"apiKey": API_KEYS[0]}, transports=["websocket"])
    yield recorder
    await recorder.client.disconnect()


async def test_task_status_until_completed(sio: Recorder, api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "socket [[sleep=2]]"}, project_id="sio_p")
    ack = await sio.client.call("subscribe:task", task_id, timeout=10)  # seed 003 sends the bare id
    assert ack["success"] is True and ack["taskId"] == task_id
    seen = await sio.statuses_until(task_id, "COMPLETED")
    statuses = [e["task"]["status"] for e in seen]
    assert "PROCESSING" in statuses and statuses[-1] == "COMPLETED"
    assert statuses.index("PROCESSING") < statuses.index("COMPLETED")
    last = seen[-1]
    # Seed 003's shape ({taskId, task}) and the REST stream's fields side by side.
    assert last["task"]["id"] == task_id and last["task"]["projectId"] == "sio_p"
    assert last["task"]["result"]["output"] == "FAKE-LLM: socket [[sleep=2]]"
    assert last["task_id"] == task_id and last["status"] == "completed" and last["progress"] == 1.0
    assert last["timestamp"].endswith("Z")
    # What it says is what Temporal says.
    rest = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
    assert rest["status"] == "completed" and rest["result"] == last["result"]
    assert sio.events["task:failed"].empty()


async def test_task_failed_for_a_failing_task(sio: Recorder, api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "no luck [[status=400]]"})
    ack = await sio.client.call("subscribe:task", {"taskId": task_id}, timeout=10)
    assert ack["success"] is True
    failed = await sio.next("task:failed", timeout=60)
    assert failed["taskId"] == task_id and failed["task"]["status"] == "FAILED"
    assert "HTTP 400" in failed["error"] and failed["task"]["error"] == failed["error"]
    statuses = [e["task"]["status"] for e in await sio.statuses_until(task_id, "FAILED", timeout=5)]
    assert statuses[-1] == "FAILED"
    # Subscribing to a task that already finished answers its final state at once.
    again = await sio.client.call("subscribe:task", task_id, timeout=10)
    assert again["success"] is True and again["status"] == "FAILED"
    assert (await sio.next("task:failed", timeout=10))["taskId"] == task_id


async def test_unknown_task_and_unsubscribe(sio: Recorder, api: httpx.AsyncClient) -> None:
    missing = await sio.client.call("subscribe:task", str(uuid.uuid4()), timeout=10)
    assert missing["success"] is False and missing["error"]["code"] == "task_not_found"
    assert (await sio.client.call("subscribe:task", timeout=10))["error"]["code"] == "validation_error"
    task_id = await submit(api, "test_prompt", {"prompt_template": "quiet [[sleep=2]]"})
    await sio.client.call("subscribe:task", task_id, timeout=10)
    await sio.next("task:status")
    await sio.client.call("unsubscribe:task", task_id, timeout=10)
    await wait_status(api, task_id, "completed")
    await asyncio.sleep(1.5)
    later = []
    while not sio.events["task:status"].empty():
        later.append(sio.events["task:status"].get_nowait())
    assert all(e["task"]["status"] != "COMPLETED" for e in later if e["taskId"] == task_id)


async def test_queue_updates(sio: Recorder) -> None:
    ack = await sio.client.call("subscribe:queue", timeout=20)
    assert ack["success"] is True
    update = await sio.next("queue:update")
    status = update["status"]
    assert {"queuedTasks", "processingTasks", "completedTasks", "queueHealth"} <= set(status)
    queues = {q["name"]: q for q in status["queues"]}
    assert set(queues) == {"default", "cpu_intensive", "gpu_medium", "gpu_heavy"}
    assert queues["default"]["workerCount"] >= 1 and queues["default"]["configuredConcurrency"] == 2
    assert (await sio.client.call("unsubscribe:queue", timeout=10))["success"] is True


async def test_agent_stream_and_default_path(stack: Stack, api: httpx.AsyncClient) -> None:
    """subscribe:agent follows a project's tasks; /socket.io works too, with the key in a header."""
    project = f"sio_agent_{uuid.uuid4().hex[:6]}"
    recorder = await connect(stack.api_url, path="/socket.io", headers={"X-API-Key": API_KEYS[1]})
    try:
        assert (await recorder.client.call("subscribe:agent", project, timeout=10))["success"] is True
        await asyncio.sleep(0.5)
        task_id = await submit(api, "test_prompt", {"prompt_template": "agent work"}, project_id=project)
        statuses = [e["task"]["status"] for e in await recorder.statuses_until(task_id, "COMPLETED")]
        assert statuses[-1] == "COMPLETED"
    finally:
        await recorder.client.disconnect()


async def test_wrong_or_missing_key_is_refused(stack: Stack) -> None:
    for kwargs in ({"auth": {"apiKey": "wrong-key"}}, {}, {"auth": {"token": "not.a.jwt"}}):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(stack.api_url, transports=["websocket"], **kwargs)


@pytest.fixture(scope="module")
def jwt_api_url(stack: Stack) -> Any:
    process, url = stack.start_api("api-jwt-socketio", JWT_SECRET=JWT_SECRET)
    yield url
    process.stop()


async def test_seed_003_token_auth(jwt_api_url: str, api: httpx.AsyncClient) -> None:
    """`io(url, {path: '/ws/ai-tasks', auth: {token}})` exactly as seed 003's client does. The task is
    submitted through another API replica: the events come from Temporal, not from a replica's memory."""
    # A service token sees its whole tenant, tasks made with the tenant's API key included.
    claims = {"sub": "u-sio", "role": "service", "exp": int(time.time()) + 300}
    token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    recorder = await connect(jwt_api_url, auth={"token": token})
    try:
        task_id = await submit(api, "test_prompt", {"prompt_template": "token auth"})
        await recorder.client.emit("subscribe:task", task_id)
        seen = await recorder.statuses_until(task_id, "COMPLETED")
        assert seen[-1]["task"]["status"] == "COMPLETED"
    finally:
        await recorder.client.disconnect()
    forged = jwt.encode({"sub": "u-sio"}, "not-the-secret-0123456789abcdef-0123456789", algorithm="HS256")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(jwt_api_url, auth={"token": forged})
