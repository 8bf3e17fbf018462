"""The webhook step of a task (and pipeline) workflow: the seed's payloads, delivered with 1/2/4 s backoff."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.io.webhooks import WebhookActivities
    from taskservice.contracts import (
        WEBHOOK_ATTEMPTS,
        TaskPreview,
        TaskProgressUpdate,
        TaskStatus,
        TaskWorkflowInput,
        WebhookDelivery,
        WebhookPayload,
    )
    from taskservice.queues import WEBHOOK_QUEUE
    from taskservice.record import TaskOutcome, error_text
    from workflows import console


# Per attempt: the 30 s HTTP timeout plus a margin for connecting and signing.
WEBHOOK_ATTEMPT_TIMEOUT = timedelta(seconds=40)
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=4),
    maximum_attempts=WEBHOOK_ATTEMPTS,
    non_retryable_error_types=["WebhookRefused"],
)


def webhook_payload(task: TaskWorkflowInput, outcome: TaskOutcome, traceback: str | None) -> WebhookPayload:
    """The seed's success/failure payloads, and the same shape for a cancelled task."""
    payload = _payload(task, outcome.status)
    error = error_text(outcome.error, outcome.error_type)
    if outcome.status == TaskStatus.COMPLETED:
        payload.result, payload.processing_time = outcome.result, outcome.processing_time
        payload.completed_at = outcome.completed_at
    elif outcome.status == TaskStatus.FAILED:
        payload.error, payload.traceback, payload.failed_at = error, traceback, outcome.completed_at
    else:
        payload.error, payload.cancelled_at = error, outcome.completed_at
    return payload


async def deliver_webhook(task: TaskWorkflowInput, outcome: TaskOutcome, traceback: str | None) -> None:
    """Deliver the completion webhook; a failed delivery never changes the task's status."""
    await _deliver(task, outcome.status, webhook_payload(task, outcome, traceback))


async def deliver_started_webhook(task: TaskWorkflowInput, started_at: str) -> None:
    """The `started` event (webhook_events_filter), same signing and retries."""
    payload = _payload(task, TaskStatus.PROCESSING, event="started")
    payload.started_at, payload.progress = started_at, 0.0
    await _deliver(task, "started", payload)


async def deliver_progress_webhook(task: TaskWorkflowInput, number: int, update: TaskProgressUpdate) -> None:
    """The task's `number`th `progress` event."""
    payload = _payload(task, TaskStatus.PROCESSING, event="progress")
    payload.progress, payload.current_step = update.progress, update.step
    await _deliver(task, f"progress_{number}", payload)


async def deliver_preview_webhook(task: TaskWorkflowInput, number: int, preview: TaskPreview) -> None:
    """The task's `number`th `preview` event: where its latest live preview is, and since when."""
    payload = _payload(task, TaskStatus.PROCESSING, event="preview")
    payload.preview_url, payload.preview_at = preview.url, preview.at
    await _deliver(task, f"preview_{number}", payload)


def _payload(task: TaskWorkflowInput, status: TaskStatus, event: str | None = None) -> WebhookPayload:
    record = task.task
    return WebhookPayload(
        task_id=task.task_id,
        project_id=record.project_id,
        task_type=record.task_type,
        status=status,
        metadata=record.metadata,
        event=event,
    )


async def _deliver(task: TaskWorkflowInput, event: str, payload: WebhookPayload) -> None:
    record = task.task
    assert record.callback_url is not None
    delivery = WebhookDelivery(
        url=record.callback_url,
        webhook_id=f"msg_{task.task_id}_{event}",
        event=event,
        payload=payload,
        task_id=task.task_id,
        project_id=record.project_id,
        task_type=record.task_type,
        tenant=record.tenant,
        user=record.user,
    )
    await send(delivery, console.webhook_summary(task, event))


async def send(delivery: WebhookDelivery, summary: str) -> None:
    """Deliver one webhook (a task's or a pipeline's): the tenant's signing, 1/2/4 s backoff."""
    try:
        await workflow.execute_activity_method(
            WebhookActivities.deliver_webhook,
            delivery,
            # Their own queue: a slow receiver holds a delivery slot, never the limiter's or bookkeeping's.
            task_queue=WEBHOOK_QUEUE,
            start_to_close_timeout=WEBHOOK_ATTEMPT_TIMEOUT,
            retry_policy=WEBHOOK_RETRY,
            summary=summary,
        )
    except ActivityError:
        # The last attempt logged `Failed to send webhook after all retries` (or `Webhook refused`) with
        # the callback URL, and recorded a final webhook for the tenant to read and send again.
        return
