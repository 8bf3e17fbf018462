"""Domain errors and the one table that maps them to HTTP status codes and error bodies."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status_code = 500
    error = "internal_error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.extra}

    def headers(self) -> dict[str, str]:
        return {}


class AuthenticationFailed(ServiceError):
    status_code = 401
    error = "authentication_failed"


class Forbidden(ServiceError):
    status_code = 403
    error = "forbidden"


class TaskNotFound(ServiceError):
    status_code = 404
    error = "task_not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"Task with ID '{task_id}' not found")


class ValidationFailed(ServiceError):
    status_code = 400
    error = "validation_error"

    def __init__(self, details: dict[str, str], message: str = "Invalid task data") -> None:
        super().__init__(message, details=details)


class InvalidState(ServiceError):
    """The task is in a state that does not allow the operation (e.g. cancelling a completed task)."""

    status_code = 400
    error = "invalid_task_state"

    def body(self) -> dict[str, Any]:
        # `detail` is what the Celery service answered; clients written for it read that key.
        return {**super().body(), "detail": self.message}


class IdempotencyConflict(ServiceError):
    status_code = 422
    error = "idempotency_key_reused"


class RateLimited(ServiceError):
    status_code = 429
    error = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(ServiceError):
    status_code = 503
    error = "service_unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
