"""Time before acting: a quote of a submit body (nothing starts) and each task type's learned model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header
from pydantic import BaseModel

from api.domain.errors import DeadlineUnreachable, ValidationFailed
from api.rest.commands import start_task
from api.rest.deps import CallerDep, TaskServiceDep
from api.rest.headers import prefers_strict
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses, submit_examples
from api.rest.render import quote_response
from api.rest.schemas import SubmitTaskRequest, TaskQuoteResponse
from api.service.estimates import TypeModel

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"], route_class=DocumentedRoute)


class DurationModelBody(BaseModel):
    """A task type's duration model: `seconds ~ intercept_s + slope_s * work_units` over its newest build's
    samples, and how far measured times fell from it (relative error, p50 and p90)."""

    task_type: str
    basis: str
    samples: int
    build: str | None
    prior_s: float
    intercept_s: float | None = None
    slope_s: float | None = None
    error_p50: float | None = None
    error_p90: float | None = None


class DurationModelsResponse(BaseModel):
    min_samples: int
    models: list[DurationModelBody]


def _model_body(model: TypeModel) -> DurationModelBody:
    body = DurationModelBody(
        task_type=model.task_type,
        basis=model.basis,
        samples=model.samples,
        build=model.build,
        prior_s=model.prior_s,
    )
    if model.fit is not None:
        body.intercept_s = round(model.fit.intercept_s, 6)
        body.slope_s = round(model.fit.slope_s, 9)
        body.error_p50 = round(model.fit.error_p50, 4)
        body.error_p90 = round(model.fit.error_p90, 4)
    return body


@router.post(
    "/quote",
    responses=error_responses(ValidationFailed, DeadlineUnreachable, *AUTHENTICATED),
)
async def quote_task(
    body: Annotated[SubmitTaskRequest, Body(openapi_examples=submit_examples())],
    caller: CallerDep,
    tasks: TaskServiceDep,
    prefer: Annotated[
        str | None,
        Header(alias="Prefer", max_length=200, description="`handling=strict`: as a strict submit would."),
    ] = None,
) -> TaskQuoteResponse:
    """Quote a task: when it would start and finish.

    Takes a submit body, checks it as a submit would and answers the estimate a submit would get, starting
    nothing. Costs a read token, not a submit token. A strict deadline it would miss answers 422
    `deadline_unreachable`, as the submit would.
    """
    command = start_task(caller, body, strict=prefers_strict(prefer))
    return quote_response(await tasks.quote(caller, command))


@router.get("/estimates", responses=error_responses(*AUTHENTICATED))
async def duration_models(caller: CallerDep, tasks: TaskServiceDep) -> DurationModelsResponse:
    """Each task type's duration model.

    Learned from finished tasks' measured run times against their work units (per worker build), or the
    catalog's prior until `ETA_MIN_SAMPLES` have finished. No task or tenant is named.
    """
    models = await tasks.duration_models(caller)
    return DurationModelsResponse(
        min_samples=tasks.settings.eta_min_samples, models=[_model_body(m) for m in models]
    )
