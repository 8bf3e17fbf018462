"""A real HTTP server of fixed files (input images, audio, voice profiles) for end-to-end tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, cast


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, tuple[int, str, bytes]]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: tests read what they need from the responses."""

    def do_GET(self) -> None:
        server = cast(_Server, self.server)
        status, content_type, body = server.files.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FileServer:
    """`put(path, body, content_type)` then fetch `url(path)`; anything else is a 404."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.files = {}
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def put(self, path: str, body: bytes, content_type: str, status: int = 200) -> str:
        self._server.files[path] = (status, content_type, body)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"
