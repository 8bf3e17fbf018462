"""The webhook step of a task workflow: the seed's payloads, delivered with 1/2/4 s backoff."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from taskservice.contracts import WEBHOOK_ATTEMPTS, TaskStatus, TaskWorkflowInput, WebhookDelivery
    from taskservice.queues import WEBHOOK_QUEUE
    from taskservice.record import TaskOutcome, error_text


# Per attempt: the 30 s HTTP timeout plus a margin for connecting and signing.
WEBHOOK_ATTEMPT_TIMEOUT = timedelta(seconds=40)
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=4),
    maximum_attempts=WEBHOOK_ATTEMPTS,
    non_retryable_error_types=["WebhookRefused"],
)


def webhook_payload(task: TaskWorkflowInput, outcome: TaskOutcome, traceback: str | None) -> dict[str, Any]:
    """The seed's success/failure payloads, and the same shape for a cancelled task."""
    record = task.task
    payload: dict[str, Any] = {
        "task_id": task.task_id,
        "project_id": record.project_id,
        "task_type": record.task_type,
        "status": outcome.status,
    }
    error = error_text(outcome.error, outcome.error_type)
    if outcome.status == TaskStatus.COMPLETED:
        payload |= {
            "result": outcome.result,
            "processing_time": outcome.processing_time,
            "completed_at": outcome.completed_at,
        }
    elif outcome.status == TaskStatus.FAILED:
        payload |= {"error": error, "traceback": traceback, "failed_at": outcome.completed_at}
    else:
        payload |= {"error": error, "cancelled_at": outcome.completed_at}
    payload["metadata"] = record.metadata
    return payload


async def deliver_webhook(task: TaskWorkflowInput, outcome: TaskOutcome, traceback: str | None) -> None:
    """Deliver the completion webhook; a failed delivery never changes the task's status."""
    await _deliver(task, outcome.status, webhook_payload(task, outcome, traceback))


async def deliver_event_webhook(task: TaskWorkflowInput, event: str, fields: dict[str, Any]) -> None:
    """A `started` or `progress_<n>` event (webhook_events_filter), same signing and retries."""
    record = task.task
    payload = {
        "task_id": task.task_id,
        "project_id": record.project_id,
        "task_type": record.task_type,
        "status": "processing",
        "event": event.split("_", 1)[0],
        **fields,
        "metadata": record.metadata,
    }
    await _deliver(task, event, payload)


async def _deliver(task: TaskWorkflowInput, event: str, payload: dict[str, Any]) -> None:
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
    try:
        await workflow.execute_activity(
            "deliver_webhook",
            delivery,
            # Their own queue: a slow receiver holds a delivery slot, never the limiter's or bookkeeping's.
            task_queue=WEBHOOK_QUEUE,
            start_to_close_timeout=WEBHOOK_ATTEMPT_TIMEOUT,
            retry_policy=WEBHOOK_RETRY,
        )
    except ActivityError:
        # The last attempt logged `Failed to send webhook after all retries` (or `Webhook refused`) with
        # the callback URL, and recorded a final webhook for the tenant to read and send again.
        return
