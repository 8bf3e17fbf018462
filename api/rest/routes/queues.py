"""Task queues: backlog, running tasks and workers of each."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from api.rest.deps import CallerDep, InsightServiceDep
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses
from api.rest.schemas import QueuesResponse, QueueStatus

router = APIRouter(prefix="/api/v1", tags=["queues"], route_class=DocumentedRoute)


@router.get("/queues", responses=error_responses(*AUTHENTICATED))
async def queue_status(caller: CallerDep, insights: InsightServiceDep) -> QueuesResponse:
    """Per-queue backlog and workers.

    Each activity queue: Temporal's backlog, the caller's running tasks, live pollers, configured
    concurrency and the task types it serves.
    """
    overview = await insights.queues(caller)
    return QueuesResponse(
        queues=[QueueStatus.model_validate(q) for q in overview.queues],
        timestamp=datetime.now(UTC),
    )
