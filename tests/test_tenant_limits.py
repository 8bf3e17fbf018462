"""What a tenant may spend, per tenant and in proportion to the work: a batch of N costs N submit tokens, a
deep listing costs more read tokens than page 1, and at most MAX_STREAMS_PER_TENANT streams are open at once.

Each test runs an API replica of its own in the namespace without workers (tasks stay queued, streams of them
never end), so what is measured is the API's accounting alone.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from tests.support.stack import API_KEYS, EMPTY_NAMESPACE, OTHER_KEYS, Stack
from tests.support.streams import (
    graphql_subscription,
    read_ws,
    socketio_client,
    subscription_errors,
    ws_base,
)
from tests.support.tasks import TASKS

KEYS = {"default": API_KEYS[0], "acme": OTHER_KEYS[0]}


def _item(project: str, text: str) -> dict[str, Any]:
    return {"project_id": project, "task_type": "test_prompt", "task_data": {"prompt_template": text}}


@dataclass
class LimitedApi:
    """An API replica of the test's own, a client per tenant, and a project name for the test."""

    url: str
    clients: dict[str, httpx.AsyncClient]
    project: str = field(default_factory=lambda: f"p_limits_{uuid.uuid4().hex[:8]}")

    async def submit(self, tenant: str, text: str) -> str:
        response = await self.clients[tenant].post("/api/v1/tasks/submit", json=_item(self.project, text))
        assert response.status_code == 200, response.text
        task_id: str = response.json()["task_id"]
        return task_id


@asynccontextmanager
async def replica_api(stack: Stack, name: str, **env: str) -> AsyncIterator[LimitedApi]:
    """An API in the namespace without workers; the tasks it started are terminated afterwards."""
    process, url = stack.start_api(name, TEMPORAL_NAMESPACE=EMPTY_NAMESPACE, **env)
    clients = {
        t: httpx.AsyncClient(base_url=url, headers={"X-API-Key": k}, timeout=30) for t, k in KEYS.items()
    }
    api = LimitedApi(url, clients)
    try:
        yield api
    finally:
        for client in clients.values():
            await client.aclose()
        process.stop()
        temporal = await Client.connect(stack.temporal.address, namespace=EMPTY_NAMESPACE)
        query = f'{TASKS} AND ProjectId = "{api.project}" AND ExecutionStatus = "Running"'
        running = [e.id async for e in temporal.list_workflows(query)]
        await asyncio.gather(*(temporal.get_workflow_handle(i).terminate("test over") for i in running))


async def test_a_batch_of_100_spends_100_submit_tokens(stack: Stack) -> None:
    """With 100 submit tokens a minute, a batch of 100 empties the tenant's bucket: what is accepted after it
    is only what refilled meanwhile (not the 99 a per-request count would leave); another tenant is
    unaffected."""
    async with replica_api(stack, "api-submit100", RATE_LIMIT_SUBMIT_PER_MIN="100") as api:
        tenant, project = api.clients["default"], api.project
        started = time.monotonic()
        batch = await tenant.post(
            "/api/v1/tasks/batch", json={"tasks": [_item(project, f"n{i}") for i in range(100)]}
        )
        assert batch.status_code == 200 and batch.json()["created"] == 100, batch.text[:500]
        accepted_after = 0
        while (
            single := await tenant.post("/api/v1/tasks/submit", json=_item(project, "one more"))
        ).status_code == 200:
            accepted_after += 1
            assert accepted_after < 50, "the batch spent far fewer than 100 tokens"
        elapsed = time.monotonic() - started
        print(
            f"batch of 100 then {accepted_after} single submit(s) accepted in {elapsed:.1f} s before the 429"
        )
        assert accepted_after <= elapsed * 100 / 60 + 1
        assert single.status_code == 429 and single.json()["error"] == "rate_limited", single.text
        assert "Submit rate limit of 100 per minute" in single.json()["message"]
        assert int(single.headers["Retry-After"]) >= 1
        await api.submit("acme", "acme's own")


async def _listings_until_refused(
    client: httpx.AsyncClient, project: str, page: int
) -> tuple[int, httpx.Response]:
    allowed = 0
    while True:
        response = await client.get(f"/api/v1/projects/{project}/tasks", params={"page": page, "limit": 10})
        if response.status_code != 200:
            return allowed, response
        allowed += 1
        assert allowed < 200


