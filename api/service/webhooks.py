"""Webhook operations: a tenant's own signing secret and its rotation, and the deliveries that failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from api.domain.caller import Caller, Role
from api.domain.errors import Forbidden, InvalidState, WebhookSigningOff
from api.service.quotas import Quota
from api.service.scope import scope_of
from api.service.tasks import TaskService
from api.store.webhooks import WebhookStore
from taskservice.webhook_records import WebhookDeliveryRecord
from taskservice.webhook_secrets import SecretGeneration, tenant_secret


@dataclass(frozen=True)
class TenantSecret:
    """What a tenant is told: its current secret and, during a rotation, the previous one and until when."""

    tenant: str
    secret: str
    generation: int
    previous_secret: str | None
    previous_valid_until: str | None


class WebhookService:
    def __init__(self, tasks: TaskService, store: WebhookStore) -> None:
        self.tasks = tasks
        self.store = store
        self.settings = tasks.settings

    async def secret(self, caller: Caller) -> TenantSecret:
        self.tasks.quotas.spend(caller, Quota.READ)
        return self._secret_of(caller.tenant, await self.store.generation(caller.tenant))

    async def rotate(self, caller: Caller) -> TenantSecret:
        """A new generation of the tenant's secret: every user's receivers change, so a user token may not."""
        self.tasks.quotas.spend(caller, Quota.READ)
        if caller.role == Role.USER:
            raise Forbidden("Rotating the webhook secret needs an API key or a `role: service` token")
        self._master_key()  # refused before anything changes
        state = await self.store.rotate(caller.tenant, self.settings.webhook_rotation_hours)
        return self._secret_of(caller.tenant, state)

    def _master_key(self) -> bytes:
        keys = self.settings.webhook_signing_keys()
        if not keys:
            raise WebhookSigningOff()
        return keys[0]

    def _secret_of(self, tenant: str, state: SecretGeneration) -> TenantSecret:
        master = self._master_key()
        live = state.signing(datetime.now(UTC))
        previous = live[1] if len(live) > 1 else None
        return TenantSecret(
            tenant=tenant,
            secret=tenant_secret(master, tenant, state.generation),
            generation=state.generation,
            previous_secret=None if previous is None else tenant_secret(master, tenant, previous),
            previous_valid_until=None if previous is None else state.previous_until,
        )

    async def deliveries(self, caller: Caller, task_id: str) -> list[WebhookDeliveryRecord]:
        """The task's recorded deliveries (a task outside the caller's scope does not exist)."""
        await self.tasks.get(caller, task_id)
        record = await self.store.record(task_id)
        return [] if record is None else [record]

    async def listing(
        self, caller: Caller, *, status: str | None, project_id: str | None, limit: int
    ) -> list[WebhookDeliveryRecord]:
        self.tasks.quotas.spend(caller, Quota.READ)
        scope = scope_of(caller)
        tenant = caller.tenant if scope.tenant is None else scope.tenant
        return await self.store.records(
            tenant, status=status, project_id=project_id, user=scope.user, limit=limit
        )

    async def redeliver(self, caller: Caller, task_id: str) -> WebhookDeliveryRecord:
        await self.tasks.get(caller, task_id)
        record = await self.store.redeliver(task_id)
        if record is None:
            raise InvalidState(f"Task {task_id} has no failed webhook delivery to send again")
        return record
