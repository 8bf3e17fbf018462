"""An API replica served in the test's own process (its lifespan, its dependencies, one replica's services
across requests), for what only this process can observe, such as the store's visibility queries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio.client import Client

from api.main import create_app
from api.store.store import TaskStore
from taskservice.settings import Settings
from taskservice.visibility import TaskQuery
from tests.support.stack import API_KEYS, Stack


@asynccontextmanager
async def app_client(stack: Stack, key: str = API_KEYS[0], **env: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client (with `key`) of an in-process replica with the stack's settings and `env` (values as the
    environment gives them)."""
    settings = Settings.model_validate({name.lower(): value for name, value in {**stack.env, **env}.items()})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers={"X-API-Key": key}, timeout=60
        ) as client:
            yield client


async def wait_unfinished(client: Client, tenant: str, expected: int, project_id: str | None = None) -> None:
    """Wait until visibility counts `expected` unfinished tasks of the tenant (or of its project): it records
    a start or a close a moment after the task's status says it, and a cap counts what visibility holds."""
    store, query = TaskStore(client), TaskQuery(tenant=tenant, project_id=project_id, running=True)
    deadline = time.monotonic() + 15
    while await store.count(query) != expected:
        assert time.monotonic() < deadline, f"visibility still does not count {expected} after 15 s"
        await asyncio.sleep(0.2)
