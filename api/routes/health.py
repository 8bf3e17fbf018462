"""Service health: a cheap liveness probe and the seed's detailed health."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from temporalio.service import RPCError

from api.deps import CallerDep, ServicesDep, authenticate_credentials
from api.errors import ServiceUnavailable
from api.schemas import HealthResponse, SystemLoad
from taskservice import system
from taskservice.queues import Queue

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Needs a key like every route: `X-API-Key`, or `Authorization: Bearer <API key>` (what "
    "Prometheus sends with `authorization: {credentials: ...}` in its scrape config).",
    response_class=PlainTextResponse,
)
async def prometheus_metrics(
    services: ServicesDep,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    bearer = (
        authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else None
    )
    authenticate_credentials(services, x_api_key or bearer, authorization if not bearer else None)
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/health", summary="Liveness probe (no auth)")
async def liveness() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/v1/health", response_model=HealthResponse, summary="Service health")
async def health(caller: CallerDep, services: ServicesDep, response: Response) -> HealthResponse:
    temporal_status = "connected"
    worker_ids: set[str] = set()
    queue_sizes = {q.value: 0 for q in Queue}
    try:
        states = await services.store().all_queue_states()
    except (RPCError, ServiceUnavailable):
        temporal_status = "disconnected"
    else:
        for state in states.values():
            queue_sizes[state.name] = state.backlog
            worker_ids.update(state.pollers)
    if temporal_status == "disconnected":
        status = "unhealthy"
        response.status_code = 503
    else:
        status = "healthy" if worker_ids else "degraded"
    return HealthResponse(
        status=status,
        temporal_status=temporal_status,
        worker_count=len(worker_ids),
        queue_sizes=queue_sizes,
        system_load=SystemLoad(
            cpu_percent=system.cpu_percent(),
            memory_percent=system.memory_percent(),
            gpu_utilization=system.gpu_utilization(),
        ),
        uptime=int(time.monotonic() - services.started_at),
    )
