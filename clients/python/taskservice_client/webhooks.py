"""Verifying the service's webhooks, signed the Standard Webhooks way: ``webhook-id``, ``webhook-timestamp``
and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of id.timestamp.body>``, space-separated, one per secret
during a rotation). Standard library only; a FastAPI dependency is in ``taskservice_client.webhooks_fastapi``.

The secret is your tenant's own (``TaskServiceClient().webhook_secret()``, or
``GET /api/v1/webhooks/secret``): each tenant's deliveries verify with its own secret only. After a
rotation, give both secrets until the answer's ``previous_valid_until`` (``webhook_secret().secrets`` lists
them).

    payload = verify(request.headers, raw_body, os.environ["TASK_SERVICE_WEBHOOK_SECRET"])
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from taskservice_client.errors import TaskServiceError

__all__ = ["DEFAULT_TOLERANCE_S", "WebhookVerificationError", "verify", "webhook_keys"]

# Standard Webhooks' recommended tolerance: a delivery further from now is refused (a replay, or a bad clock).
DEFAULT_TOLERANCE_S = 300.0
SECRET_PREFIX = "whsec_"

WebhookFailure = Literal["missing_headers", "timestamp", "signature"]


class WebhookVerificationError(TaskServiceError):
    """The delivery is not the service's: ``reason`` is ``missing_headers``, ``timestamp`` (outside the
    tolerance) or ``signature`` (no signature matches any secret)."""

    def __init__(self, reason: WebhookFailure, message: str) -> None:
        super().__init__(message, error="webhook_verification_failed")
        self.reason: WebhookFailure = reason


def webhook_keys(secret: str | Sequence[str]) -> list[bytes]:
    """The HMAC keys of ``whsec_…`` secrets (one string may hold several, comma-separated, as
    during a rotation). A malformed secret is a ValueError, not a failed match."""
    secrets = secret.split(",") if isinstance(secret, str) else list(secret)
    keys = []
    for one in (s.strip() for s in secrets):
        if not one:
            continue
        try:
            keys.append(base64.b64decode(one.removeprefix(SECRET_PREFIX), validate=True))
        except binascii.Error:
            raise ValueError("a webhook secret is `whsec_` + base64") from None
    if not keys:
        raise ValueError("no webhook secret given")
    return keys


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # a plain dict with other capitalisation (Starlette's Headers ignore case)
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if not value:
        raise WebhookVerificationError(
            "missing_headers", "A signed delivery has webhook-id, webhook-timestamp and webhook-signature"
        )
    return value


def verify(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str | Sequence[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> Any:
    """The delivery's JSON payload once its signature checks out, else ``WebhookVerificationError``.

    Args:
        headers: the request's headers (any mapping; Starlette's, a dict, ...).
        body: the raw body exactly as received, before any JSON parsing.
        secret: your tenant's webhook secret (``whsec_…``, from ``GET /api/v1/webhooks/secret``); several
            (comma-separated or a list) during a rotation: a delivery signed with any of them verifies.
        tolerance: seconds the ``webhook-timestamp`` may be from ``now`` (default: time.time()).
    """
    webhook_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    keys = webhook_keys(secret)
    current = time.time() if now is None else now
    if not stamp.isdigit() or abs(current - int(stamp)) > tolerance:
        raise WebhookVerificationError(
            "timestamp",
            f"webhook-timestamp is more than {tolerance:g} s from now (a replay, or a wrong clock)",
        )
    raw = body.encode() if isinstance(body, str) else body
    signed = f"{webhook_id}.{stamp}.".encode() + raw
    expected = [base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()) for key in keys]
    offered = [part.partition(",") for part in signatures.split()]
    # Every pair is compared (constant time each): how many matched, or which, does not show in the timing.
    matched = [
        hmac.compare_digest(signature.encode(), mac)
        for version, _, signature in offered
        if version == "v1"
        for mac in expected
    ]
    if not any(matched):
        raise WebhookVerificationError("signature", "No webhook-signature matches the secret")
    return json.loads(raw) if raw else None
