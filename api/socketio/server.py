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

Every event is read from Temporal by polling (api/service/watch.py), never from this replica's memory,
so any API replica tells the same story. One watcher per room (task, project, queue) on a replica,
cancelled when its last subscriber leaves or disconnects. Auth on connect: `auth: {apiKey | token |
Authorization}`, else the X-API-Key / Authorization headers, else `?api_key=` / `?token=`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import socketio
from fastapi import FastAPI
from temporalio.service import RPCError

from api.domain.caller import Caller
from api.domain.errors import (
    AuthenticationFailed,
    ServiceError,
    TaskNotFound,
    ValidationFailed,
    from_temporal,
    status_and_code,
)
from api.graphql.types import ai_task, queue_status, to_json
from api.rest.render import task_event
from api.runtime import Services
from api.service.estimates import TaskEstimate
from api.service.quotas import StreamSlot
from api.service.scope import scope_of
from api.service.watch import fingerprint
from api.store.projection import TaskView
from taskservice.contracts import TaskStatus
from taskservice.timefmt import now_z

log = logging.getLogger("taskservice.api")

SOCKETIO_PATHS = ("/ws/ai-tasks", "/socket.io")
# A watcher that lost Temporal tries again after this long (its subscribers stay subscribed).
WATCH_RETRY_S = 1.0

Ack = dict[str, Any]


def task_payload(view: TaskView, estimate: TaskEstimate | None) -> dict[str, Any]:
    """Seed 003's `{taskId, task}` beside the REST stream's snake_case fields."""
    task = to_json(ai_task(view, estimate=estimate))
    return {"taskId": view.task_id, "task": task, **task_event(view, estimate), "timestamp": now_z()}


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


def _refusal(err: ServiceError | RPCError) -> Ack:
    if isinstance(err, RPCError):
        err = from_temporal(err)
    status, code = status_and_code(err)
    return {"success": False, "error": {"code": code, "message": err.message, "status": status}}


