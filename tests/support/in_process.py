"""An API replica served in the test's own process (its lifespan, its dependencies, one replica's services
across requests), for what only this process can observe, such as the store's visibility queries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from api.main import create_app
from taskservice.settings import Settings
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
