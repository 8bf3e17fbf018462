"""A failed final webhook, recorded: extended retries (WEBHOOK_RETRY_HOURS) and redelivery on request.

Started by the delivery activity when the seed's last attempt failed (see taskservice/webhook_records.py);
one per task, it lives until the task's retention ends so that a tenant can send the webhook again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.io.webhooks import WebhookActivities
    from taskservice import search_attributes as sa
    from taskservice.queues import WEBHOOK_QUEUE
    from taskservice.timefmt import iso_z
    from taskservice.webhook_records import (
        RECORD_MEMO,
        RECORD_WORKFLOW_TYPE,
        DeliveryStatus,
        RedeliverRequest,
        WebhookDeliveryRecord,
        WebhookRecordInput,
    )
    from workflows.webhook import WEBHOOK_ATTEMPT_TIMEOUT

FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)


@workflow.defn(name=RECORD_WORKFLOW_TYPE)
class WebhookRecordWorkflow:
    def __init__(self) -> None:
        self._record: WebhookDeliveryRecord | None = None
        self._input: WebhookRecordInput | None = None

    @workflow.run
    async def run(self, recorded: WebhookRecordInput) -> WebhookDeliveryRecord:
        self._input, self._record = recorded, recorded.record
        self._publish()
        retry_until = workflow.now() + timedelta(hours=recorded.retry_hours)
        wait = FIRST_RETRY
        while self._record.status != DeliveryStatus.DELIVERED and workflow.now() + wait <= retry_until:
            self._publish(status=DeliveryStatus.RETRYING, next_attempt_at=iso_z(workflow.now() + wait))
            delivered = await self._wait(lambda: self._delivered(), wait)
            if not delivered:
                await self._attempt()
            wait = min(wait * 2, LONGEST_RETRY)
        if self._record.status == DeliveryStatus.RETRYING:
            self._publish(status=DeliveryStatus.FAILED, next_attempt_at=None)
        # Redelivery stays possible as long as the task can be read.
        await self._wait(lambda: False, timedelta(hours=recorded.keep_hours))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._record

    @workflow.update
    async def redeliver(self, request: RedeliverRequest) -> WebhookDeliveryRecord:
        """Send the same payload now; answers the record with this attempt's outcome."""
        await self._attempt()
        assert self._record is not None
        return self._record

    def _delivered(self) -> bool:
        return self._record is not None and self._record.status == DeliveryStatus.DELIVERED

    async def _wait(self, done: Callable[[], bool], timeout: timedelta) -> bool:
        try:
            await workflow.wait_condition(done, timeout=timeout)
        except TimeoutError:
            return False
        return True

    async def _attempt(self) -> None:
        assert self._input is not None and self._record is not None
        now = iso_z(workflow.now())
        attempts = self._record.attempts + 1
        try:
            code = await workflow.execute_activity_method(
                WebhookActivities.deliver_webhook,
                self._input.delivery,
                task_queue=WEBHOOK_QUEUE,
                start_to_close_timeout=WEBHOOK_ATTEMPT_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as err:
            cause = err.cause
            error = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            status_code = _status_code(cause)
            self._record = replace(self._record, attempts=attempts, last_attempt_at=now)
            retrying = self._record.status == DeliveryStatus.RETRYING
            self._publish(
                status=DeliveryStatus.RETRYING if retrying else DeliveryStatus.FAILED,
                last_error=error,
                last_status_code=status_code,
            )
            return
        self._record = replace(self._record, attempts=attempts, last_attempt_at=now)
        self._publish(
            status=DeliveryStatus.DELIVERED,
            last_status_code=code,
            last_error=None,
            next_attempt_at=None,
            delivered_at=now,
        )

    def _publish(self, **changes: object) -> None:
        assert self._record is not None
        self._record = replace(self._record, **changes)  # type: ignore[arg-type]
        workflow.upsert_memo({RECORD_MEMO: self._record})
        workflow.upsert_search_attributes([sa.WEBHOOK_STATUS.value_set(self._record.status)])


def _status_code(cause: BaseException | None) -> int | None:
    """The receiver's HTTP status from a failed attempt's details (None: it never answered)."""
    if not isinstance(cause, ApplicationError) or not cause.details:
        return None
    details = cause.details[0]
    code = details.get("status_code") if isinstance(details, dict) else None
    return code if isinstance(code, int) else None
