"""Live progress (seed 002's "future WebSocket"): Server-Sent Events and WebSockets, per task and project."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse

from api.domain.errors import (
    RateLimited,
    ServiceError,
    TaskNotFound,
    ValidationFailed,
    error_body,
    error_headers,
    status_and_code,
)
from api.rest.deps import CallerDep, TaskServiceDep, get_services
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses
from api.rest.params import ProjectIdPath, TaskIdPath
from api.rest.render import preview_event, task_event
from api.rest.routes import task_paths  # noqa: F401 - registers the {task_id:task_id} convertor
from api.service.tasks import TaskService
from api.store.projection import TaskView

router = APIRouter(tags=["events"], route_class=DocumentedRoute)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
EVENT_STREAM = {
    "description": "`text/event-stream`: `event: task` messages whose data is the task's status fields; "
    "`event: preview` (task_id, project_id, preview_url, preview_at) at each new live preview of a render.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


async def _sse(views: AsyncIterator[TaskView], tasks: TaskService) -> AsyncIterator[bytes]:
    previews: dict[str, Any] = {}
    async for view in views:
        event = task_event(view, await tasks.estimate(view))
        event_id = f"{event['task_id']}:{event['updated_at']}"
        yield f"event: task\nid: {event_id}\ndata: {json.dumps(event)}\n\n".encode()
        if _new_preview(view, previews):
            yield f"event: preview\ndata: {json.dumps(preview_event(view))}\n\n".encode()
    yield b"event: end\ndata: {}\n\n"


def _new_preview(view: TaskView, seen: dict[str, Any]) -> bool:
    """Whether the view shows a live preview its stream has not announced yet (`seen`: task → its time)."""
    if view.preview_at is None or seen.get(view.task_id) == view.preview_at:
        return False
    seen[view.task_id] = view.preview_at
    return True


def _event_stream(views: AsyncIterator[TaskView], tasks: TaskService) -> StreamingResponse:
    return StreamingResponse(_sse(views, tasks), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get(
    "/api/v1/tasks/{task_id:task_id}/events",
    response_class=StreamingResponse,
    responses={200: EVENT_STREAM, **error_responses(TaskNotFound, RateLimited, *AUTHENTICATED)},
)
async def task_events(task_id: TaskIdPath, caller: CallerDep, tasks: TaskServiceDep) -> StreamingResponse:
    """Server-Sent Events of one task.

    An `event: task` with the status fields at every change (and `event: preview` after it when the render
    wrote a new live preview), then `event: end` after a terminal status.
    Holds one of the tenant's stream slots while open.
    """
    return _event_stream(await tasks.watch(caller, task_id), tasks)


@router.get(
    "/api/v1/projects/{project_id}/events",
    response_class=StreamingResponse,
    responses={200: EVENT_STREAM, **error_responses(ValidationFailed, RateLimited, *AUTHENTICATED)},
)
async def project_events(
    project_id: ProjectIdPath, caller: CallerDep, tasks: TaskServiceDep
) -> StreamingResponse:
    """Server-Sent Events of a project's tasks.

    An `event: task` whenever one of the project's tasks changes; the stream stays open until the client
    leaves. Holds one of the tenant's stream slots while open.
    """
    return _event_stream(await tasks.watch_project(caller, project_id), tasks)


async def _serve_ws(websocket: WebSocket, api_key: str | None, views_of: str, target: str) -> None:
    services = get_services(websocket)  # type: ignore[arg-type]
    try:
        caller = services.auth.authenticate(
            api_key or websocket.headers.get("x-api-key"), websocket.headers.get("authorization")
        )
        tasks = services.tasks()
        if views_of == "task":
            views = await tasks.watch(caller, target)
        else:
            views = await tasks.watch_project(caller, target)
    except ServiceError as err:
        await refuse(websocket, err)
        return
    await websocket.accept()
    previews: dict[str, Any] = {}
    try:
        async for view in views:
            await websocket.send_json(task_event(view, await tasks.estimate(view)))
            if _new_preview(view, previews):
                await websocket.send_json({"event": "preview", **preview_event(view)})
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        return


async def refuse(websocket: WebSocket, err: ServiceError) -> None:
    """Refuse the handshake with what REST would answer (status, error body, Retry-After) where the server
    supports the ASGI denial response; elsewhere close with 4000 + the status. A close before the handshake is
    accepted reaches the client as a bare 403, which would tell a missing task from a full stream limit no
    better than from a wrong key."""
    status = status_and_code(err)[0]
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        refusal = JSONResponse(error_body(err), status_code=status, headers=error_headers(err))
        await websocket.send_denial_response(refusal)
        return
    await websocket.close(code=4401 if status == 401 else 4000 + status % 1000, reason=err.message[:120])


@router.websocket("/ws/tasks/{task_id}")
async def task_socket(
    websocket: WebSocket, task_id: str, api_key: Annotated[str | None, Query()] = None
) -> None:
    """JSON messages with the status fields at every change, and `{"event": "preview", ...}` at each new live
    preview; closes (1000) after a terminal status.
    Auth: X-API-Key header, `?api_key=` (browsers cannot set headers on WebSockets), or Bearer JWT."""
    await _serve_ws(websocket, api_key, "task", task_id)


@router.websocket("/ws/projects/{project_id}")
async def project_socket(
    websocket: WebSocket, project_id: str, api_key: Annotated[str | None, Query()] = None
) -> None:
    await _serve_ws(websocket, api_key, "project", project_id)
