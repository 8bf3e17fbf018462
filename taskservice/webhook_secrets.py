"""Each tenant's own Standard Webhooks secret, derived, never stored.

A tenant's secret is `whsec_` + base64(HMAC-SHA256(master key, length-prefixed tenant, generation)): the
master key (WEBHOOK_SECRET) stays with the service, and a receiver that holds one tenant's secret can neither
verify nor forge another tenant's deliveries. The generation starts at 0 and goes up by one per rotation; the
rotation state (this generation, the previous one and until when it still signs) is the memo of one small
workflow per tenant, so it survives restarts and every API replica and worker reads the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from taskservice.credential_formats import WEBHOOK_SECRET_PREFIX
from taskservice.queues import webhook_secret_workflow_id

SECRET_MEMO = "webhook_secret"
_CONTEXT = b"taskservice/tenant-webhook-secret/v1\0"


@dataclass
class SecretGeneration:
    """A tenant's rotation state (the memo of WebhookSecretWorkflow; no secret in it)."""

    generation: int = 0
    previous_generation: int | None = None
    # ISO-8601: until then, deliveries carry the previous generation's signature too.
    previous_until: str | None = None

    def signing(self, now: datetime) -> list[int]:
        """Generations that sign a delivery now: the current one first."""
        live = [self.generation]
        if (
            self.previous_generation is not None
            and self.previous_until is not None
            and datetime.fromisoformat(self.previous_until) > now
        ):
            live.append(self.previous_generation)
        return live


@dataclass
class RotateSecret:
    """Ask for a new generation; the previous one keeps signing for `overlap_hours`."""

    overlap_hours: float


def tenant_secret(master_key: bytes, tenant: str, generation: int) -> str:
    """The tenant's `whsec_…` secret of one generation."""
    name = tenant.encode()
    message = _CONTEXT + len(name).to_bytes(2, "big") + name + generation.to_bytes(8, "big")
    key = hmac.new(master_key, message, hashlib.sha256).digest()
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(key).decode()


def signing_keys(
    master_keys: Sequence[bytes], tenant: str, state: SecretGeneration, now: datetime
) -> list[bytes]:
    """HMAC keys that sign the tenant's delivery now: each signing generation under each master key."""
    return [
        base64.b64decode(tenant_secret(master, tenant, generation).removeprefix(WEBHOOK_SECRET_PREFIX))
        for generation in state.signing(now)
        for master in master_keys
    ]


async def read_generation(client: Client, tenant: str) -> SecretGeneration:
    """The tenant's rotation state; generation 0 for a tenant that never rotated."""
    handle = client.get_workflow_handle(webhook_secret_workflow_id(tenant))
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return SecretGeneration()
        raise
    state: SecretGeneration = await description.memo_value(
        SECRET_MEMO, SecretGeneration(), type_hint=SecretGeneration
    )
    return state
