"""Live progress (seed 002's "future WebSocket"): Server-Sent Events and WebSockets, per task and project."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from api.deps import ReadCaller, StoreDep, authenticate_credentials, get_services
from api.errors import ServiceError
from api.events import task_event, watch_project, watch_task
from api.schemas import PROJECT_ID_PATTERN
from api.taskstore import TaskView

router = APIRouter(tags=["events"])
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _sse(views: AsyncIterator[TaskView]) -> AsyncIterator[bytes]:
    async for view in views:
        event = task_event(view)
        event_id = f"{event['task_id']}:{event['updated_at']}"
        yield f"event: task\nid: {event_id}\ndata: {json.dumps(event)}\n\n".encode()
    yield b"event: end\ndata: {}\n\n"


@router.get(
    "/api/v1/tasks/{task_id}/events",
    summary="Server-Sent Events of one task",
    description="An `event: task` with the status fields at every change, then `event: end` after a "
    "terminal status.",
    response_class=StreamingResponse,
)
async def task_events(task_id: str, caller: ReadCaller, store: StoreDep) -> StreamingResponse:
    await store.get(task_id)  # 404 before the stream starts
    return StreamingResponse(
        _sse(watch_task(store, task_id)), media_type="text/event-stream", headers=SSE_HEADERS
    )


@router.get(
    "/api/v1/projects/{project_id}/events",
    summary="Server-Sent Events of a project's tasks",
    response_class=StreamingResponse,
)
async def project_events(
    project_id: Annotated[str, Path(pattern=PROJECT_ID_PATTERN)], caller: ReadCaller, store: StoreDep
) -> StreamingResponse:
    return StreamingResponse(
        _sse(watch_project(store, project_id)), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _serve_ws(websocket: WebSocket, api_key: str | None, views_of: str, target: str) -> None:
    services = get_services(websocket)  # type: ignore[arg-type]
    try:
        authenticate_credentials(
            services,
            api_key or websocket.headers.get("x-api-key"),
            websocket.headers.get("authorization"),
        )
        store = services.store()
        if views_of == "task":
            await store.get(target)
    except ServiceError as err:
        await websocket.close(
            code=4401 if err.status_code == 401 else 4000 + err.status_code % 1000, reason=err.message[:120]
        )
        return
    await websocket.accept()
    views = watch_task(store, target) if views_of == "task" else watch_project(store, target)
    try:
        async for view in views:
            await websocket.send_json(task_event(view))
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        return


@router.websocket("/ws/tasks/{task_id}")
async def task_socket(
    websocket: WebSocket, task_id: str, api_key: Annotated[str | None, Query()] = None
) -> None:
    """JSON messages with the status fields at every change; closes (1000) after a terminal status.
    Auth: X-API-Key header, `?api_key=` (browsers cannot set headers on WebSockets), or Bearer JWT."""
    await _serve_ws(websocket, api_key, "task", task_id)


@router.websocket("/ws/projects/{project_id}")
async def project_socket(
    websocket: WebSocket, project_id: str, api_key: Annotated[str | None, Query()] = None
) -> None:
    await _serve_ws(websocket, api_key, "project", project_id)
