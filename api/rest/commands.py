"""REST requests as domain commands: a submit body and its headers, a batch's items."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from api.domain.caller import Caller
from api.domain.commands import StartTask
from api.domain.errors import ServiceError, ValidationFailed
from api.domain.validation import pydantic_details
from api.rest.schemas import SubmitTaskRequest

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds from `90`, `90s`, `1.5m`, `1h30m`, `500ms` (Replicate's Cancel-After forms)."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    elif text and re.fullmatch(f"(?:{_DURATION.pattern})+", text):
        unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        seconds = sum(float(n) * unit[u] for n, u in _DURATION.findall(text))
    else:
        raise ValueError("must be seconds or a duration like 90s, 5m, 1h30m")
    if not 0 < seconds <= 7 * 24 * 3600:
        raise ValueError("must be between 0 and 7 days")
    return seconds


def deadline_seconds(body: SubmitTaskRequest, cancel_after: str | None) -> float | None:
    """The task's deadline: the `Cancel-After` header wins over the body's `deadline_s`."""
    if cancel_after is None:
        return body.deadline_s
    try:
        return parse_duration(cancel_after)
    except ValueError as err:
        raise ValidationFailed({"Cancel-After": str(err)}, message="Invalid request") from None


def start_task(
    caller: Caller,
    body: SubmitTaskRequest,
    *,
    idempotency_key: str | None = None,
    cancel_after: str | None = None,
    strict: bool = False,
) -> StartTask:
    """The task a submit body (with its `Idempotency-Key` and `Cancel-After` headers) asks for."""
    events = body.webhook_events_filter
    return StartTask(
        tenant=caller.tenant,
        user=caller.subject,
        caller=caller,
        project_id=body.project_id,
        task_type=body.task_type,
        task_data=body.task_data,
        priority=body.priority,
        callback_url=body.callback_url,
        metadata=body.metadata,
        deadline_s=deadline_seconds(body, cancel_after),
        strict_deadline=strict or body.deadline_policy == "reject",
        webhook_events=tuple(events) if events is not None else None,
        idempotency_key=idempotency_key,
        cache=body.cache,
    )


def batch_item(caller: Caller, item: dict[str, Any]) -> StartTask | ServiceError:
    """One item of a batch (a submit body as JSON), or why it is none: it fails alone, in its place."""
    try:
        return start_task(caller, SubmitTaskRequest.model_validate(item))
    except ValidationError as err:
        return ValidationFailed(pydantic_details(err), message="Invalid request")
