"""A small HTTP server on a local port, served from a daemon thread: the base of the development stand-ins.

Standard library only. `stop()` also sets `stopping`, so a handler that waits (a scripted delay) can use
`stopping.wait(seconds)` and give up at once when the server goes away: a stand-in never hangs a teardown.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self, cast

__all__ = ["LocalHandler", "LocalHTTPServer"]


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalHTTPServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out and hang up mid-answer are expected of a stand-in; keep output clean."""


class LocalHandler(BaseHTTPRequestHandler):
    """Request handler of a `LocalHTTPServer`: `owner` is the server object, answers are whole bodies."""

    # HTTP/1.0: one request per connection, so a stopped server never answers on a pooled connection.
    protocol_version = "HTTP/1.0"

    @property
    def owner(self) -> Any:
        return cast(_ThreadingServer, self.server).owner

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging: callers read what they need from what the server records."""

    def read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout, a size limit): nothing left to answer


class LocalHTTPServer:
    """Binds `host:port` (port 0 = a free one) and serves `handler` in a daemon thread until `stop()`."""

    handler: ClassVar[type[LocalHandler]] = LocalHandler
    thread_name: ClassVar[str] = "local-http"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self.stopping = threading.Event()
        self._httpd: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns self for chaining."""
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self.stopping = threading.Event()
        httpd = _ThreadingServer((self.host, self._port), self.handler)
        httpd.owner = self
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut short in-flight waits, close the socket. Idempotent and quick."""
        self.stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Foreground mode (a command-line entry point): serve until Ctrl-C."""
        if self._httpd is None:
            self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    def url(self, path: str = "/") -> str:
        """Absolute URL of `path` on this server."""
        return f"http://{self.host}:{self._port}/{path.lstrip('/')}"
