"""A FastAPI dependency that verifies the service's webhooks (``pip install "taskservice-client[fastapi]"``;
the light SDK does not pull FastAPI).

    verified = webhook_verifier(os.environ["TASK_SERVICE_WEBHOOK_SECRET"])  # your tenant's secret

    @app.post("/api/webhooks/task-complete")
    async def task_complete(webhook: Annotated[VerifiedWebhook, Depends(verified)]) -> dict[str, bool]:
        ...  # webhook.id (dedupe on it), webhook.payload
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

from taskservice_client.webhooks import DEFAULT_TOLERANCE_S, WebhookVerificationError, verify, webhook_keys

__all__ = ["VerifiedWebhook", "webhook_verifier"]


@dataclass(frozen=True)
class VerifiedWebhook:
    """A delivery whose signature checked out: ``id`` is stable across the attempts of one delivery (dedupe
    on it); ``payload`` is its JSON body."""

    id: str
    timestamp: int
    payload: Any


def webhook_verifier(
    secret: str | Sequence[str], *, tolerance: float = DEFAULT_TOLERANCE_S
) -> Callable[[Request], Awaitable[VerifiedWebhook]]:
    """A dependency giving the request's ``VerifiedWebhook``; a delivery that does not verify is answered
    ``400`` with ``{"error": "webhook_verification_failed", "reason": ..., "message": ...}``."""
    webhook_keys(secret)  # a malformed secret fails here, at start, not at the first delivery

    async def verified_webhook(request: Request) -> VerifiedWebhook:
        body = await request.body()
        try:
            payload = verify(request.headers, body, secret, tolerance=tolerance)
        except WebhookVerificationError as err:
            detail = {"error": err.error, "reason": err.reason, "message": err.message}
            raise HTTPException(status_code=400, detail=detail) from None
        headers = request.headers
        return VerifiedWebhook(headers["webhook-id"], int(headers["webhook-timestamp"]), payload)

    return verified_webhook
