"""What a tenant's tasks used: device and run time by project, task type and day."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.domain.errors import ValidationFailed
from api.rest.deps import CallerDep, ServicesDep
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses

router = APIRouter(prefix="/api/v1", tags=["usage"], route_class=DocumentedRoute)


class UsageRowBody(BaseModel):
    project_id: str
    task_type: str
    day: str = Field(description="UTC date the tasks finished (YYYY-MM-DD).")
    tasks: int
    processing_seconds: float
    gpu_seconds: float = Field(0.0, description="Seconds media tasks held a GPU (as their results report).")
    cpu_seconds: float = Field(0.0, description="Seconds media tasks ran on CPU workers.")


class UsageResponse(BaseModel):
    since: datetime = Field(alias="from")
    until: datetime = Field(alias="to")
    tasks: int
    truncated: bool = Field(description="True when more tasks finished than one answer sums (10 000).")
    totals: dict[str, float]
    usage: list[UsageRowBody]


@router.get(
    "/usage", responses=error_responses(ValidationFailed, *AUTHENTICATED), response_model_by_alias=True
)
async def usage(
    caller: CallerDep,
    services: ServicesDep,
    since: Annotated[
        datetime | None, Query(alias="from", description="Start, ISO 8601 with zone (default: 30 days ago).")
    ] = None,
    until: Annotated[datetime | None, Query(alias="to", description="End, exclusive (default: now).")] = None,
) -> UsageResponse:
    """What the caller's tasks used.

    The finished tasks of the caller's tenant (a user token: its own) in `[from, to)`, by project, task type
    and day: how many, their run time, and the device seconds media results report (`gpu_seconds`, or
    `cpu_seconds` on CPU workers). At most 93 days per request.
    """
    report = await services.usage().usage(caller, since, until)
    rows = [
        UsageRowBody(
            project_id=r.project_id,
            task_type=r.task_type,
            day=r.day,
            tasks=r.tasks,
            processing_seconds=r.processing_seconds,
            gpu_seconds=r.device_seconds.get("gpu_seconds", 0.0),
            cpu_seconds=r.device_seconds.get("cpu_seconds", 0.0),
        )
        for r in report.rows
    ]
    return UsageResponse.model_validate(
        {
            "from": report.since,
            "to": report.until,
            "tasks": report.tasks,
            "truncated": report.truncated,
            "totals": report.totals(),
            "usage": rows,
        }
    )
