"""Every route but the public ones refuses a missing or wrong API key, and keys are compared in constant time.

The routes come from the application's own route table, so a route added later is covered without editing
this test.
"""

from __future__ import annotations

import ast
import inspect
import re
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import SecretStr

from api import auth
from api.main import create_app
from taskservice.settings import Settings
from tests.support.stack import API_KEYS, Stack

# /media needs no key but a signed URL (tests/test_tenancy.py walks it).
# GraphiQL's scripts and styles are static files like the docs' (the page itself answers with the API).
PUBLIC_PATHS = {
    "/health",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
    "/media/{key}",
    "/graphql/ide/{name}",
}
WRONG_KEYS = {
    "missing": None,
    "empty": "",
    "wrong": "wrong-key",
    "prefix of a real key": API_KEYS[0][:-1],
    "real key plus a byte": API_KEYS[0] + "x",
    "real key in another case": API_KEYS[0].upper(),
}


def _route_table(app: FastAPI) -> list[tuple[str, set[str]]]:
    """(path, methods) of every route, with included routers flattened (FastAPI ≥ 0.16x includes lazily)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes already holds every APIRoute with its full path
        return [(r.path, set(r.methods or ())) for r in app.routes if isinstance(r, APIRoute)]
    return [
        # As documented: `{task_id}`, not the `{task_id:task_id}` convertor the route matches with.
        (re.sub(r"\{(\w+):\w+\}", r"{\1}", context.path), set(getattr(context, "methods", None) or ()))
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and context.path is not None
    ]


def _protected_routes() -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(api_key=SecretStr(",".join(API_KEYS)), data_dir=Path(data_dir))
        app = create_app(settings)
    routes: list[tuple[str, str]] = []
    for path, methods in _route_table(app):
        # Static mounts are not APIRoutes; the docs and liveness are public.
        if path in PUBLIC_PATHS:
            continue
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            routes.append((method, path))
    return routes


ROUTES = _protected_routes()


def _concrete(path: str) -> str:
    """Fill path parameters: IDs with a UUID, anything else (project IDs, names) with a valid word."""
    return re.sub(
        r"\{([^}:]+)(:[^}]*)?\}",
        lambda m: str(uuid.uuid4()) if m.group(1).endswith("id") and "project" not in m.group(1) else "p",
        path,
    )


def test_route_table_is_walked() -> None:
    paths = {path for _, path in ROUTES}
    assert {"/api/v1/tasks/submit", "/api/v1/tasks/{task_id}/status", "/api/v1/health"} <= paths
    assert "/health" not in paths


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_route_refuses_missing_or_wrong_key(stack: Stack, method: str, path: str) -> None:
    url = _concrete(path)
    body = {"project_id": "p", "task_type": "test_prompt", "task_data": {"prompt_template": "x"}}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        attempts = {label: {} if key is None else {"X-API-Key": key} for label, key in WRONG_KEYS.items()}
        attempts["a bearer token that is no JWT"] = {"Authorization": "Bearer not-a-jwt"}
        for label, headers in attempts.items():
            kwargs = {"json": body} if method in ("POST", "PUT", "PATCH") else {}
            response = await client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
            assert response.status_code == 401, f"{method} {url} with {label} key: {response.text}"
            assert response.json()["error"] == "authentication_failed", response.text


async def test_public_routes_need_no_key(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200


def _authentication_functions() -> list[ast.FunctionDef]:
    """`authenticate` and the helpers of api.auth it delegates to (authenticate_*, ...)."""
    module = ast.parse(inspect.getsource(auth))
    return [
        node
        for node in ast.walk(module)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("authenticate")
    ]


def test_keys_are_compared_in_constant_time() -> None:
    """Keys are compared with hmac.compare_digest against every key: no early exit, no `==` on a key."""
    functions = _authentication_functions()
    assert any(f.name == "authenticate" for f in functions)
    compare_loops = [
        loop
        for f in functions
        for loop in ast.walk(f)
        if isinstance(loop, ast.For)
        and any(isinstance(n, ast.Attribute) and n.attr == "compare_digest" for n in ast.walk(loop))
    ]
    assert compare_loops, "authentication must compare keys with hmac.compare_digest, over every key"
    for loop in compare_loops:
        # An early exit would reveal which key (and so how many keys) matched.
        assert not any(isinstance(n, ast.Break | ast.Return) for n in ast.walk(loop)), "no early exit"
    secrets_named = {"provided", "key", "api_key", "x_api_key"}
    for f in functions:
        for node in ast.walk(f):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                operands = [node.left, *node.comparators]
                named = {n.id for o in operands for n in ast.walk(o) if isinstance(n, ast.Name)}
                assert not named & secrets_named, f"{f.name}: a key compared with == / != (not constant time)"
