"""A task's final webhook whose delivery failed: its record, kept by one WebhookRecordWorkflow per task.

The delivery activity starts that workflow when the seed's last attempt fails; the workflow publishes the
record in its memo and its status in the `WebhookStatus` search attribute (with the task's tenant, project
and user), retries for WEBHOOK_RETRY_HOURS if set, and sends the same payload again on request until the
task's retention ends. The task's own workflow is final by then and never waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from taskservice.contracts import WebhookDelivery

RECORD_MEMO = "webhook_delivery"
RECORD_WORKFLOW_TYPE = "WebhookRecordWorkflow"


class DeliveryStatus(StrEnum):
    FAILED = "failed"
    RETRYING = "retrying"
    DELIVERED = "delivered"


@dataclass
class WebhookDeliveryRecord:
    """What a tenant reads about a delivery (`GET /api/v1/tasks/{id}/webhooks`); no secret, no payload."""

    task_id: str
    project_id: str
    webhook_id: str
    event: str
    status: str
    attempts: int
    last_attempt_at: str
    failed_at: str
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: str | None = None
    delivered_at: str | None = None


@dataclass
class WebhookAttemptFailure:
    """Details of a failed attempt's ApplicationError: the receiver's status code, if it answered."""

    error: str
    status_code: int | None = None


@dataclass
class WebhookRecordInput:
    delivery: WebhookDelivery
    record: WebhookDeliveryRecord
    # Extended retries (WEBHOOK_RETRY_HOURS) and how long redelivery stays possible (the task's retention).
    retry_hours: float = 0.0
    keep_hours: float = 24.0


@dataclass
class RedeliverRequest:
    """Send the recorded payload again now (same webhook-id, new timestamp and signature)."""

    requested_by: str = "api"
