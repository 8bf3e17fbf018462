"""Webhook state in Temporal: a tenant's secret generation (WebhookSecretWorkflow) and the records of failed
final webhooks (WebhookRecordWorkflow), read from their memos and visibility; rotation and redelivery as
updates."""

from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from taskservice import search_attributes as sa
from taskservice.queues import WORKFLOW_QUEUE, webhook_record_workflow_id, webhook_secret_workflow_id
from taskservice.visibility import quote
from taskservice.webhook_records import (
    RECORD_MEMO,
    RECORD_WORKFLOW_TYPE,
    RedeliverRequest,
    WebhookDeliveryRecord,
    WebhookRecordInput,
)
from taskservice.webhook_secrets import RotateSecret, SecretGeneration, read_generation
from workflows.webhook_record import WebhookRecordWorkflow
from workflows.webhook_secret import WebhookSecretWorkflow

# A listing reads at most this many records (then sorts them newest first).
LISTING_SCAN = 1000


class WebhookStore:
    """Per connection, like TaskStore; holds no cache."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def generation(self, tenant: str) -> SecretGeneration:
        return await read_generation(self.client, tenant)

    async def rotate(self, tenant: str, overlap_hours: float) -> SecretGeneration:
        handle = await self.client.start_workflow(
            WebhookSecretWorkflow.run,
            None,
            id=webhook_secret_workflow_id(tenant),
            task_queue=WORKFLOW_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        return await handle.execute_update(WebhookSecretWorkflow.rotate, RotateSecret(overlap_hours))

    async def record(self, task_id: str) -> WebhookDeliveryRecord | None:
        """The task's recorded delivery, if its final webhook ever failed."""
        try:
            description = await self.client.get_workflow_handle(
                webhook_record_workflow_id(task_id)
            ).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return await description.memo_value(RECORD_MEMO, None, type_hint=WebhookDeliveryRecord)

    async def records(
        self, tenant: str, *, status: str | None, project_id: str | None, user: str | None, limit: int
    ) -> list[WebhookDeliveryRecord]:
        """A tenant's recorded deliveries, newest failure first."""
        clauses = [f"WorkflowType = {quote(RECORD_WORKFLOW_TYPE)}"]
        if project_id is not None:
            clauses.append(f"{sa.SCOPE.name} = {quote(sa.scope(tenant, project_id))}")
        else:
            clauses.append(f"{sa.OWNER.name} = {quote(tenant)}")
        if user is not None:
            clauses.append(f"{sa.USER.name} = {quote(user)}")
        if status is not None:
            clauses.append(f"{sa.WEBHOOK_STATUS.name} = {quote(status)}")
        found: list[WebhookDeliveryRecord] = []
        async for execution in self.client.list_workflows(" AND ".join(clauses), limit=LISTING_SCAN):
            record = await execution.memo_value(RECORD_MEMO, None, type_hint=WebhookDeliveryRecord)
            if record is not None:
                found.append(record)
        found.sort(key=lambda r: r.failed_at, reverse=True)
        return found[:limit]

    async def redeliver(self, task_id: str) -> WebhookDeliveryRecord | None:
        """Send the recorded payload again and answer the outcome; None if nothing was recorded."""
        handle = self.client.get_workflow_handle(webhook_record_workflow_id(task_id))
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        if description.status != WorkflowExecutionStatus.RUNNING:
            # Its keeping time ran out: a new run from the same input keeps the record going.
            history = await handle.fetch_history()
            started = history.events[0].workflow_execution_started_event_attributes
            [recorded] = await self.client.data_converter.decode(started.input.payloads, [WebhookRecordInput])
            handle = await self.client.start_workflow(
                WebhookRecordWorkflow.run,
                recorded,
                id=handle.id,
                task_queue=WORKFLOW_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=description.typed_search_attributes,
            )
        return await handle.execute_update(WebhookRecordWorkflow.redeliver, RedeliverRequest())
