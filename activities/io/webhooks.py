"""Webhook delivery: one attempt per activity execution; the workflow's retry policy spaces them 1/2/4 s.

Each delivery is signed with its tenant's own secret (taskservice/webhook_secrets.py), and during a rotation
with the previous one too. Deliveries run on their own task queue; at most WEBHOOK_HOST_CONCURRENCY of them
talk to one receiver host at once per worker (one more is a failed attempt, `receiver busy`), and connecting
is bounded by WEBHOOK_CONNECT_TIMEOUT_S, so a slow receiver holds a few slots, not everyone's.
When the seed's last attempt fails, the delivery is recorded (activities/io/webhook_records.py).

The request goes to the address the SSRF check approved (no second DNS answer can send it elsewhere),
redirects are not followed (a 3xx is a failed attempt), and at most 64 KiB of the receiver's answer is read.

Logs, as seed 001 shows them: one warning per failed attempt with its reason, one error after the last.
A failed attempt is an expected outcome, not a bug: its ApplicationError is BENIGN, so the SDK does not
log it again with a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from opentelemetry import trace
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from taskservice.contracts import WEBHOOK_ATTEMPTS, TaskStatus, WebhookDelivery, WebhookPayload
from taskservice.host_paths import scrub_host_paths
from taskservice.netguard import (
    CheckedURL,
    Resolver,
    UnsafeURLError,
    check_outbound_url,
    pinned_request,
    redact_url,
    system_resolver,
)
from taskservice.settings import Settings
from taskservice.telemetry import WorkerMetrics
from taskservice.tracing import span
from taskservice.webhook_records import RECORD_WORKFLOW_TYPE, WebhookAttemptFailure
from taskservice.webhook_secrets import SecretGeneration, signing_keys

# A tenant's rotation state, read at each attempt (the worker passes Temporal's; tests may pass their own).
GenerationSource = Callable[[str], Awaitable[SecretGeneration]]
# Called once the seed's last attempt of a task's final webhook failed.
FailureRecorder = Callable[[WebhookDelivery, int, WebhookAttemptFailure], Awaitable[None]]


async def first_generation(tenant: str) -> SecretGeneration:
    """Every tenant at generation 0 (no rotation): deliveries without a Temporal client at hand."""
    return SecretGeneration()


log = logging.getLogger("taskservice.webhooks")

SUCCESS_CODES = frozenset({200, 201, 202, 204})
# Nothing in the answer is used; reading a little lets a short answer keep its connection for reuse.
MAX_RESPONSE_BYTES = 64 * 1024


def webhook_body(payload: WebhookPayload) -> bytes:
    """The JSON a receiver gets: compact, keys sorted at every level (as ever: the payload used to reach this
    activity as a dict through Temporal's JSON, which sorts keys)."""
    return json.dumps(payload.body(), separators=(",", ":"), sort_keys=True, default=str).encode()


def sign(keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks `webhook-signature`: one `v1,<base64 HMAC-SHA256 of id.timestamp.body>` per key,
    space-separated, so receivers holding either secret verify during a rotation."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    macs = (hmac.new(key, signed, hashlib.sha256).digest() for key in keys)
    return " ".join("v1," + base64.b64encode(mac).decode() for mac in macs)


class WebhookActivities:
    """The `deliver_webhook` activity; with `metrics`, each attempt counts as delivered or failed."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        resolver: Resolver = system_resolver,
        *,
        generations: GenerationSource = first_generation,
        record_failure: FailureRecorder | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._resolver = resolver
        self._master_keys = settings.webhook_signing_keys()
        self._generations = generations
        self._record_failure = record_failure
        self._metrics = metrics
        self._in_flight: Counter[str] = Counter()
        self._timeout = httpx.Timeout(settings.webhook_timeout_s, connect=settings.webhook_connect_timeout_s)

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [self.deliver_webhook]

    @activity.defn(name="deliver_webhook")
    async def deliver_webhook(self, delivery: WebhookDelivery) -> int:
        attempt = activity.info().attempt
        fields = {
            "task_id": delivery.task_id,
            "project_id": delivery.project_id,
            "task_type": delivery.task_type,
            "callback_url": redact_url(delivery.url),
            "attempt": attempt,
            "webhook_event": delivery.event,
        }
        outcome = "failed"
        try:
            # One span per attempt (an attempt is one execution of this activity); a failed one ends in error.
            with span(
                "webhook.deliver", webhook_event=delivery.event, attempt=attempt, task_id=delivery.task_id
            ):
                try:
                    status = await self._attempt(delivery, fields)
                except ApplicationError as err:
                    if _is_last(err, attempt):
                        await self._recorded(delivery, attempt, err)
                    raise
            outcome = "delivered"
            return status
        finally:
            if self._metrics is not None:
                self._metrics.webhooks.labels(outcome).inc()

    async def _recorded(self, delivery: WebhookDelivery, attempt: int, err: ApplicationError) -> None:
        """Hand a task's failed final webhook to its record (not one sent again from a record already)."""
        info = activity.info()
        final = delivery.event in {s.value for s in TaskStatus if s.is_terminal}
        if self._record_failure is None or not final or info.workflow_type == RECORD_WORKFLOW_TYPE:
            return
        details = err.details[0] if err.details else WebhookAttemptFailure(err.message)
        assert isinstance(details, WebhookAttemptFailure)
        await self._record_failure(delivery, attempt, details)

    async def _attempt(self, delivery: WebhookDelivery, fields: dict[str, Any]) -> int:
        try:
            target = await check_outbound_url(
                delivery.url, allow_private=self._settings.webhook_allow_private, resolver=self._resolver
            )
        except UnsafeURLError as err:
            # Not retried (the URL will not change): this first attempt is the last.
            log.error("Webhook refused", extra=fields | {"error": str(err)})
            raise _failed(f"callback_url refused: {err}", "WebhookRefused") from None
        host = target.url.host
        if self._in_flight[host] >= self._settings.webhook_host_concurrency:
            self._log_failure(fields, f"receiver busy: {self._in_flight[host]} deliveries to it in flight")
            raise _failed("webhook receiver busy (earlier deliveries still in flight)", "WebhookFailed")
        request = await self._request(target, delivery)
        try:
            with self._holding(host):
                # One deadline for the whole exchange: per-read timeouts alone let a slow drip run forever.
                async with asyncio.timeout(self._settings.webhook_timeout_s):
                    status = await self._post(request)
            trace.get_current_span().set_attribute("http.response.status_code", status)
        except (httpx.HTTPError, TimeoutError) as err:
            self._log_failure(fields, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
            raise _failed(f"webhook request failed: {type(err).__name__}", "WebhookFailed") from None
        if status in SUCCESS_CODES:
            log.info("Webhook sent successfully", extra=fields | {"status_code": status})
            return status
        redirect = " (redirects are not followed)" if 300 <= status < 400 else ""
        self._log_failure(fields, f"HTTP {status}{redirect}")
        raise _failed(f"webhook answered HTTP {status}{redirect}", "WebhookFailed", status)

    @contextmanager
    def _holding(self, host: str) -> Iterator[None]:
        self._in_flight[host] += 1
        try:
            yield
        finally:
            self._in_flight[host] -= 1
            if not self._in_flight[host]:
                del self._in_flight[host]

    async def _request(self, target: CheckedURL, delivery: WebhookDelivery) -> httpx.Request:
        body = webhook_body(self._payload(delivery.payload))
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "aladdin-task-service/1",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(timestamp),
        }
        if self._master_keys:
            generation = await self._generations(delivery.tenant)
            keys = signing_keys(self._master_keys, delivery.tenant, generation, datetime.now(UTC))
            headers["webhook-signature"] = sign(keys, delivery.webhook_id, timestamp, body)
        timeout = self._timeout
        if target.address is None:
            return self._client.build_request(
                "POST", target.url, content=body, headers=headers, timeout=timeout
            )
        return pinned_request(
            self._client, target.url, target.address, headers, method="POST", content=body, timeout=timeout
        )

    def _payload(self, payload: WebhookPayload) -> WebhookPayload:
        """The payload as sent: a failure's traceback without host paths, or null if not wanted."""
        if payload.traceback is None:
            return payload
        traceback = payload.traceback if self._settings.webhook_include_traceback else None
        return dataclasses.replace(payload, traceback=scrub_host_paths(traceback))

    async def _post(self, request: httpx.Request) -> int:
        """The receiver's status; its answer is read raw (never decompressed) up to MAX_RESPONSE_BYTES, and
        the connection is dropped if there is more."""
        response = await self._client.send(request, stream=True, follow_redirects=False)
        try:
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received >= MAX_RESPONSE_BYTES:
                    break
        finally:
            await response.aclose()
        return response.status_code

    def _log_failure(self, fields: dict[str, Any], error: str) -> None:
        log.warning("Webhook request failed", extra=fields | {"error": error})
        if fields["attempt"] >= WEBHOOK_ATTEMPTS:
            log.error("Failed to send webhook after all retries", extra=fields)


def _failed(message: str, error_type: str, status_code: int | None = None) -> ApplicationError:
    """A failed attempt: already logged above in one line, so the SDK logs it at debug level only."""
    return ApplicationError(
        message,
        WebhookAttemptFailure(message, status_code),
        type=error_type,
        category=ApplicationErrorCategory.BENIGN,
        non_retryable=error_type == "WebhookRefused",
    )


def _is_last(err: ApplicationError, attempt: int) -> bool:
    """Whether no attempt follows this one (the seed's four are spent, or the URL was refused)."""
    return err.non_retryable or attempt >= WEBHOOK_ATTEMPTS
