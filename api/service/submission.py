"""The rules of a submission: known task types, valid inputs, deadlines, idempotency, the workflow's input."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from api.domain.errors import PayloadTooLarge, ValidationFailed
from api.domain.validation import pydantic_details
from api.rest.schemas import SubmitTaskRequest
from taskservice.catalog import CATALOG, TaskSpec
from taskservice.contracts import ConcurrencySlot, TaskWorkflowInput
from taskservice.record import TaskRecord
from taskservice.render_cache import cache_plan
from taskservice.settings import Settings

# Largest `metadata` of a task (it is passed back in every webhook).
MAX_METADATA_BYTES = 16 * 1024
# Idempotency keys map to task IDs inside this namespace, per owner (tenant, or a tenant's user).
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d3c1e-2b1a-4a53-9f3e-7f4f3c2d9a10")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def task_spec(task_type: str, *, field: str = "task_type", message: str | None = None) -> TaskSpec:
    """The catalog entry of a task type; an unknown one is a validation error naming the valid ones (in the
    message too, unless the caller words it: a filter of a listing says its query is invalid)."""
    spec = CATALOG.get(task_type)
    if spec is None:
        unknown = f"Unknown task type '{task_type}'; expected one of: {', '.join(CATALOG)}"
        raise ValidationFailed({field: unknown}, message=message or unknown)
    return spec


def known_task_type(task_type: str | None, *, field: str, message: str) -> None:
    """A task-type filter: absent, or a type of the catalog."""
    if task_type is not None:
        task_spec(task_type, field=field, message=message)


def validate_task_data(spec: TaskSpec, task_data: dict[str, Any]) -> dict[str, Any]:
    """The task type's input model, as JSON: what the workflow runs with."""
    try:
        model: BaseModel = spec.input_model.model_validate(task_data)
    except ValidationError as err:
        raise ValidationFailed(pydantic_details(err, prefix="task_data")) from None
    return model.model_dump(mode="json", exclude_none=True)


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


def check_sizes(record: TaskRecord) -> None:
    """Fields with their own size limits (the request body as a whole is limited before parsing)."""
    size = len(json.dumps(record.metadata, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise PayloadTooLarge(
            f"metadata is {size} bytes; at most {MAX_METADATA_BYTES} are accepted",
            limit_bytes=MAX_METADATA_BYTES,
        )


def request_hash(body: SubmitTaskRequest) -> str:
    # `cache` counts only when given, so bodies hash as they did before the field existed.
    fields = body.model_dump(mode="json", exclude={"cache"} if body.cache is None else None)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def idempotent_task_id(owner: str, idempotency_key: str) -> str:
    """The same key from the same owner names the same task for the whole retention window."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{owner}:{idempotency_key}"))


def new_task_id() -> str:
    return str(uuid.uuid4())


def workflow_input(task_id: str, spec: TaskSpec, record: TaskRecord, settings: Settings) -> TaskWorkflowInput:
    """Everything the task's workflow runs with, frozen at submit: the record, the plan, the caps."""
    created_at = datetime.fromisoformat(record.created_at)
    deadline_at = (
        (created_at + timedelta(seconds=record.deadline_s)).isoformat() if record.deadline_s else None
    )
    return TaskWorkflowInput(
        task_id=task_id,
        task=record,
        plan=spec.plan(settings.task_retry_initial_interval),
        deadline_at=deadline_at,
        concurrency=[ConcurrencySlot(group, limit) for group, limit in spec.concurrency_limits(settings)],
        fairness_weight=float(settings.weights().get(record.tenant, 1)),
        cache=cache_plan(spec.cache_policy, record.cache, record.task_data),
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
