"""Webhooks: the tenant's signing secret and its rotation; failed deliveries, and sending them again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.domain.commands import PROJECT_ID_PATTERN
from api.domain.errors import Forbidden, InvalidState, TaskNotFound, ValidationFailed, WebhookSigningOff
from api.rest.deps import CallerDep, ServicesDep
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses
from api.rest.params import TaskIdPath
from api.rest.routes import task_paths  # noqa: F401 - registers the {task_id:task_id} convertor
from api.service.webhooks import TenantSecret, WebhookService
from taskservice.webhook_records import DeliveryStatus, WebhookDeliveryRecord

router = APIRouter(tags=["webhooks"], route_class=DocumentedRoute)


def get_webhook_service(services: ServicesDep) -> WebhookService:
    return services.webhooks()


WebhookServiceDep = Annotated[WebhookService, Depends(get_webhook_service)]


class WebhookSecretResponse(BaseModel):
    """The caller's tenant's Standard Webhooks secret: verify its deliveries with it (and, until
    `previous_valid_until`, with `previous_secret` too)."""

    tenant: str
    secret: str = Field(description="`whsec_…`: this tenant's deliveries verify with it, no other's do.")
    generation: int = Field(description="How many times the tenant rotated its secret.")
    previous_secret: str | None = Field(description="The secret before the last rotation, while it signs.")
    previous_valid_until: str | None = Field(description="Until then deliveries carry both signatures.")

    @classmethod
    def of(cls, secret: TenantSecret) -> WebhookSecretResponse:
        return cls(**secret.__dict__)


class WebhookDeliveryResponse(BaseModel):
    """A recorded delivery of a task's final webhook (recorded once the seed's four attempts failed)."""

    task_id: str
    project_id: str
    webhook_id: str = Field(description="The `webhook-id` header; a redelivery sends the same one.")
    event: str = Field(description="`completed`, `failed` or `cancelled`.")
    status: DeliveryStatus
    attempts: int
    last_attempt_at: str
    failed_at: str
    last_status_code: int | None = Field(description="The receiver's last answer; null: it never answered.")
    last_error: str | None
    next_attempt_at: str | None = Field(description="The next retry, while WEBHOOK_RETRY_HOURS runs.")
    delivered_at: str | None

    @classmethod
    def of(cls, record: WebhookDeliveryRecord) -> WebhookDeliveryResponse:
        return cls(**record.__dict__)


class TaskWebhooksResponse(BaseModel):
    task_id: str
    deliveries: list[WebhookDeliveryResponse]


class WebhookDeliveriesResponse(BaseModel):
    deliveries: list[WebhookDeliveryResponse]


@router.get("/api/v1/webhooks/secret", responses=error_responses(WebhookSigningOff, *AUTHENTICATED))
async def get_webhook_secret(caller: CallerDep, webhooks: WebhookServiceDep) -> WebhookSecretResponse:
    """The caller's tenant's webhook signing secret (each tenant has its own)."""
    return WebhookSecretResponse.of(await webhooks.secret(caller))


@router.post(
    "/api/v1/webhooks/secret/rotate", responses=error_responses(Forbidden, WebhookSigningOff, *AUTHENTICATED)
)
async def rotate_webhook_secret(caller: CallerDep, webhooks: WebhookServiceDep) -> WebhookSecretResponse:
    """A new secret for the caller's tenant; deliveries carry the old one's signature too for
    WEBHOOK_ROTATION_HOURS. Tenant-wide credentials only (an API key, a `role: service` token)."""
    return WebhookSecretResponse.of(await webhooks.rotate(caller))


@router.get("/api/v1/webhooks/deliveries", responses=error_responses(ValidationFailed, *AUTHENTICATED))
async def list_webhook_deliveries(
    caller: CallerDep,
    webhooks: WebhookServiceDep,
    status: Annotated[DeliveryStatus | None, Query(description="Only deliveries in this state.")] = None,
    project_id: Annotated[
        str | None, Query(pattern=PROJECT_ID_PATTERN, description="Only this project's.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="At most this many, 1-100.")] = 50,
) -> WebhookDeliveriesResponse:
    """The caller's tenant's recorded deliveries, newest failure first."""
    records = await webhooks.listing(
        caller, status=status.value if status else None, project_id=project_id, limit=limit
    )
    return WebhookDeliveriesResponse(deliveries=[WebhookDeliveryResponse.of(r) for r in records])


@router.get(
    "/api/v1/tasks/{task_id:task_id}/webhooks", responses=error_responses(TaskNotFound, *AUTHENTICATED)
)
async def task_webhooks(
    task_id: TaskIdPath, caller: CallerDep, webhooks: WebhookServiceDep
) -> TaskWebhooksResponse:
    """The task's recorded webhook deliveries (empty unless its final webhook failed)."""
    records = await webhooks.deliveries(caller, task_id)
    return TaskWebhooksResponse(task_id=task_id, deliveries=[WebhookDeliveryResponse.of(r) for r in records])


@router.post(
    "/api/v1/tasks/{task_id:task_id}/webhooks/redeliver",
    responses=error_responses(InvalidState, TaskNotFound, *AUTHENTICATED),
)
async def redeliver_task_webhook(
    task_id: TaskIdPath, caller: CallerDep, webhooks: WebhookServiceDep
) -> WebhookDeliveryResponse:
    """Send the task's recorded final webhook again now (same `webhook-id`, new timestamp and signature);
    answers the delivery with this attempt's outcome."""
    return WebhookDeliveryResponse.of(await webhooks.redeliver(caller, task_id))
