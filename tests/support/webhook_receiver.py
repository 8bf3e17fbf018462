"""A real HTTP endpoint that records webhook deliveries, so tests see exactly what went over the wire.

Each POST is recorded on arrival (before any configured delay), then answered
with the configured status after the configured delay. Delays run in the request's own thread and are
cut short by ``stop()``, so a 35 s "slow receiver" never hangs test teardown.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from taskservice.devtools.local_server import LocalHandler, LocalHTTPServer

__all__ = ["ReceivedWebhook", "WebhookReceiver"]


@dataclass(frozen=True)
class ReceivedWebhook:
    """One delivery: ``path`` includes any query string, ``headers`` keys are lowercased."""

    path: str
    headers: dict[str, str]
    body_bytes: bytes
    json: Any | None
    received_at: float = field(default_factory=time.monotonic)


class _Handler(LocalHandler):
    server_version = "FakeWebhookReceiver/1.0"

    def do_POST(self) -> None:
        owner: WebhookReceiver = self.owner
        body = self.read_body()
        try:
            parsed: Any | None = json.loads(body) if body else None
        except ValueError:
            parsed = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, delay = owner._arrive(ReceivedWebhook(self.path, headers, body, parsed))
        if delay > 0 and owner.stopping.wait(delay):
            self.close_connection = True  # stopped mid-delay: hang up without answering
            return
        self.send_body(status, json.dumps({"ok": 200 <= status < 300, "status": status}).encode())

    def do_GET(self) -> None:
        self.send_body(405, b'{"error": "webhooks are POSTed"}')

    do_PUT = do_PATCH = do_DELETE = do_GET


class WebhookReceiver(LocalHTTPServer):
    """Records POSTs on 127.0.0.1 from a daemon thread; the answer (status, delay) is scriptable."""

    handler = _Handler
    thread_name = "webhook-receiver"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self._cond = threading.Condition()
        self._received: list[ReceivedWebhook] = []
        self._default: tuple[int, float] = (200, 0.0)
        self._sequence: deque[tuple[int, float]] = deque()

    # configuration (safe to call at any time, from any thread)

    def url(self, path: str = "/hook") -> str:
        """Absolute URL of ``path`` on this receiver, for use as a callback_url."""
        return super().url(path)

    def respond_with(self, status: int, delay_s: float = 0.0) -> None:
        """Default answer for every request not covered by ``respond_sequence``."""
        with self._cond:
            self._default = (status, delay_s)

    def respond_sequence(self, responses: Iterable[tuple[int, float]]) -> None:
        """Answers for the next requests, one each in order; afterwards the default applies again."""
        with self._cond:
            self._sequence = deque((int(s), float(d)) for s, d in responses)

    # observation

    @property
    def received(self) -> list[ReceivedWebhook]:
        """Snapshot (copy) of every delivery so far, in arrival order."""
        with self._cond:
            return list(self._received)

    def clear(self) -> None:
        """Forget recorded deliveries (the response configuration is kept)."""
        with self._cond:
            self._received.clear()

    def wait_for(self, count: int, timeout: float) -> list[ReceivedWebhook]:
        """Block until at least ``count`` deliveries arrived; return all of them, else AssertionError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [
                        (w.path, w.json if w.json is not None else w.body_bytes[:200]) for w in self._received
                    ]
                    raise AssertionError(
                        f"expected at least {count} webhook(s) within {timeout:g}s on {self.url('')}, "
                        f"got {len(got)}: {got!r}"
                    )
                self._cond.wait(remaining)
            return list(self._received)

    def _arrive(self, webhook: ReceivedWebhook) -> tuple[int, float]:
        """Record a delivery and pick its answer (called from handler threads)."""
        with self._cond:
            self._received.append(webhook)
            answer = self._sequence.popleft() if self._sequence else self._default
            self._cond.notify_all()
        return answer
