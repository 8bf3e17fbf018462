"""Dependencies: the app's services, the caller's identity, rate limits."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated

import jwt
from fastapi import Depends, Header, Request
from temporalio.client import Client
from temporalio.service import RPCError

from api.caller import Caller, key_id
from api.errors import AuthenticationFailed, RateLimited, ServiceUnavailable
from api.ratelimit import RateLimiter
from api.service import TaskService
from api.taskstore import TaskStore
from taskservice.settings import Settings
from taskservice.telemetry import ApiMetrics
from taskservice.temporal import connect

log = logging.getLogger("taskservice.api")

RECONNECT_EVERY_S = 2.0
METRICS_REFRESH_S = 10.0


@dataclass
class Services:
    """Everything the routes use, opened once in the lifespan and kept on `app.state.services`."""

    settings: Settings
    api_keys: list[bytes]
    admin_keys: list[bytes]
    submit_limiter: RateLimiter
    status_limiter: RateLimiter
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    started_at: float = field(default_factory=time.monotonic)
    client: Client | None = None
    _connector: asyncio.Task[None] | None = None
    _refresher: asyncio.Task[None] | None = None
    _store: TaskStore | None = None

    async def open(self) -> None:
        """Connect to Temporal; if it is down, keep trying in the background and answer 503 meanwhile."""
        if not await self._try_connect():
            self._connector = asyncio.create_task(self._reconnect_forever())
        self._refresher = asyncio.create_task(self._refresh_metrics_forever())

    async def close(self) -> None:
        for task in (self._connector, self._refresher):
            if task is not None:
                task.cancel()

    async def _refresh_metrics_forever(self) -> None:
        """Keep the Prometheus gauges that come from Temporal (backlog, pollers, outcomes) fresh."""
        while True:
            try:
                store = self.store()
                states = await store.all_queue_states()
                for state in states.values():
                    self.metrics.queue_backlog.labels(state.name).set(state.backlog)
                    self.metrics.queue_pollers.labels(state.name).set(len(state.pollers))
                self.metrics.finished.state = await store.metrics_state()
                self.metrics.temporal_up.set(1)
            except (ServiceUnavailable, RPCError):
                self.metrics.temporal_up.set(0)
            await asyncio.sleep(METRICS_REFRESH_S)

    async def _try_connect(self) -> bool:
        try:
            self.client = await connect(self.settings)
        except RuntimeError as err:
            log.warning(
                "Temporal is unreachable",
                extra={"address": self.settings.temporal_address, "error": str(err)},
            )
            return False
        log.info("Connected to Temporal", extra={"address": self.settings.temporal_address})
        return True

    async def _reconnect_forever(self) -> None:
        while not await self._try_connect():
            await asyncio.sleep(RECONNECT_EVERY_S)

    def store(self) -> TaskStore:
        if self.client is None:
            raise ServiceUnavailable("Temporal is unreachable; the task service cannot accept or read tasks")
        # One store per connection: it keeps the short-lived task-queue cache across requests.
        if self._store is None or self._store.client is not self.client:
            self._store = TaskStore(self.client, self.settings)
        return self._store


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_store(services: ServicesDep) -> TaskStore:
    return services.store()


StoreDep = Annotated[TaskStore, Depends(get_store)]


def authenticate_credentials(services: Services, api_key: str | None, authorization: str | None) -> Caller:
    """An API key (X-API-Key, or `?api_key=` for browsers' WebSockets) or, with JWT_SECRET, a Bearer JWT."""
    if api_key:
        provided = api_key.encode()
        # Compare against every key, in constant time each, so timing reveals neither key nor position.
        matched = False
        for key in services.api_keys:
            matched |= hmac.compare_digest(provided, key)
        admin = False
        for key in services.admin_keys:
            admin |= hmac.compare_digest(provided, key)
        if matched or admin:
            return Caller(key_id=key_id(api_key), is_admin=admin)
    elif authorization and authorization.lower().startswith("bearer ") and services.settings.jwt_secret:
        token = authorization[7:].strip()
        try:
            claims = jwt.decode(
                token,
                services.settings.jwt_secret.get_secret_value(),
                algorithms=["HS256"],
                options={"require": ["sub"]},
            )
        except jwt.PyJWTError:
            raise AuthenticationFailed("Invalid or expired token") from None
        return Caller(key_id=key_id(f"jwt:{claims['sub']}"), is_admin=claims.get("role") == "admin")
    raise AuthenticationFailed("Invalid or missing API key")


def authenticate(
    services: ServicesDep,
    x_api_key: Annotated[str | None, Header(description="The service's API key.")] = None,
    authorization: Annotated[str | None, Header(description="`Bearer <JWT>` when JWT_SECRET is set.")] = None,
) -> Caller:
    return authenticate_credentials(services, x_api_key, authorization)


CallerDep = Annotated[Caller, Depends(authenticate)]


def submit_quota(caller: CallerDep, services: ServicesDep) -> Caller:
    wait = services.submit_limiter.acquire(caller.key_id)
    if wait is not None:
        limit = services.settings.rate_limit_submit_per_min
        raise RateLimited(f"Submit rate limit of {limit} per minute exceeded", retry_after=wait)
    return caller


def read_quota(caller: CallerDep, services: ServicesDep) -> Caller:
    wait = services.status_limiter.acquire(caller.key_id)
    if wait is not None:
        limit = services.settings.rate_limit_status_per_min
        raise RateLimited(f"Status rate limit of {limit} per minute exceeded", retry_after=wait)
    return caller


SubmitCaller = Annotated[Caller, Depends(submit_quota)]
ReadCaller = Annotated[Caller, Depends(read_quota)]


def get_task_service(services: ServicesDep) -> TaskService:
    return TaskService(services.store(), services.settings, services.metrics)


TaskServiceDep = Annotated[TaskService, Depends(get_task_service)]
