"""Exceptions of the SDK: one class per error the API answers, plus the outcomes of ``wait()``."""

from __future__ import annotations

import email.utils
import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from taskservice_client.models import TaskStatus

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "ForbiddenError",
    "InvalidTaskStateError",
    "RateLimitedError",
    "ServerError",
    "ServiceConnectionError",
    "ServiceUnavailableError",
    "TaskCancelledError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskServiceError",
    "ValidationError",
    "WaitTimeoutError",
    "error_from_response",
    "retry_after_seconds",
]


class TaskServiceError(Exception):
    """Base of every SDK error. For API errors, the fields are the error body's (``error``, ``message``,
    ``details``, ``retry_after``) and ``status_code`` is the HTTP status (None when no answer came)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        details: dict[str, str] | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error = error or "error"
        self.details: dict[str, str] = dict(details or {})
        self.retry_after = retry_after
        self.body = body

    def __str__(self) -> str:
        text = self.message
        if self.details:
            text += " (" + "; ".join(f"{k}: {v}" for k, v in self.details.items()) + ")"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-friendly dict (the CLI's ``--json`` error output)."""
        out: dict[str, Any] = {"error": self.error, "message": self.message, "status_code": self.status_code}
        if self.details:
            out["details"] = self.details
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


class ServiceConnectionError(TaskServiceError):
    """The API could not be reached (connection refused, DNS, timeout)."""


class AuthenticationError(TaskServiceError):
    """401: missing or wrong API key."""


class ForbiddenError(TaskServiceError):
    """403: the key may not do this."""


class TaskNotFoundError(TaskServiceError):
    """404: no task with this ID (or it is past the retention window)."""


class ValidationError(TaskServiceError):
    """400: the request was invalid; ``details`` maps dotted field paths to messages."""


class InvalidTaskStateError(ValidationError):
    """400 ``invalid_task_state``: e.g. cancelling a completed task, or retrying an unfinished one."""


class ConflictError(TaskServiceError):
    """422: e.g. an Idempotency-Key reused with a different request body."""


class RateLimitedError(TaskServiceError):
    """429: too many requests (or too many unfinished tasks in the project); see ``retry_after``."""


class ServerError(TaskServiceError):
    """5xx other than 503."""


class ServiceUnavailableError(ServerError):
    """503: the service cannot reach Temporal right now; see ``retry_after``."""


class TaskFailedError(TaskServiceError):
    """``wait()``: the task ended ``failed``; ``status`` is its final status."""

    def __init__(self, status: TaskStatus) -> None:
        super().__init__(
            f"Task {status.task_id} failed: {status.error or 'unknown error'}", error="task_failed"
        )
        self.status = status


class TaskCancelledError(TaskServiceError):
    """``wait()``: the task ended ``cancelled``; ``status`` is its final status."""

    def __init__(self, status: TaskStatus) -> None:
        super().__init__(f"Task {status.task_id} was cancelled", error="task_cancelled")
        self.status = status


class WaitTimeoutError(TaskServiceError):
    """``wait()``/``stream()``: the task did not finish in time; ``last_status`` is the last one seen."""

    def __init__(self, task_id: str, timeout: float, last_status: TaskStatus | None) -> None:
        state = f" (last status: {last_status.status.value})" if last_status is not None else ""
        super().__init__(f"Task {task_id} did not finish within {timeout:g} s{state}", error="wait_timeout")
        self.task_id = task_id
        self.timeout = timeout
        self.last_status = last_status


_BY_STATUS: dict[int, type[TaskServiceError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: TaskNotFoundError,
    422: ConflictError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def retry_after_seconds(response: httpx.Response, body: Any = None) -> float | None:
    """Seconds to wait from the ``Retry-After`` header (seconds or HTTP date), else the body's
    ``retry_after``; None when neither says."""
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                parsed = None
            if parsed is not None and parsed.tzinfo is not None:
                return max(0.0, parsed.timestamp() - time.time())
    if isinstance(body, dict) and isinstance(body.get("retry_after"), int | float):
        return max(0.0, float(body["retry_after"]))
    return None


def error_from_response(response: httpx.Response) -> TaskServiceError:
    """The exception for an error answer of the API."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    code = response.status_code
    error = message = None
    details: dict[str, str] = {}
    if isinstance(body, dict):
        error = body.get("error") if isinstance(body.get("error"), str) else None
        raw_message = body.get("message", body.get("detail"))
        message = raw_message if isinstance(raw_message, str) else None
        if isinstance(body.get("details"), dict):
            details = {str(k): str(v) for k, v in body["details"].items()}
    if message is None:
        text = response.text.strip()
        message = f"HTTP {code} {response.reason_phrase}" + (f": {text[:200]}" if text else "")
    cls = _BY_STATUS.get(code, ServerError if code >= 500 else TaskServiceError)
    if code == 400 and error == "invalid_task_state":
        cls = InvalidTaskStateError
    return cls(
        message,
        status_code=code,
        error=error or f"http_{code}",
        details=details,
        retry_after=retry_after_seconds(response, body) if code in (429, 503) else None,
        body=body,
    )
