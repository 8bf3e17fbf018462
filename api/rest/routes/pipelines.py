"""The pipeline resource: a whole scene in one request, each step a real task (issue 25)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from api.domain.caller import Caller
from api.domain.errors import (
    InvalidState,
    PayloadTooLarge,
    PipelineNotFound,
    RateLimited,
    ServiceError,
    ValidationFailed,
)
from api.domain.pipelines import StartPipeline, StepRequest
from api.rest.deps import CallerDep, PipelineServiceDep, get_services
from api.rest.headers import preferred_wait
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses
from api.rest.params import LimitQuery, PageQuery, ProjectIdPath, StatusQuery
from api.rest.pipeline_schemas import (
    PipelineListResponse,
    PipelineStatusResponse,
    PipelineStepStatus,
    PlannedStepResponse,
    RerunPipelineRequest,
    SubmitPipelineRequest,
    SubmitPipelineResponse,
)
from api.rest.routes.streams import SSE_HEADERS, refuse
from api.service.pipelines import PipelineStatus, PipelineSubmitted
from api.service.waiting import MAX_WAIT_S
from taskservice.pipeline_contracts import PIPELINE_ID_PREFIX
from taskservice.task_examples import scene_pipeline_example

router = APIRouter(tags=["pipelines"], route_class=DocumentedRoute)
PIPELINE_STREAM = {
    "description": "`text/event-stream`: `event: pipeline` messages, data: the pipeline's status body.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}

PipelineIdPath = Annotated[
    str, Path(max_length=64, description=f"The pipeline's ID (`{PIPELINE_ID_PREFIX}` and a UUID).")
]
WaitQuery = Annotated[
    float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for the pipeline to end.")
]
PreferHeader = Annotated[
    str | None, Header(alias="Prefer", max_length=200, description="`wait=N` (N <= 60), as `?wait=N`.")
]
SCENE = {
    "scene": {
        "summary": "A scene: frame → video, lines → mix, clip",
        "value": scene_pipeline_example(),
    }
}


def pipeline_command(caller: Caller, body: SubmitPipelineRequest) -> StartPipeline:
    events = body.webhook_events_filter
    return StartPipeline(
        caller=caller,
        project_id=body.project_id,
        steps=tuple(
            StepRequest(
                step_id=step.id,
                task_type=step.task_type,
                task_data=step.task_data,
                after=tuple(step.after),
                priority=step.priority,
                cache=step.cache,
            )
            for step in body.steps
        ),
        name=body.name,
        callback_url=body.callback_url,
        webhook_events=tuple(events) if events is not None else None,
        metadata=body.metadata,
        priority=body.priority,
        cache=body.cache,
        on_failure=body.on_failure,
    )


def submitted_response(submitted: PipelineSubmitted) -> SubmitPipelineResponse:
    return SubmitPipelineResponse(
        pipeline_id=submitted.pipeline_id,
        steps=[
            PlannedStepResponse(
                id=s.step_id,
                task_id=s.task_id,
                task_type=s.task_type,
                will=s.will,
                estimated_duration_s=s.estimated_duration_s,
            )
            for s in submitted.steps
        ],
        estimated_duration_s=submitted.estimated_duration_s,
        retry_of=submitted.retry_of,
    )


def status_response(status: PipelineStatus) -> PipelineStatusResponse:
    fields: dict[str, Any] = {**vars(status), "steps": [], "status": status.status.value}
    fields["steps"] = [PipelineStepStatus(**{**vars(step), "id": step.step_id}) for step in status.steps]
    return PipelineStatusResponse.model_validate(fields)


@router.post(
    "/api/v1/pipelines", responses=error_responses(ValidationFailed, PayloadTooLarge, *AUTHENTICATED)
)
async def submit_pipeline(
    body: Annotated[SubmitPipelineRequest, Body(openapi_examples=SCENE)],
    caller: CallerDep,
    pipelines: PipelineServiceDep,
) -> SubmitPipelineResponse:
    """Submit a pipeline.

    Every step is validated before anything starts (unknown step or path, a cycle, a reference to a field
    the upstream type never returns, an input the downstream type rejects): `400 validation_error` naming
    step and field. N steps cost N submit tokens. The answer: each step's `task_id`, what it `will` do, and
    the critical path of the estimates.
    """
    return submitted_response(await pipelines.submit(pipeline_command(caller, body)))


@router.post("/api/v1/pipelines/quote", responses=error_responses(ValidationFailed, *AUTHENTICATED))
async def quote_pipeline(
    body: Annotated[SubmitPipelineRequest, Body(openapi_examples=SCENE)],
    caller: CallerDep,
    pipelines: PipelineServiceDep,
) -> SubmitPipelineResponse:
    """What a submit would answer (plan, estimate), starting no task (one read token)."""
    return submitted_response(await pipelines.quote(pipeline_command(caller, body)))


@router.get(
    "/api/v1/pipelines/{pipeline_id}",
    responses=error_responses(ValidationFailed, PipelineNotFound, *AUTHENTICATED),
)
async def get_pipeline(
    pipeline_id: PipelineIdPath,
    caller: CallerDep,
    pipelines: PipelineServiceDep,
    response: Response,
    wait: WaitQuery = 0,
    prefer: PreferHeader = None,
) -> PipelineStatusResponse:
    """A pipeline: status, progress, and each step's task, status, progress, result, error, cache hit.

    With `?wait=N` or `Prefer: wait=N`, answers once the pipeline has ended, or after N seconds.
    """
    wait_s = wait or preferred_wait(prefer) or 0
    if wait_s:
        response.headers["Preference-Applied"] = f"wait={wait_s:.0f}"
        return status_response(await pipelines.wait(caller, pipeline_id, wait_s))
    return status_response(await pipelines.get(caller, pipeline_id))


@router.get(
    "/api/v1/projects/{project_id}/pipelines", responses=error_responses(ValidationFailed, *AUTHENTICATED)
)
async def project_pipelines(
    project_id: ProjectIdPath,
    caller: CallerDep,
    pipelines: PipelineServiceDep,
    status: StatusQuery = None,
    page: PageQuery = 1,
    limit: LimitQuery = 20,
) -> PipelineListResponse:
    """A project's pipelines, newest first (steps as recorded; `GET /pipelines/{id}` for live progress)."""
    found, total = await pipelines.list(caller, project_id, status, page=page, limit=limit)
    return PipelineListResponse(
        pipelines=[status_response(s) for s in found], total=total, page=page, limit=limit
    )


