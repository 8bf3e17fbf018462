"""Seed 003's Socket.IO events, served by python-socketio on the API's own ASGI app.

Mounted at `/ws/ai-tasks` (seed 003's `path`) and at the Socket.IO default `/socket.io`.

Client → server (each answers an ack `{success, ...}` or `{success: false, error: {code, message}}`):
  `subscribe:task` taskId (or `{taskId}`), `unsubscribe:task` taskId,
  `subscribe:queue`, `unsubscribe:queue`, `subscribe:agent` agentId (= project id), `unsubscribe:agent`.
Server → client:
  `task:status` `{taskId, task: {id, status: "PROCESSING", ... as GraphQL's AITask}, task_id, status:
  "processing", progress, current_step, ... (the REST stream event), timestamp}` now and at every change;
  `task:failed` (same payload) when the task fails; `queue:update` `{status: {queuedTasks, processingTasks,
  completedTasks, queueHealth, queues: [...]}, timestamp}` now and at every change.

Every event is read from Temporal by polling (api/events.py), never from this replica's memory, so any API
replica tells the same story. One watcher per room (task, project, queue) on a replica, cancelled when its
last subscriber leaves or disconnects. Auth on connect: `auth: {apiKey | token | Authorization}`, else the
X-API-Key / Authorization headers, else `?api_key=` / `?token=`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import socketio
from fastapi import FastAPI
from temporalio.service import RPCError

from api.caller import Caller
from api.deps import Services
from api.errors import AuthenticationFailed, RateLimited, ServiceError, TaskNotFound, ValidationFailed
from api.events import task_event, watch_project, watch_task
from api.graphql_schema import ai_task, credentials_caller, queue_fingerprint, queue_status, to_json
from api.graphql_schema import watch_queue_status as watch_queue
from api.taskstore import TaskView
from taskservice.contracts import TaskStatus

log = logging.getLogger("taskservice.api")

SOCKETIO_PATHS = ("/ws/ai-tasks", "/socket.io")
QUEUE_ROOM = "queue"
# A watcher that lost Temporal tries again after this long (its subscribers stay subscribed).
WATCH_RETRY_S = 1.0

Ack = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def task_payload(view: TaskView) -> dict[str, Any]:
    """Seed 003's `{taskId, task}` beside the REST stream's snake_case fields."""
    return {"taskId": view.task_id, "task": to_json(ai_task(view)), **task_event(view), "timestamp": _now()}


def _fingerprint(view: TaskView) -> tuple[Any, ...]:
    return (view.status, round(view.progress, 4), view.current_step, view.attempt)


def _target(data: Any, *names: str) -> str | None:
    """The id a client sent: a bare string (seed 003) or an object with one of `names`."""
    if isinstance(data, str) and data:
        return data
    if isinstance(data, Mapping):
        for name in names:
            value = data.get(name)
            if isinstance(value, str) and value:
                return value
    return None


def _refusal(err: ServiceError) -> Ack:
    return {"success": False, "error": {"code": err.error, "message": err.message, "status": err.status_code}}


class TaskEventServer:
    def __init__(self, services: Services) -> None:
        self.services = services
        # Credentials are explicit (key or token), never cookies, so any origin may connect.
        self.sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", logger=False)
        self.callers: dict[str, Caller] = {}
        self.members: dict[str, set[str]] = {}
        self.watchers: dict[str, asyncio.Task[None]] = {}
        handlers: dict[str, Callable[..., Any]] = {
            "connect": self.on_connect,
            "disconnect": self.on_disconnect,
            "subscribe:task": self.on_subscribe_task,
            "unsubscribe:task": self.on_unsubscribe_task,
            "subscribe:queue": self.on_subscribe_queue,
            "unsubscribe:queue": self.on_unsubscribe_queue,
            "subscribe:agent": self.on_subscribe_agent,
            "unsubscribe:agent": self.on_unsubscribe_agent,
        }
        for event, handler in handlers.items():
            self.sio.on(event, handler)

    def asgi_app(self) -> Any:
        # Routing is left to the mount: every request that reaches this app is Engine.IO's.
        return socketio.ASGIApp(self.sio, socketio_path=None)

    # --- connection ----------------------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: Mapping[str, Any], auth: Any = None) -> None:
        query = {k: v[0] for k, v in parse_qs(str(environ.get("QUERY_STRING", ""))).items()}
        sources: list[Mapping[str, Any]] = [
            auth if isinstance(auth, Mapping) else {},
            {"x-api-key": environ.get("HTTP_X_API_KEY"), "authorization": environ.get("HTTP_AUTHORIZATION")},
            {"api_key": query.get("api_key") or query.get("apiKey"), "token": query.get("token")},
        ]
        try:
            caller = None
            for source in sources:
                caller = credentials_caller(self.services, source)
                if caller is not None:
                    break
            if caller is None:
                raise AuthenticationFailed("Invalid or missing API key")
        except ServiceError as err:
            raise socketio.exceptions.ConnectionRefusedError(
                err.message, {"code": err.error, "status": err.status_code}
            ) from None
        self.callers[sid] = caller

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.callers.pop(sid, None)
        for room in [room for room, sids in self.members.items() if sid in sids]:
            self._leave(sid, room)

    def _authorize(self, sid: str) -> Caller:
        caller = self.callers.get(sid)
        if caller is None:
            raise AuthenticationFailed("Not connected")
        wait = self.services.status_limiter.acquire(caller.key_id)
        if wait is not None:
            limit = self.services.settings.rate_limit_status_per_min
            raise RateLimited(f"Status rate limit of {limit} per minute exceeded", retry_after=wait)
        return caller

    # --- rooms and watchers --------------------------------------------------------------------------

    async def _join(self, sid: str, room: str, watcher: Callable[[], AsyncIterator[None]] | None) -> None:
        await self.sio.enter_room(sid, room)
        self.members.setdefault(room, set()).add(sid)
        if watcher is not None and room not in self.watchers:
            self.watchers[room] = asyncio.create_task(self._supervise(room, watcher), name=f"socketio:{room}")

    def _leave(self, sid: str, room: str) -> None:
        """Forget the membership (Socket.IO drops a disconnected sid from its rooms itself)."""
        sids = self.members.get(room)
        if sids is None:
            return
        sids.discard(sid)
        if not sids:
            del self.members[room]
            watcher = self.watchers.pop(room, None)
            if watcher is not None:
                watcher.cancel()

    async def _unsubscribe(self, sid: str, room: str) -> None:
        await self.sio.leave_room(sid, room)
        self._leave(sid, room)

    async def _supervise(self, room: str, watcher: Callable[[], AsyncIterator[None]]) -> None:
        """Run a room's watcher until it ends (a finished task), retrying while Temporal is away."""
        try:
            while True:
                try:
                    async for _ in watcher():
                        pass
                    return
                except TaskNotFound:
                    return
                except (ServiceError, RPCError) as err:
                    log.warning("Socket.IO watcher lost Temporal", extra={"room": room, "error": str(err)})
                    await asyncio.sleep(WATCH_RETRY_S)
        except Exception:
            log.exception("Socket.IO watcher failed", extra={"room": room})
        finally:
            if self.watchers.get(room) is asyncio.current_task():
                del self.watchers[room]
                for sid in self.members.pop(room, set()):
                    await self.sio.leave_room(sid, room)

    async def _emit_task(self, view: TaskView, to: str) -> None:
        payload = task_payload(view)
        await self.sio.emit("task:status", payload, to=to)
        if view.status == TaskStatus.FAILED:
            await self.sio.emit("task:failed", payload, to=to)

    # --- events --------------------------------------------------------------------------------------

    async def on_subscribe_task(self, sid: str, data: Any = None, *_: Any) -> Ack:
        task_id = _target(data, "taskId", "task_id", "id")
        try:
            self._authorize(sid)
            if task_id is None:
                raise ValidationFailed({"taskId": "taskId is required"}, message="Invalid subscription")
            store = self.services.store()
            view = await store.get(task_id)
        except ServiceError as err:
            return _refusal(err)
        except RPCError:
            return _refusal(ServiceError("Temporal call failed"))
        room = f"task:{task_id}"
        if not view.status.is_terminal:
            last = _fingerprint(view)

            async def watcher() -> AsyncIterator[None]:
                nonlocal last
                async for seen in watch_task(store, task_id):
                    if _fingerprint(seen) != last:
                        last = _fingerprint(seen)
                        await self._emit_task(seen, room)
                    yield None

            await self._join(sid, room, watcher)
        await self._emit_task(view, sid)
        return {"success": True, "taskId": task_id, "status": view.status.name}

    async def on_unsubscribe_task(self, sid: str, data: Any = None, *_: Any) -> Ack:
        task_id = _target(data, "taskId", "task_id", "id")
        if task_id is not None:
            await self._unsubscribe(sid, f"task:{task_id}")
        return {"success": True, "taskId": task_id}

    async def on_subscribe_queue(self, sid: str, *_: Any) -> Ack:
        try:
            self._authorize(sid)
            store = self.services.store()
            status = await queue_status(store, self.services.settings)
        except ServiceError as err:
            return _refusal(err)
        except RPCError:
            return _refusal(ServiceError("Temporal call failed"))
        settings = self.services.settings
        initial = queue_fingerprint(status)

        async def watcher() -> AsyncIterator[None]:
            async for update in watch_queue(store, settings, last=initial):
                await self.sio.emit(
                    "queue:update", {"status": to_json(update), "timestamp": _now()}, to=QUEUE_ROOM
                )
                yield None

        await self._join(sid, QUEUE_ROOM, watcher)
        await self.sio.emit("queue:update", {"status": to_json(status), "timestamp": _now()}, to=sid)
        return {"success": True}

    async def on_unsubscribe_queue(self, sid: str, *_: Any) -> Ack:
        await self._unsubscribe(sid, QUEUE_ROOM)
        return {"success": True}

    async def on_subscribe_agent(self, sid: str, data: Any = None, *_: Any) -> Ack:
        """Seed 003's agent stream: every task of the project named `agentId` (`task:status` per change)."""
        project_id = _target(data, "agentId", "projectId", "project_id", "id")
        try:
            self._authorize(sid)
            if project_id is None:
                raise ValidationFailed({"agentId": "agentId is required"}, message="Invalid subscription")
            store = self.services.store()
        except ServiceError as err:
            return _refusal(err)
        room = f"agent:{project_id}"

        async def watcher() -> AsyncIterator[None]:
            async for view in watch_project(store, project_id):
                await self._emit_task(view, room)
                yield None

        await self._join(sid, room, watcher)
        return {"success": True, "agentId": project_id}

    async def on_unsubscribe_agent(self, sid: str, data: Any = None, *_: Any) -> Ack:
        project_id = _target(data, "agentId", "projectId", "project_id", "id")
        if project_id is not None:
            await self._unsubscribe(sid, f"agent:{project_id}")
        return {"success": True, "agentId": project_id}


def mount_socketio(app: FastAPI, services: Services) -> TaskEventServer:
    """Serve Socket.IO at seed 003's path and at the default one; returns the server (for tests, tools)."""
    server = TaskEventServer(services)
    asgi = server.asgi_app()
    for path in SOCKETIO_PATHS:
        app.mount(path, asgi)
    return server
