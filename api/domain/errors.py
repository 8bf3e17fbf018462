"""Domain errors, and the one table that says how every surface answers them.

The service and the store raise these types; REST answers `ERROR_TABLE`'s HTTP status with `error_body`,
GraphQL answers a GraphQL error whose `extensions` carry the same body and status, Socket.IO an ack with the
same code. A Temporal RPC failure becomes a domain error in `from_temporal`, once.
"""

from __future__ import annotations

import logging
from typing import Any

from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger("taskservice.api")


class ServiceError(Exception):
    """A failure with a message for the caller and fields that go into the error body."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class InternalError(ServiceError):
    """Something failed that the caller cannot fix (logged where it happens)."""


class AuthenticationFailed(ServiceError):
    pass


class Forbidden(ServiceError):
    pass


class TaskNotFound(ServiceError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"Task with ID '{task_id}' not found")


class PipelineNotFound(ServiceError):
    """No such pipeline, or another tenant's: the same answer either way."""

    def __init__(self, pipeline_id: str) -> None:
        super().__init__(f"Pipeline with ID '{pipeline_id}' not found")


class MediaNotFound(ServiceError):
    def __init__(self, key: str) -> None:
        super().__init__(f"No media at '{key}'")


class ValidationFailed(ServiceError):
    def __init__(self, details: dict[str, str], message: str = "Invalid task data") -> None:
        super().__init__(message, details=details)


class InvalidState(ServiceError):
    """The task is in a state that does not allow the operation (e.g. cancelling a completed task)."""

    def __init__(self, message: str) -> None:
        # `detail` is what the Celery service answered; clients written for it read that key.
        super().__init__(message, detail=message)


class IdempotencyConflict(ServiceError):
    pass


class PayloadTooLarge(ServiceError):
    """A request or one of its fields is larger than the service accepts (retrying cannot help)."""

    def __init__(self, message: str, limit_bytes: int) -> None:
        super().__init__(message, limit_bytes=limit_bytes)


class RateLimited(ServiceError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class ServiceUnavailable(ServiceError):
    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class WebhookSigningOff(ServiceError):
    """No WEBHOOK_SECRET: webhooks go out unsigned and there is no tenant secret to give or rotate."""

    def __init__(self) -> None:
        super().__init__("Webhooks are not signed here (no WEBHOOK_SECRET): there is no secret to give")


class DeadlineUnreachable(ServiceError):
    """A strict deadline the task's predicted p90 completion misses: refused before anything starts."""


# HTTP status and error code of each domain error.
ERROR_TABLE: dict[type[ServiceError], tuple[int, str]] = {
    AuthenticationFailed: (401, "authentication_failed"),
    Forbidden: (403, "forbidden"),
    TaskNotFound: (404, "task_not_found"),
    MediaNotFound: (404, "not_found"),
    PipelineNotFound: (404, "pipeline_not_found"),
    ValidationFailed: (400, "validation_error"),
    InvalidState: (400, "invalid_task_state"),
    IdempotencyConflict: (422, "idempotency_key_reused"),
    DeadlineUnreachable: (422, "deadline_unreachable"),
    PayloadTooLarge: (413, "payload_too_large"),
    RateLimited: (429, "rate_limited"),
    ServiceUnavailable: (503, "service_unavailable"),
    WebhookSigningOff: (409, "webhook_signing_off"),
    InternalError: (500, "internal_error"),
}


def status_and_code(err: ServiceError) -> tuple[int, str]:
    for kind in type(err).__mro__:
        if kind in ERROR_TABLE:
            return ERROR_TABLE[kind]
    return ERROR_TABLE[InternalError]


def error_body(err: ServiceError) -> dict[str, Any]:
    """The seed's error body: `error` (the code), `message`, and the error's own fields."""
    return {"error": status_and_code(err)[1], "message": err.message, **err.extra}


def error_headers(err: ServiceError) -> dict[str, str]:
    retry_after = err.extra.get("retry_after")
    return {"Retry-After": str(retry_after)} if retry_after is not None else {}


UNAVAILABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}


def from_temporal(err: RPCError) -> ServiceError:
    """A Temporal call that failed: unreachable or overloaded is worth a retry, anything else is ours."""
    if err.status in UNAVAILABLE:
        return ServiceUnavailable("Temporal is unreachable or overloaded; try again shortly")
    log.error("Temporal call failed", extra={"status": err.status.name, "error": err.message})
    return InternalError("Temporal call failed")
