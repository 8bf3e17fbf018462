"""Errors the router raises itself (a path that is no route, a method a route does not serve), said plainly.

A 405's `Allow` lists every method the path answers: Starlette names only the first route that matched the
path, and `/api/v1/tasks/{task_id}` is two routes (GET and DELETE).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.routing import Match

HTTP_ERROR_NAMES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """The methods some route serves at this request's path."""
    routes = request.app.router.routes
    return [
        method
        for method in METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


def route_error_body(request: Request, err: HTTPException) -> tuple[dict[str, Any], Mapping[str, str] | None]:
    """The error body (and headers) of a framework-raised HTTP error, in the API's error format."""
    name = HTTP_ERROR_NAMES.get(err.status_code, "http_error")
    where = f"{request.method} {request.url.path}"
    if err.status_code == 404 and err.detail == "Not Found":
        return {"error": name, "message": f"No route {where}; the routes are listed at /docs"}, err.headers
    if err.status_code == 405:
        allowed = allowed_methods(request) or sorted((err.headers or {}).get("Allow", "").split(", "))
        message = f"{request.method} is not allowed on {request.url.path}; it answers {', '.join(allowed)}"
        return {"error": name, "message": message}, {**(err.headers or {}), "Allow": ", ".join(allowed)}
    return {"error": name, "message": str(err.detail)}, err.headers
