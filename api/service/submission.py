"""The rules of a submission: known task types, valid inputs, sizes, idempotency, the workflow's input."""

from __future__ import annotations

import hashlib
import hmac
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
from taskservice.media_budget import MediaBudget, over_budget
from taskservice.record import TaskRecord
from taskservice.render_cache import cache_plan
from taskservice.settings import Settings
from taskservice.timefmt import iso_z

# Largest `metadata` of a task (it is passed back in every webhook).
MAX_METADATA_BYTES = 16 * 1024
# The HMAC key of idempotent task IDs while IDEMPOTENCY_SECRET is unset (development: it is in the source).
DEVELOPMENT_IDEMPOTENCY_KEY = b"taskservice development idempotency key"


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


def validate_task_data(
    spec: TaskSpec, task_data: dict[str, Any], budget: MediaBudget | None = None
) -> dict[str, Any]:
    """The task type's input model, as JSON: what the workflow runs with; within `budget` when given."""
    try:
        model: BaseModel = spec.input_model.model_validate(task_data)
    except ValidationError as err:
        raise ValidationFailed(pydantic_details(err, prefix="task_data")) from None
    if budget is not None:
        check_budget(spec, model, budget)
    return model.model_dump(mode="json", exclude_none=True)


def check_llm_options(task_type: str, task_data: dict[str, Any], settings: Settings) -> None:
    """An LLM task names only an allowed model (LLM_MODEL, LLM_ALLOWED_MODELS) and asks for no more than its
    type's `max_tokens` cap (LLM_MAX_TOKENS[_<TYPE>])."""
    details: dict[str, str] = {}
    model = task_data.get("model")
    if model is not None and model not in settings.llm_models():
        details["task_data.model"] = (
            f"model '{model}' is not allowed; allowed: {', '.join(settings.llm_models())}"
        )
    cap = settings.llm_max_tokens_of(task_type)
    if isinstance(task_data.get("max_tokens"), int) and task_data["max_tokens"] > cap:
        details["task_data.max_tokens"] = f"at most {cap} tokens may be asked of a {task_type} task"
    if details:
        raise ValidationFailed(details)


def check_budget(spec: TaskSpec, task_data: BaseModel, budget: MediaBudget) -> None:
    """A media request above its work budget is refused before anything starts, naming budget and figure."""
    over = over_budget(task_data, budget)
    if over is not None:
        message = over.message(spec.name, budget.device)
        raise ValidationFailed({f"task_data.{over.field}": message}, message=message)


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


def idempotency_secret(settings: Settings) -> bytes:
    secret = settings.idempotency_secret
    return secret.get_secret_value().encode() if secret is not None else DEVELOPMENT_IDEMPOTENCY_KEY


def idempotent_task_id(secret: bytes, tenant: str, user: str, idempotency_key: str) -> str:
    """The task an owner's key names for the whole retention window: HMAC(secret) of the length-prefixed
    tenant, user (empty for the whole tenant) and key, so that no two owners' keys meet (user `bob` with
    key `1:2` is not user `bob:1` with key `2`) and no one without the secret computes another's IDs."""
    message = b"".join(
        len(raw).to_bytes(4, "big") + raw for raw in (p.encode() for p in (tenant, user, idempotency_key))
    )
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


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
        cache=cache_plan(spec.cache_policy, record.cache, record.task_data),
    )
