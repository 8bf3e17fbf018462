"""Service health: a cheap liveness probe, the seed's detailed health, and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from temporalio.service import RPCError

from api.domain.errors import AuthenticationFailed, Forbidden, ServiceUnavailable
from api.rest.deps import ApiKeyDep, BearerDep, CallerDep, ServicesDep
from api.rest.openapi import DocumentedRoute, error_responses
from api.rest.schemas import HealthResponse, SystemLoad
from api.service.admin import AdminService
from taskservice import system
from taskservice.queues import Queue

router = APIRouter(tags=["health"], route_class=DocumentedRoute)


@router.get(
    "/metrics", response_class=PlainTextResponse, responses=error_responses(AuthenticationFailed, Forbidden)
)
async def prometheus_metrics(services: ServicesDep, api_key: ApiKeyDep, bearer: BearerDep) -> Response:
    # Prometheus sends what its scrape config holds as a Bearer credential: here that is an API key.
    """Prometheus metrics (operators).

    The admin key (`ADMIN_API_KEY`), as `X-API-Key` or `Authorization: Bearer <key>` (what Prometheus sends
    with `authorization: {credentials: ...}` in its scrape config): the figures count every tenant's work.
    """
    caller = services.auth.authenticate(api_key or (bearer.credentials if bearer else None), None)
    AdminService.check_operator(caller, "Prometheus metrics")
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/health")
async def liveness() -> dict[str, str]:
    """Liveness probe (no auth).

    Answers as long as the API process serves requests; it asks Temporal nothing.
    """
    return {"status": "ok"}


@router.get(
    "/api/v1/health",
    responses={
        503: {"model": HealthResponse, "description": "Temporal is unreachable (`status: unhealthy`)."},
        **error_responses(AuthenticationFailed),
    },
)
async def health(caller: CallerDep, services: ServicesDep, response: Response) -> HealthResponse:
    """Service health.

    Seed 001's health: Temporal's connection, live workers, backlog per queue, system load. 503 (same body,
    `status: unhealthy`) when Temporal is unreachable.
    """
    temporal_status = "connected"
    live_workers = 0
    queue_sizes = {q.value: 0 for q in Queue}
    try:
        states = await services.store().queues.all()
        # Counted by the rule of /api/v1/workers/health, so the two endpoints agree.
        live_workers = sum(w.alive for w in await services.insights().worker_statuses())
    except (RPCError, ServiceUnavailable):
        temporal_status = "disconnected"
    else:
        for state in states.values():
            queue_sizes[state.name] = state.backlog
    if temporal_status == "disconnected":
        status = "unhealthy"
        response.status_code = 503
    else:
        status = "healthy" if live_workers else "degraded"
    return HealthResponse(
        status=status,
        temporal_status=temporal_status,
        worker_count=live_workers,
        queue_sizes=queue_sizes,
        system_load=SystemLoad(
            cpu_percent=system.cpu_percent(),
            memory_percent=system.memory_percent(),
            gpu_utilization=system.gpu_utilization(),
        ),
        uptime=int(time.monotonic() - services.started_at),
    )
