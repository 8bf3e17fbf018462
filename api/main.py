"""`create_app(settings)`: the FastAPI application."""

from __future__ import annotations

import logging
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Services
from api.errors import ServiceError, ServiceUnavailable, ValidationFailed
from api.graphql_schema import graphql_router
from api.ratelimit import RateLimiter
from api.routes import compat, health, projects, streams, tasks
from api.schemas import ErrorResponse
from api.socketio_server import mount_socketio
from api.validation import details_from_errors
from taskservice.settings import Settings

log = logging.getLogger("taskservice.api")

UNAVAILABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}


def _api_keys(settings: Settings) -> list[bytes]:
    keys = settings.accepted_api_keys()
    if not keys:
        # Development only (production refuses to start without a key, see Settings).
        key = "dev-" + secrets.token_urlsafe(18)
        print(f"No API_KEY set: this development API accepts X-API-Key: {key}", file=sys.stderr)
        keys = [key]
    return [k.encode() for k in keys]


def _error_response(err: ServiceError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status_code, headers=err.headers())


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    services = Services(
        settings=settings,
        api_keys=_api_keys(settings),
        admin_keys=[
            k.strip().encode()
            for k in (settings.admin_api_key.get_secret_value().split(",") if settings.admin_api_key else [])
            if k.strip()
        ],
        submit_limiter=RateLimiter(settings.rate_limit_submit_per_min),
        status_limiter=RateLimiter(settings.rate_limit_status_per_min),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.open()
        yield
        await services.close()

    app = FastAPI(
        title="Aladdin Task Service",
        version="1.0.0",
        description="Durable AI task processing on Temporal, behind the Celery service's REST contract.",
        lifespan=lifespan,
    )
    app.state.services = services

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        services.metrics.http_requests.labels(request.method, path, str(response.status_code)).inc()
        services.metrics.http_latency.labels(request.method, path).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, err: ServiceError) -> JSONResponse:
        return _error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        """Framework-raised errors (unparsable body, unknown route, wrong method) in the same error format."""
        names = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        body = {"error": names.get(err.status_code, "http_error"), "message": str(err.detail)}
        return JSONResponse(body, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, Any]] = list(err.errors())
        details = details_from_errors(errors, strip=("body", "query", "path", "header"))
        return _error_response(ValidationFailed(details, message="Invalid request"))

    @app.exception_handler(RPCError)
    async def temporal_error(request: Request, err: RPCError) -> JSONResponse:
        if err.status in UNAVAILABLE:
            return _error_response(
                ServiceUnavailable("Temporal is unreachable or overloaded; try again shortly")
            )
        log.error("Temporal call failed", extra={"status": err.status.name, "error": err.message})
        return JSONResponse({"error": "internal_error", "message": "Temporal call failed"}, status_code=500)

    # Every route can answer these (error bodies per api/errors.py); declared so the OpenAPI document is true.
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": text}
        for code, text in (
            (400, "Validation error (details keyed by field path) or a request the task's state refuses"),
            (401, "Missing or invalid API key"),
            (403, "Needs the admin key"),
            (404, "Task not found"),
            (422, "Idempotency-Key reused with another body"),
            (429, "Rate limited (see Retry-After)"),
            (503, "Temporal unreachable (see Retry-After)"),
        )
    }
    app.include_router(health.router, responses=errors)
    # Fixed paths such as /tasks/bulk/retry go before /tasks/{task_id}/... patterns.
    app.include_router(compat.router, responses=errors)
    app.include_router(tasks.router, responses=errors)
    app.include_router(projects.router, responses=errors)
    app.include_router(streams.router, responses=errors)
    app.include_router(compat.task_router, responses=errors)
    app.include_router(graphql_router(services))  # seed 003's GraphQL API at /graphql
    mount_socketio(app, services)  # seed 003's Socket.IO events at /ws/ai-tasks and /socket.io
    if settings.storage_backend == "local":
        media = settings.data_dir / "media"
        media.mkdir(parents=True, exist_ok=True)
        app.mount("/media", StaticFiles(directory=media), name="media")
    return app