@router.delete(
    "/api/v1/pipelines/{pipeline_id}",
    responses=error_responses(InvalidState, PipelineNotFound, *AUTHENTICATED),
)
async def cancel_pipeline(
    pipeline_id: PipelineIdPath, caller: CallerDep, pipelines: PipelineServiceDep
) -> PipelineStatusResponse:
    """Cancel a pipeline: running and pending steps are cancelled, finished steps keep their results."""
    return status_response(await pipelines.cancel(caller, pipeline_id))


@router.post(
    "/api/v1/pipelines/{pipeline_id}/retry",
    responses=error_responses(InvalidState, ValidationFailed, PipelineNotFound, *AUTHENTICATED),
)
async def retry_pipeline(
    pipeline_id: PipelineIdPath, caller: CallerDep, pipelines: PipelineServiceDep
) -> SubmitPipelineResponse:
    """Run an ended pipeline's failed, cancelled and skipped steps again, as a new pipeline (`retry_of`);
    its completed steps are reused."""
    return submitted_response(await pipelines.retry(caller, pipeline_id))


@router.post(
    "/api/v1/pipelines/{pipeline_id}/rerun",
    responses=error_responses(InvalidState, ValidationFailed, PipelineNotFound, *AUTHENTICATED),
)
async def rerun_pipeline(
    pipeline_id: PipelineIdPath,
    body: RerunPipelineRequest,
    caller: CallerDep,
    pipelines: PipelineServiceDep,
) -> SubmitPipelineResponse:
    """A new pipeline from an ended one with `changes` to some steps' task_data: the changed steps and
    those downstream of them run again, the other completed steps are reused (`will` says which)."""
    return submitted_response(await pipelines.rerun(caller, pipeline_id, body.changes))


async def _sse(statuses: AsyncIterator[PipelineStatus]) -> AsyncIterator[bytes]:
    async for status in statuses:
        yield f"event: pipeline\ndata: {status_response(status).model_dump_json()}\n\n".encode()
    yield b"event: end\ndata: {}\n\n"


@router.get(
    "/api/v1/pipelines/{pipeline_id}/events",
    response_class=StreamingResponse,
    responses={200: PIPELINE_STREAM, **error_responses(PipelineNotFound, RateLimited, *AUTHENTICATED)},
)
async def pipeline_events(
    pipeline_id: PipelineIdPath, caller: CallerDep, pipelines: PipelineServiceDep
) -> StreamingResponse:
    """Server-Sent Events of one pipeline: an `event: pipeline` with its status body at every change (a
    step's status or progress), then `event: end` once it has ended. Holds one of the tenant's stream
    slots."""
    statuses = await pipelines.watch(caller, pipeline_id)
    return StreamingResponse(_sse(statuses), media_type="text/event-stream", headers=SSE_HEADERS)


@router.websocket("/ws/pipelines/{pipeline_id}")
async def pipeline_socket(
    websocket: WebSocket, pipeline_id: str, api_key: Annotated[str | None, Query()] = None
) -> None:
    """The pipeline's status body as a JSON message at every change; closes (1000) once it has ended."""
    services = get_services(websocket)  # type: ignore[arg-type]
    try:
        caller = services.auth.authenticate(
            api_key or websocket.headers.get("x-api-key"), websocket.headers.get("authorization")
        )
        statuses = await services.pipelines().watch(caller, pipeline_id)
    except ServiceError as err:
        await refuse(websocket, err)
        return
    await websocket.accept()
    try:
        async for status in statuses:
            await websocket.send_text(status_response(status).model_dump_json())
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        return
