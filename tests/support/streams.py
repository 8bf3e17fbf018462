"""Reading the API's live streams for a while: Server-Sent Events, WebSockets, GraphQL subscriptions and
Socket.IO events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import socketio
import websockets


@dataclass
class Streamed:
    """What a stream answered: its status, and the events it sent while it was read (or the error body)."""

    status: int
    events: list[dict[str, Any]] = field(default_factory=list)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)  # of a refused WebSocket handshake

    @property
    def task_ids(self) -> set[str]:
        return {str(event["task_id"]) for event in self.events}


async def read_sse(client: httpx.AsyncClient, url: str, seconds: float, **params: Any) -> Streamed:
    """The stream's `task` events for `seconds` (or until `end`); a refusal's status and body."""
    streamed = Streamed(status=0)
    try:
        async with asyncio.timeout(seconds), client.stream("GET", url, params=params) as response:
            streamed.status = response.status_code
            if response.status_code != 200:
                streamed.body = json.loads(await response.aread())
                return streamed
            name = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name == "task":
                    streamed.events.append(json.loads(line[6:]))
                elif line.startswith("data: ") and name == "end":
                    break
    except TimeoutError:
        pass
    return streamed


async def read_ws(url: str, headers: dict[str, str], seconds: float) -> Streamed:
    """A WebSocket's JSON messages for `seconds` (or until it closes); a refused handshake's HTTP status."""
    streamed = Streamed(status=0)
    try:
        async with asyncio.timeout(seconds), websockets.connect(url, additional_headers=headers) as socket:
            streamed.status = 101
            async for raw in socket:
                streamed.events.append(json.loads(raw))
    except websockets.exceptions.InvalidStatus as refused:
        streamed.status = refused.response.status_code
        streamed.body = json.loads(refused.response.body or b"null")
        streamed.headers = dict(refused.response.headers)
    except TimeoutError:
        pass
    return streamed


def ws_base(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1)


async def graphql_subscription(
    http_url: str, params: dict[str, str], query: str, variables: dict[str, Any], seconds: float
) -> list[dict[str, Any]]:
    """graphql-transport-ws: `connection_init` with `params`, one subscription, its messages for `seconds` (or
    until `complete` or `error`)."""
    messages: list[dict[str, Any]] = []
    url = ws_base(http_url) + "/graphql"
    async with websockets.connect(
        url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": params}))
        ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        subscribe = {"query": query, "variables": variables}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        try:
            async with asyncio.timeout(seconds):
                while True:
                    message = json.loads(await socket.recv())
                    if message["type"] == "ping":
                        await socket.send(json.dumps({"type": "pong"}))
                        continue
                    messages.append(message)
                    if message["type"] in ("complete", "error"):
                        break
        except TimeoutError:
            pass
    return messages


def subscription_errors(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GraphQL errors a subscription answered (in a `next` payload or an `error` message)."""
    errors: list[dict[str, Any]] = []
    for message in messages:
        if message["type"] == "next":
            errors += message["payload"].get("errors") or []
        elif message["type"] == "error":
            errors += message["payload"]
    return errors


class SocketIOClient:
    """A connected python-socketio client whose `task:status` and `queue:update` events are kept in order."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: dict[str, list[Any]] = {"task:status": [], "task:failed": [], "queue:update": []}
        for name in self.events:
            self.client.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any) -> None:
            self.events[name].append(data)

        return record

    @property
    def task_ids(self) -> set[str]:
        return {str(event["taskId"]) for event in self.events["task:status"]}

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.client.call(event, data, timeout=20)

    async def until(self, name: str, timeout: float = 20) -> Any:
        """The first `name` event (waiting for it)."""
        async with asyncio.timeout(timeout):
            while not self.events[name]:
                await asyncio.sleep(0.05)
        return self.events[name][0]


@asynccontextmanager
async def socketio_client(
    http_url: str, auth: dict[str, str], path: str = "/ws/ai-tasks"
) -> AsyncIterator[SocketIOClient]:
    connected = SocketIOClient()
    await connected.client.connect(
        http_url, socketio_path=path, auth=auth, transports=["websocket"], wait_timeout=10
    )
    try:
        yield connected
    finally:
        await connected.client.disconnect()
