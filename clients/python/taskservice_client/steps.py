"""The steps an operation asks its transport to perform, and the stepping of one operation.

An operation of the SDK (submit, wait, list, ...) is a generator: it yields steps, gets back each step's
outcome (an error of the HTTP layer is thrown in at the step instead) and returns its result. It does no I/O
itself, so the blocking and the asyncio client run the very same operations; only ``transport`` differs.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

T = TypeVar("T")
E = TypeVar("E")
R = TypeVar("R")


@dataclass(frozen=True)
class HttpCall:
    """Send one request; the outcome is the ``httpx.Response``."""

    method: str
    url: str
    params: dict[str, str | int] | None = None
    json: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    timeout: httpx.Timeout | None = None  # None: the HTTP client's own

    def build(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The request, with the HTTP client's defaults (headers, cookies, timeout) merged in."""
        return http.build_request(
            self.method,
            self.url,
            params=self.params,
            json=self.json,
            headers=self.headers,
            timeout=self.timeout or httpx.USE_CLIENT_DEFAULT,
        )


@dataclass(frozen=True)
class OpenEventStream:
    """Open ``call`` as a streamed GET; the outcome is the response. Unless it is a live event stream
    (``events.is_live_event_stream``) its body is read whole. One stream is open at a time: the next open,
    or the end of the operation, closes it."""

    call: HttpCall


@dataclass(frozen=True)
class NextEventLine:
    """The outcome is the next line of the open event stream, or None where it ended."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit(Generic[T]):
    """Hand ``item`` to the caller: the next item of an iterator, or the argument of a progress callback."""

    item: T


Step = HttpCall | OpenEventStream | NextEventLine | Sleep

Operation = Generator[Step, Any, R]
"""An operation that returns an R and emits nothing."""

Emitting = Generator[Step | Emit[E], Any, R]
"""An operation that emits E items on its way to returning an R."""


class Stepper(Generic[R]):
    """Steps one operation. Iterating it gives the operation's steps and emits; before taking the next one,
    the transport sets ``outcome`` (or ``error``) to what the last step gave. ``result`` is what the
    operation returned, once the iteration is over."""

    result: R

    def __init__(self, operation: Generator[Any, Any, R]) -> None:
        self._operation = operation
        self.outcome: object = None
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[Step | Emit[Any]]:
        while True:
            outcome, error, self.outcome, self.error = self.outcome, self.error, None, None
            try:
                step: Step | Emit[Any] = (
                    self._operation.send(outcome) if error is None else self._operation.throw(error)
                )
            except StopIteration as done:
                self.result = done.value
                return
            yield step

    def close(self) -> None:
        self._operation.close()
