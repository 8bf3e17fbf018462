"""What webhook delivery reads from and writes to Temporal: a tenant's secret generation, and the record of
a task's final webhook once the seed's last attempt failed (a WebhookRecordWorkflow, see
taskservice/webhook_records.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError

from taskservice import search_attributes as sa
from taskservice.contracts import WebhookDelivery
from taskservice.netguard import redact_url
from taskservice.queues import WORKFLOW_QUEUE, webhook_record_workflow_id
from taskservice.settings import Settings
from taskservice.timefmt import iso_z
from taskservice.webhook_records import (
    RECORD_MEMO,
    DeliveryStatus,
    WebhookAttemptFailure,
    WebhookDeliveryRecord,
    WebhookRecordInput,
)
from taskservice.webhook_secrets import SecretGeneration, read_generation
from workflows.webhook_record import WebhookRecordWorkflow

log = logging.getLogger("taskservice.webhooks")


class TemporalWebhookState:
    """A worker's view of webhook state in Temporal; one per worker process."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def generation(self, tenant: str) -> SecretGeneration:
        return await read_generation(self._client, tenant)

    async def record_failure(
        self, delivery: WebhookDelivery, attempts: int, failure: WebhookAttemptFailure
    ) -> None:
        """Start the task's record (idempotent: a retried start finds the running one)."""
        now = iso_z(datetime.now(UTC))
        status = DeliveryStatus.RETRYING if self._settings.webhook_retry_hours else DeliveryStatus.FAILED
        record = WebhookDeliveryRecord(
            task_id=delivery.task_id,
            project_id=delivery.project_id,
            webhook_id=delivery.webhook_id,
            event=delivery.event,
            status=status.value,
            attempts=attempts,
            last_attempt_at=now,
            failed_at=now,
            last_status_code=failure.status_code,
            last_error=failure.error,
        )
        attributes = [
            SearchAttributePair(sa.OWNER, delivery.tenant),
            SearchAttributePair(sa.PROJECT_ID, delivery.project_id),
            SearchAttributePair(sa.SCOPE, sa.scope(delivery.tenant, delivery.project_id)),
            SearchAttributePair(sa.TASK_TYPE, delivery.task_type),
            SearchAttributePair(sa.WEBHOOK_STATUS, record.status),
        ]
        if delivery.user is not None:
            attributes.append(SearchAttributePair(sa.USER, delivery.user))
        try:
            await self._client.start_workflow(
                WebhookRecordWorkflow.run,
                WebhookRecordInput(
                    delivery=delivery,
                    record=record,
                    retry_hours=self._settings.webhook_retry_hours,
                    keep_hours=float(self._settings.task_retention_hours),
                ),
                id=webhook_record_workflow_id(delivery.task_id),
                task_queue=WORKFLOW_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                memo={RECORD_MEMO: record},
                search_attributes=TypedSearchAttributes(attributes),
            )
        except RPCError as err:
            # Only the log is left: say so loudly, with what the tenant would need.
            log.error(
                "Failed webhook could not be recorded",
                extra={
                    "task_id": delivery.task_id,
                    "callback_url": redact_url(delivery.url),
                    "error": str(err),
                },
            )
