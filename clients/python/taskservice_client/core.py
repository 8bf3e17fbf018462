"""``ClientCore``: what both clients share, free of I/O: configuration, request building, retry decisions
and error mapping. Its ``_request`` is an operation (see ``steps``) that the clients' transports run; the
retry rules are the ones the ``client`` module describes (a POST is not retried after a transport error,
since it may have reached the server).
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from taskservice_client.errors import ServiceConnectionError, error_from_response, retry_after_seconds
from taskservice_client.steps import HttpCall, Operation, Sleep
from taskservice_client.version import __version__

DEFAULT_URL = "http://localhost:8001"
ENV_URL = "TASK_SERVICE_URL"
ENV_API_KEY = "TASK_SERVICE_API_KEY"
ENV_API_KEY_FALLBACK = "CELERY_TASK_API_KEY"
RETRYABLE_STATUS = (429, 503)
# How long an event stream may stay silent before the SDK reconnects (servers send keep-alives sooner).
SSE_IDLE_TIMEOUT_S = 60.0
# The longest a `/status?wait=` read waits on the server (its own cap), and how much longer the SDK gives
# the answer to arrive before it calls the read timed out.
LONG_POLL_MAX_S = 60
LONG_POLL_GRACE_S = 15.0


class ClientCore:
    """Configuration and request rules of a client; ``TaskServiceClient`` and ``AsyncTaskServiceClient``
    add a transport that performs the operations built on it. The underscored members are internal to the
    SDK: its ``operations`` and ``following`` modules use them."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        max_retry_wait: float,
        use_sse: bool,
        use_long_poll: bool = True,
    ) -> None:
        self.base_url = (base_url or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")
        if api_key is None:
            api_key = os.environ.get(ENV_API_KEY) or os.environ.get(ENV_API_KEY_FALLBACK)
        self.api_key = api_key or None
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.max_retry_wait = max_retry_wait
        # None: not yet known; False: this server answered that it has no event stream.
        self._sse_available: bool | None = None if use_sse else False
        # None: not yet known; False: this server ignores `/status?wait=` (an older one: no ETag answered).
        self._long_poll_available: bool | None = None if use_long_poll else False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"taskservice-client/{__version__}"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers | (extra or {})

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to sleep before retrying this answer, or None to raise it."""
        if response.status_code not in RETRYABLE_STATUS or attempt >= self.max_retries:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        delay = retry_after_seconds(response, body)
        if delay is None:
            delay = min(0.5 * 2.0**attempt, self.max_retry_wait)
        return delay if delay <= self.max_retry_wait else None

    def _connect_retry_delay(self, method: str, attempt: int) -> float | None:
        # Only reads are retried after a transport error: a POST may have reached the server.
        if method != "GET" or attempt >= self.max_retries:
            return None
        return min(0.5 * 2.0**attempt, self.max_retry_wait)

    def _connection_error(self, err: httpx.HTTPError) -> ServiceConnectionError:
        kind = "timed out" if isinstance(err, httpx.TimeoutException) else "failed"
        return ServiceConnectionError(
            f"Request to {self.base_url} {kind}: {err or type(err).__name__}", error="connection_error"
        )

    def _long_poll_timeout(self, wait_s: float) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=self.timeout + wait_s + LONG_POLL_GRACE_S)

    def _sse_timeout(self, deadline: float | None) -> httpx.Timeout:
        read = SSE_IDLE_TIMEOUT_S
        if deadline is not None:
            read = max(0.05, min(read, deadline - time.monotonic()))
        return httpx.Timeout(self.timeout, read=read)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
        accept: tuple[int, ...] = (),
        timeout: httpx.Timeout | None = None,
    ) -> Operation[httpx.Response]:
        """One API call with its retries; raises the SDK's error for an error answer not in ``accept``."""
        call = HttpCall(
            method,
            self._url(path),
            params=params,
            json=json_body,
            headers=self._headers(headers),
            timeout=timeout,
        )
        attempt = 0
        while True:
            try:
                response: httpx.Response = yield call
            except httpx.TransportError as err:
                delay = self._connect_retry_delay(method, attempt) if retry else None
                if delay is None:
                    raise self._connection_error(err) from err
            else:
                if response.is_success or response.status_code in accept:
                    return response
                delay = self._retry_delay(response, attempt) if retry else None
                if delay is None:
                    raise error_from_response(response)
            yield Sleep(delay)
            attempt += 1
