"""A real HTTP server of fixed answers (input images, audio, voice profiles, a Payload-CMS-shaped endpoint).

Tests register an answer at a path and hand its URL to the code under test; GET is matched without the
query string, POST routes are registered as ``"POST /path"`` and every POST is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from taskservice.devtools.local_server import LocalHandler, LocalHTTPServer

__all__ = ["Received", "Route", "StaticFileServer"]


@dataclass(frozen=True)
class Route:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    """One POST: ``headers`` keys are lowercased."""

    path: str
    headers: dict[str, str]
    body: bytes


_NOT_FOUND = Route(404, "text/plain", b"not found")
_NO_POST_ROUTE = Route(404, "application/json", b"{}")


class _Handler(LocalHandler):
    def do_GET(self) -> None:
        owner: StaticFileServer = self.owner
        self._answer(owner.route(self.path.split("?", 1)[0]) or _NOT_FOUND)

    def do_POST(self) -> None:
        owner: StaticFileServer = self.owner
        body = self.read_body()
        owner._record(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self._answer(owner.route("POST " + self.path) or _NO_POST_ROUTE)

    def _answer(self, route: Route) -> None:
        if route.delay_s:
            time.sleep(route.delay_s)
        self.send_body(route.status, route.body, route.content_type, route.headers)


class StaticFileServer(LocalHTTPServer):
    """`put(path, body, content_type)` answers GET `path` from now on; anything else is a 404."""

    handler = _Handler
    thread_name = "static-files"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        self._received: list[Received] = []
        self._count = 0

    @property
    def base_url(self) -> str:
        return self.url("").rstrip("/")

    def put(
        self,
        path: str,
        body: bytes,
        content_type: str,
        *,
        status: int = 200,
        delay_s: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Answer `path` (or `"POST /path"`) with this body from now on; returns the URL of `path`."""
        with self._lock:
            self._routes[path] = Route(status, content_type, body, headers or {}, delay_s)
        return self.base_url + path.removeprefix("POST ")

    def add(self, body: bytes, content_type: str, *, name: str = "file", status: int = 200) -> str:
        """Serve `body` at a fresh path ending in `name`; returns its URL."""
        with self._lock:
            self._count += 1
            path = f"/f{self._count}/{name}"
        return self.put(path, body, content_type, status=status)

    def add_json(self, document: Any) -> str:
        return self.add(json.dumps(document).encode(), "application/json", name="profile.json")

    def route(self, key: str) -> Route | None:
        with self._lock:
            return self._routes.get(key)

    @property
    def received(self) -> list[Received]:
        """Snapshot (copy) of every POST so far, in arrival order."""
        with self._lock:
            return list(self._received)

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)