class TaskEventServer:
    def __init__(self, services: Services) -> None:
        self.services = services
        # Credentials are explicit (key or token), never cookies, so any origin may connect.
        self.sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", logger=False)
        self.callers: dict[str, Caller] = {}
        self.members: dict[str, set[str]] = {}
        self.watchers: dict[str, asyncio.Task[None]] = {}
        self.slots: dict[tuple[str, str], StreamSlot] = {}
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
                caller = self.services.auth.from_params(source)
                if caller is not None:
                    break
            if caller is None:
                raise AuthenticationFailed("Invalid or missing API key")
        except ServiceError as err:
            status, code = status_and_code(err)
            raise socketio.exceptions.ConnectionRefusedError(
                err.message, {"code": code, "status": status}
            ) from None
        self.callers[sid] = caller

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.callers.pop(sid, None)
        for room in [room for room, sids in self.members.items() if sid in sids]:
            self._leave(sid, room)

    def _caller(self, sid: str) -> Caller:
        caller = self.callers.get(sid)
        if caller is None:
            raise AuthenticationFailed("Not connected")
        return caller

    # --- rooms and watchers --------------------------------------------------------------------------

    def _room(self, sid: str, kind: str, target: str = "") -> str:
        """A room per scope: what its watcher emits is what every member may see."""
        return f"{kind}:{scope_of(self._caller(sid)).key}:{target}"

    async def _join(
        self, sid: str, room: str, watcher: Callable[[], AsyncIterator[None]] | None = None
    ) -> None:
        """Enter the room, holding one of the tenant's stream slots for the subscription (429 if none)."""
        if sid not in self.members.get(room, set()):
            self.slots[(sid, room)] = self.services.tasks().hold_stream(self._caller(sid))
        await self.sio.enter_room(sid, room)
        self.members.setdefault(room, set()).add(sid)
        if watcher is not None and room not in self.watchers:
            self.watchers[room] = asyncio.create_task(self._supervise(room, watcher), name=f"socketio:{room}")

    def _leave(self, sid: str, room: str) -> None:
        """Forget the membership and free its slot (Socket.IO drops a disconnected sid from its rooms)."""
        slot = self.slots.pop((sid, room), None)
        if slot is not None:
            slot.release()
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
                for sid in list(self.members.get(room, set())):
                    self._leave(sid, room)
                    await self.sio.leave_room(sid, room)

    async def _emit_task(self, view: TaskView, to: str) -> None:
        payload = task_payload(view, await self.services.tasks().estimate(view))
        await self.sio.emit("task:status", payload, to=to)
        if view.status == TaskStatus.FAILED:
            await self.sio.emit("task:failed", payload, to=to)

    # --- events --------------------------------------------------------------------------------------

    async def on_subscribe_task(self, sid: str, data: Any = None, *_: Any) -> Ack:
        task_id = _target(data, "taskId", "task_id", "id")
        try:
            caller = self._caller(sid)
            if task_id is None:
                raise ValidationFailed({"taskId": "taskId is required"}, message="Invalid subscription")
            view = await self.services.tasks().get(caller, task_id)
            room = self._room(sid, "task", task_id)
            if not view.status.is_terminal:
                await self._join(sid, room, self._task_watcher(caller, view, room))
        except (ServiceError, RPCError) as err:
            return _refusal(err)
        await self._emit_task(view, sid)
        return {"success": True, "taskId": task_id, "status": view.status.name}

    def _task_watcher(self, caller: Caller, view: TaskView, room: str) -> Callable[[], AsyncIterator[None]]:
        last = fingerprint(view)

        async def watcher() -> AsyncIterator[None]:
            nonlocal last
            async for seen in await self.services.tasks().watch(caller, view.task_id, held=False):
                if fingerprint(seen) != last:
                    last = fingerprint(seen)
                    await self._emit_task(seen, room)
                yield None

        return watcher

    async def on_unsubscribe_task(self, sid: str, data: Any = None, *_: Any) -> Ack:
        task_id = _target(data, "taskId", "task_id", "id")
        if task_id is not None and sid in self.callers:
            await self._unsubscribe(sid, self._room(sid, "task", task_id))
        return {"success": True, "taskId": task_id}

    async def on_subscribe_queue(self, sid: str, *_: Any) -> Ack:
        try:
            caller = self._caller(sid)
            last = first = await self.services.insights().queues(caller)
            room = self._room(sid, "queue")

            async def watcher() -> AsyncIterator[None]:
                nonlocal last
                async for update in self.services.insights().queue_changes(caller, held=False):
                    if update != last:
                        last = update
                        payload = {"status": to_json(queue_status(update)), "timestamp": now_z()}
                        await self.sio.emit("queue:update", payload, to=room)
                    yield None

            await self._join(sid, room, watcher)
        except (ServiceError, RPCError) as err:
            return _refusal(err)
        await self.sio.emit(
            "queue:update", {"status": to_json(queue_status(first)), "timestamp": now_z()}, to=sid
        )
        return {"success": True}

    async def on_unsubscribe_queue(self, sid: str, *_: Any) -> Ack:
        if sid in self.callers:
            await self._unsubscribe(sid, self._room(sid, "queue"))
        return {"success": True}

    async def on_subscribe_agent(self, sid: str, data: Any = None, *_: Any) -> Ack:
        """Seed 003's agent stream: every task of the project named `agentId` (`task:status` per change)."""
        project_id = _target(data, "agentId", "projectId", "project_id", "id")
        try:
            caller = self._caller(sid)
            if project_id is None:
                raise ValidationFailed({"agentId": "agentId is required"}, message="Invalid subscription")
            room = self._room(sid, "agent", project_id)

            async def watcher() -> AsyncIterator[None]:
                async for view in await self.services.tasks().watch_project(caller, project_id, held=False):
                    await self._emit_task(view, room)
                    yield None

            await self._join(sid, room, watcher)
        except (ServiceError, RPCError) as err:
            return _refusal(err)
        return {"success": True, "agentId": project_id}

    async def on_unsubscribe_agent(self, sid: str, data: Any = None, *_: Any) -> Ack:
        project_id = _target(data, "agentId", "projectId", "project_id", "id")
        if project_id is not None and sid in self.callers:
            await self._unsubscribe(sid, self._room(sid, "agent", project_id))
        return {"success": True, "agentId": project_id}


def mount_socketio(app: FastAPI, services: Services) -> TaskEventServer:
    """Serve Socket.IO at seed 003's path and at the default one; returns the server (for tests, tools)."""
    server = TaskEventServer(services)
    asgi = server.asgi_app()
    for path in SOCKETIO_PATHS:
        app.mount(path, asgi)
    return server
