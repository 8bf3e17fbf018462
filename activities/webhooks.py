"""Webhook delivery: one attempt per activity execution; the workflow's retry policy spaces them 1/2/4 s."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from taskservice.contracts import WEBHOOK_ATTEMPTS, WebhookDelivery
from taskservice.netguard import UnsafeURLError, check_outbound_url, redact_url
from taskservice.settings import Settings

log = logging.getLogger("taskservice.webhooks")

SUCCESS_CODES = frozenset({200, 201, 202, 204})


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1 signature: base64 HMAC-SHA256 over `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class WebhookActivities:
    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client

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
        try:
            await check_outbound_url(delivery.url, allow_private=self._settings.webhook_allow_private)
        except UnsafeURLError as err:
            log.error("Webhook refused", extra=fields | {"error": str(err)})
            raise ApplicationError(f"callback_url refused: {err}", type="WebhookRefused") from None
        body = json.dumps(delivery.payload, separators=(",", ":"), default=str).encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "aladdin-task-service/1",
            "webhook-id": delivery.webhook_id,
        }
        timestamp = int(time.time())
        headers["webhook-timestamp"] = str(timestamp)
        if self._settings.webhook_secret is not None:
            secret = self._settings.webhook_secret.get_secret_value()
            headers["webhook-signature"] = sign(secret, delivery.webhook_id, timestamp, body)
        try:
            response = await self._client.post(
                delivery.url, content=body, headers=headers, timeout=self._settings.webhook_timeout_s
            )
        except httpx.HTTPError as err:
            self._log_failure(fields, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
            raise ApplicationError(
                f"webhook request failed: {type(err).__name__}", type="WebhookFailed"
            ) from None
        if response.status_code in SUCCESS_CODES:
            log.info("Webhook sent successfully", extra=fields | {"status_code": response.status_code})
            return response.status_code
        self._log_failure(fields, f"HTTP {response.status_code}")
        raise ApplicationError(f"webhook answered HTTP {response.status_code}", type="WebhookFailed")

    def _log_failure(self, fields: dict[str, Any], error: str) -> None:
        log.warning("Webhook request failed", extra=fields | {"error": error})
        if fields["attempt"] >= WEBHOOK_ATTEMPTS:
            log.error("Failed to send webhook after all retries", extra=fields)
