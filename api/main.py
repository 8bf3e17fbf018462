"""`create_app(settings)`: the FastAPI application."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from api.domain.errors import (
    ServiceError,
    ValidationFailed,
    error_body,
    error_headers,
    from_temporal,
    status_and_code,
)
from api.domain.validation import details_from_errors
from api.graphql.ide_assets import router as graphiql_assets
from api.graphql.schema import graphql_router
from api.rest.body_limit import BodyLimit
from api.rest.openapi import install_openapi, operation_id
from api.rest.route_errors import route_error_body
from api.rest.routes import (
    admin,
    batch,
    estimates,
    health,
    media,
    pipelines,
    projects,
    queues,
    statistics,
    streams,
    tasks,
    usage,
    webhooks,
    workers,
)
from api.runtime import Services
from api.socketio.server import mount_socketio
from taskservice.settings import Settings
from taskservice.tracing import Tracing, instrument_httpx, scrub_server_span

API_DESCRIPTION = """Durable AI task processing on Temporal, behind the Celery service's REST contract.

**Tenants and credentials.** Every task belongs to a tenant; a caller sees only its own tenant's tasks
(another tenant's task answers `404 task_not_found`, as a missing one does). Credentials:
- `X-API-Key`: a key of `API_KEY` / `CELERY_TASK_API_KEY` (tenant `default`; several comma-separated keys are
  rotation within it), or of `API_KEYS` / `API_KEYS_FILE`, whose entries are `tenant=key` pairs separated by
  commas (the file: one or more per line, `#` starts a comment), where a key may also be written
  `sha256:<64 hex digits>` (its SHA-256 digest, so the file holds no secret). An API key sees its whole
  tenant.
- `Authorization: Bearer <JWT>` (HS256, `JWT_SECRET`): `sub` and `exp` required; the tenant is the
  `JWT_TENANT_CLAIM` claim (default `tenant`), else `JWT_DEFAULT_TENANT`. A token sees the tasks its own `sub`
  created, unless `role` is `service` (its whole tenant) or `admin` (every tenant).
- `ADMIN_API_KEY`: operators; every tenant, and the admin endpoints.

**Limits** (per tenant, per API replica): submissions and reads per minute (a batch of N costs N, listings and
statistics one read per Temporal query they run), open streams, request bodies (`413 payload_too_large`).

**Errors** share one body: `error` (a code), `message`, and per code `details` (`validation_error`, keyed by
dotted field path), `retry_after` (`rate_limited`, `service_unavailable`, also as `Retry-After`), `detail`
(`invalid_task_state`). A path that is no route answers `404 not_found`; a method a route does not serve,
`405 method_not_allowed` with `Allow`; a body over the limit, `413 payload_too_large`.
"""
OPENAPI_TAGS = [
    {"name": "tasks", "description": "Submit, read, cancel and retry tasks (seed 001; seed 002's views)."},
    {"name": "projects", "description": "A project's tasks."},
    {"name": "webhooks", "description": "The tenant's webhook secret; failed deliveries, sent again."},
    {"name": "events", "description": "Live progress as Server-Sent Events."},
    {"name": "queues", "description": "Task queues: backlog and workers."},
    {
        "name": "usage",
        "description": "What a tenant's tasks used: device and run time, by project, type and day.",
    },
    {"name": "workers", "description": "Worker processes as they report themselves."},
    {"name": "health", "description": "Liveness, service health and Prometheus metrics."},
    {"name": "admin", "description": "Operators only (ADMIN_API_KEY)."},
    {"name": "media", "description": "Result files of the local storage backend, at signed URLs."},
]


def error_response(err: ServiceError) -> JSONResponse:
    return JSONResponse(error_body(err), status_code=status_and_code(err)[0], headers=error_headers(err))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, err: ServiceError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(RPCError)
    async def temporal_error(request: Request, err: RPCError) -> JSONResponse:
        return error_response(from_temporal(err))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        body, headers = route_error_body(request, err)
        return JSONResponse(body, status_code=err.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, Any]] = list(err.errors())
        details = details_from_errors(errors, strip=("body", "query", "path", "header"))
        return error_response(ValidationFailed(details, message="Invalid request"))


def _install_http_metrics(app: FastAPI, services: Services) -> None:
    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # The route's template as documented (`{task_id}`, not its `{task_id:task_id}` convertor).
        path = getattr(route, "path_format", None) or getattr(route, "path", "unmatched")
        services.metrics.http_requests.labels(request.method, path, str(response.status_code)).inc()
        services.metrics.http_latency.labels(request.method, path).observe(time.perf_counter() - started)
        return response


def _install_tracing(app: FastAPI, services: Services, tracing: Tracing) -> None:
    """Requests as server spans, httpx calls as client spans, and the Temporal calls a request makes under
    them (the workflow it starts continues its trace)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracing.provider,
        excluded_urls=tracing.excluded_urls,
        server_request_hook=scrub_server_span,
        # The ASGI receive/send sub-spans say nothing an operator needs, a long stream makes thousands.
        exclude_spans=["receive", "send"],
    )
    instrument_httpx(tracing)
    services.temporal_interceptors = (tracing.temporal_interceptor(),)


def create_app(settings: Settings | None = None, *, tracing: Tracing | None = None) -> FastAPI:
    """The application; with `tracing` (from the entry point), requests and what they start are traced."""
    settings = settings or Settings()
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.open()
        yield
        await services.close()

    # Swagger UI and ReDoc from the package's own copies (no CDN: they render offline, air-gapped too).
    app = FastAPIOffline(
        title="Aladdin Task Service",
        version="1.0.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=OPENAPI_TAGS,
        # No online validator badge: it would call validator.swagger.io from the reader's browser.
        swagger_ui_parameters={"validatorUrl": None},
        generate_unique_id_function=operation_id,
    )
    install_openapi(app)
    # Larger bodies are refused (413) before they are read whole, let alone parsed or started.
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.state.services = services
    _install_http_metrics(app, services)
    _install_error_handlers(app)
    routers = (
        health,
        estimates,
        tasks,
        webhooks,
        batch,
        statistics,
        projects,
        queues,
        usage,
        workers,
        admin,
        streams,
        media,
        pipelines,
    )
    for module in routers:
        app.include_router(module.router)
    app.include_router(graphql_router(services))  # seed 003's GraphQL API at /graphql
    app.include_router(graphiql_assets)  # its browser IDE's files, served here (offline)
    mount_socketio(app, services)  # seed 003's Socket.IO events at /ws/ai-tasks and /socket.io
    if tracing is not None:
        _install_tracing(app, services, tracing)
    return app
