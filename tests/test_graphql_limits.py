"""GraphQL documents are bounded before they run (depth, aliases, tokens), and production hides the schema
(no introspection, no GraphiQL page). The app is built in process: what is refused never reaches Temporal."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.graphql.schema import MAX_ALIASES, MAX_DEPTH
from api.main import create_app
from taskservice.settings import Settings
from tests.support.stack import WEBHOOK_SECRET

KEY = "graphql-limits-key-0123456789"


@pytest.fixture(params=["development", "production"])
async def graphql(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    settings = Settings(
        environment=request.param,
        api_key=KEY,
        media_signing_key="graphql-limits-media-signing-key",
        webhook_secret=WEBHOOK_SECRET,
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers={"X-API-Key": KEY}) as c:
        yield request.param, c


async def _errors(client: httpx.AsyncClient, query: str) -> list[str]:
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body.get("data") is None, body
    return [error["message"] for error in body["errors"]]


def _aliased(count: int) -> str:
    return "{ " + " ".join(f"a{i}: taskQueueStatus {{ queueHealth }}" for i in range(count)) + " }"


async def test_a_5000_alias_query_is_refused_in_under_a_second(
    graphql: tuple[str, httpx.AsyncClient],
) -> None:
    _, client = graphql
    await client.post("/graphql", json={"query": "{ __typename }"})  # the app's first request is not timed
    started = time.monotonic()
    errors = await _errors(client, _aliased(5000))
    took = time.monotonic() - started
    print(f"\ngraphql: a 5 000-alias query refused in {took:.2f} s: {errors[0]}")
    assert "more than" in errors[0] and "tokens" in errors[0]
    assert took < 1.0


async def test_aliases_and_depth_are_capped(graphql: tuple[str, httpx.AsyncClient]) -> None:
    _, client = graphql
    assert f"Allowed: {MAX_ALIASES}" in (await _errors(client, _aliased(MAX_ALIASES + 1)))[0]
    deep = '{ aiTask(id: "x") ' + "{ a " * MAX_DEPTH + "{ b }" + " }" * MAX_DEPTH + " }"
    assert f"exceeds maximum operation depth of {MAX_DEPTH}" in " ".join(await _errors(client, deep))


async def test_production_hides_the_schema(graphql: tuple[str, httpx.AsyncClient]) -> None:
    environment, client = graphql
    introspection = await client.post("/graphql", json={"query": "{ __schema { types { name } } }"})
    ide = await client.get("/graphql", headers={"Accept": "text/html"})
    if environment == "production":
        assert "introspection has been disabled" in introspection.json()["errors"][0]["message"]
        assert ide.status_code == 404
    else:
        assert introspection.json()["data"]["__schema"]["types"]
        assert ide.status_code == 200 and "graphiql" in ide.text.lower()
