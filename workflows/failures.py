"""What a failed task tells its caller: the innermost error's message, type and stack trace, without host
paths (shared by the task workflow and the coalesced render)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from taskservice.host_paths import scrub_host_paths


@dataclass(frozen=True)
class TaskFailure:
    message: str
    type: str | None = None
    traceback: str | None = None


def activity_failure(err: ActivityError) -> TaskFailure:
    """The innermost failure's message (what went wrong), its type and its stack trace, if the worker sent
    one."""
    cause: BaseException = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    message = str(cause.message if isinstance(cause, FailureError) else cause) or type(cause).__name__
    error_type = cause.type if isinstance(cause, ApplicationError) and cause.type else None
    trace = cause.failure.stack_trace if isinstance(cause, FailureError) and cause.failure else None
    # What tenants read (the error, the failure webhook's traceback) names no host path.
    traceback = scrub_host_paths(f"Traceback (most recent call last):\n{trace}") if trace else None
    return TaskFailure(scrub_host_paths(message) or message, error_type, traceback)
