"""The rules of a submission: known task types, valid inputs, sizes, idempotency, the workflow's input."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from api.domain.commands import MAX_CALLBACK_URL_LENGTH, PROJECT_ID_PATTERN, StartTask
from api.domain.errors import PayloadTooLarge, ValidationFailed
from api.domain.validation import pydantic_details
from taskservice.catalog import CATALOG, TaskSpec
from taskservice.contracts import ConcurrencySlot, TaskWorkflowInput
from taskservice.record import TaskRecord
from taskservice.settings import Settings
from taskservice.timefmt import iso_z

# Largest `metadata` of a task (it is passed back in every webhook).
MAX_METADATA_BYTES = 16 * 1024
# Idempotency keys map to task IDs inside this namespace, per owner (tenant, or a tenant's user).
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d3c1e-2b1a-4a53-9f3e-7f4f3c2d9a10")


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


def check_fields(command: StartTask) -> None:
    """What every surface's own parsing already checks (REST's schema documents it): checked again here for
    the surfaces and the starts that have no such schema."""
    details: dict[str, str] = {}
    if not re.fullmatch(PROJECT_ID_PATTERN, command.project_id):
        details["project_id"] = f"project_id must match {PROJECT_ID_PATTERN}"
    if command.callback_url is not None and len(command.callback_url) > MAX_CALLBACK_URL_LENGTH:
        details["callback_url"] = f"callback_url must be at most {MAX_CALLBACK_URL_LENGTH} characters"
    if details:
        raise ValidationFailed(details, message="Invalid request")


def check_sizes(record: TaskRecord) -> None:
    """Fields with their own size limits (the request body as a whole is limited before parsing)."""
    size = len(json.dumps(record.metadata, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise PayloadTooLarge(
            f"metadata is {size} bytes; at most {MAX_METADATA_BYTES} are accepted",
            limit_bytes=MAX_METADATA_BYTES,
        )


def idempotent_task_id(owner: str, idempotency_key: str) -> str:
    """The same key from the same owner names the same task for the whole retention window."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{owner}:{idempotency_key}"))


def new_task_id() -> str:
    return str(uuid.uuid4())


def workflow_input(task_id: str, spec: TaskSpec, record: TaskRecord, settings: Settings) -> TaskWorkflowInput:
    """Everything the task's workflow runs with, frozen at submit: the record, the plan, the caps."""
    created_at = datetime.fromisoformat(record.created_at)
    deadline_at = iso_z(created_at + timedelta(seconds=record.deadline_s)) if record.deadline_s else None
    return TaskWorkflowInput(
        task_id=task_id,
        task=record,
        plan=spec.plan(settings.task_retry_initial_interval),
        deadline_at=deadline_at,
        concurrency=[ConcurrencySlot(group, limit) for group, limit in spec.concurrency_limits(settings)],
        fairness_weight=float(settings.weights().get(record.tenant, 1)),
    )