async def test_a_deep_page_spends_more_read_tokens_than_page_one(stack: Stack) -> None:
    """Each tenant's bucket starts full (60 reads a minute): page 1 of a 40-task project is read far more
    often than page 4 before the bucket is empty, since finding page 4 runs several counts."""
    async with replica_api(stack, "api-reads", RATE_LIMIT_STATUS_PER_MIN="60") as api:
        clients, project = api.clients, api.project
        for client in clients.values():
            created = await client.post(
                "/api/v1/tasks/batch", json={"tasks": [_item(project, f"r{i}") for i in range(40)]}
            )
            assert created.json()["created"] == 40
        page_one, refused = await _listings_until_refused(clients["default"], project, page=1)
        page_four, refused_deep = await _listings_until_refused(clients["acme"], project, page=4)
        print(f"read tokens 60: {page_one} listings of page 1, {page_four} of page 4 before the 429")
        for response in (refused, refused_deep):
            assert response.status_code == 429 and response.json()["error"] == "rate_limited"
            assert int(response.headers["Retry-After"]) >= 1
        assert 2 * page_four < page_one


@asynccontextmanager
async def held_sse(client: httpx.AsyncClient, path: str) -> AsyncIterator[httpx.Response]:
    """An SSE request held open (read in the background) until the block ends; yields its response."""
    opened: asyncio.Future[httpx.Response] = asyncio.get_running_loop().create_future()

    async def hold() -> None:
        async with client.stream("GET", path) as response:
            if response.status_code != 200:
                await response.aread()
            opened.set_result(response)
            async for _ in response.aiter_bytes():
                pass

    holder = asyncio.create_task(hold())
    try:
        yield await asyncio.wait_for(opened, 20)
    finally:
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)


def assert_stream_refused(response: httpx.Response) -> None:
    assert response.status_code == 429 and response.json()["error"] == "rate_limited", response.text
    assert "At most 2 open streams per tenant" in response.json()["message"]
    assert int(response.headers["Retry-After"]) >= 1


async def test_at_most_two_open_streams_per_tenant(stack: Stack) -> None:
    async with replica_api(stack, "api-streams", MAX_STREAMS_PER_TENANT="2") as api:
        tenant, other, project, url = api.clients["default"], api.clients["acme"], api.project, api.url
        task_id = await api.submit("default", "never runs")
        events = f"/api/v1/projects/{project}/events"
        async with (
            held_sse(tenant, events) as first,
            held_sse(tenant, f"/api/v1/tasks/{task_id}/events") as second,
        ):
            assert first.status_code == second.status_code == 200
            await _third_stream_refused(url, tenant, events, task_id)
            async with held_sse(other, events) as theirs:  # another tenant's slots are its own
                assert theirs.status_code == 200
            async with socketio_client(url, {"apiKey": KEYS["acme"]}) as sio:
                assert (await sio.call("subscribe:agent", project))["success"] is True
        # Both closed: their slots are free again (once the server has seen the clients leave).
        deadline = time.monotonic() + 15
        while (again := await _try_sse(tenant, events)) == 429:
            assert time.monotonic() < deadline, "closing streams did not free their slots"
            await asyncio.sleep(0.5)
        assert again == 200


async def _try_sse(client: httpx.AsyncClient, path: str) -> int:
    async with held_sse(client, path) as response:
        return response.status_code


async def _third_stream_refused(url: str, tenant: httpx.AsyncClient, events: str, task_id: str) -> None:
    """Whatever kind the third stream is."""
    async with held_sse(tenant, events) as sse:
        assert_stream_refused(sse)
    query = "subscription($id: ID!) { aiTaskStatusChanged(taskId: $id) { id } }"
    messages = await graphql_subscription(url, {"apiKey": KEYS["default"]}, query, {"id": task_id}, 10)
    errors = subscription_errors(messages)
    assert [e["extensions"]["code"] for e in errors] == ["rate_limited"], messages
    assert errors[0]["extensions"]["status"] == 429 and errors[0]["extensions"]["retry_after"] >= 1
    async with socketio_client(url, {"apiKey": KEYS["default"]}) as sio:
        refused = await sio.call("subscribe:queue")
        assert refused["success"] is False and refused["error"]["code"] == "rate_limited", refused
        assert refused["error"]["status"] == 429


@pytest.mark.parametrize("path", ["/ws/projects/{project}", "/ws/tasks/{task_id}"])
async def test_third_websocket_stream_is_refused(stack: Stack, path: str) -> None:
    """WebSockets count too: the third is refused at the handshake with REST's 429; another tenant's opens."""
    async with replica_api(stack, "api-ws-streams", MAX_STREAMS_PER_TENANT="2") as api:
        tenant, project = api.clients["default"], api.project
        socket = ws_base(api.url) + path.format(project=project, task_id=await api.submit("default", "waits"))
        events = f"/api/v1/projects/{project}/events"
        async with held_sse(tenant, events), held_sse(tenant, events):
            refused = await read_ws(socket, {"X-API-Key": KEYS["default"]}, 5)
            assert refused.status == 429 and refused.body["error"] == "rate_limited" and not refused.events
            assert int(refused.headers["retry-after"]) >= 1
            if "{task_id}" not in path:
                assert (await read_ws(socket, {"X-API-Key": KEYS["acme"]}, 2)).status == 101
