"""The OpenAPI document: what FastAPI derives from the routes, plus what it cannot derive.

- Each task type's `task_data` model, tied to its `task_type`: `SubmitTaskRequest` is documented as a
  discriminated union of one variant per type (`Submit<Type>Request`), so generators type `task_data` per
  type. The submit itself still parses the generic body: validation stays in the service (400
  `validation_error` with dotted `details`, an unknown type listing the known ones).
- The errors each operation can answer, from ERROR_TABLE (`error_responses`), with seed-style examples.
- No framework 422: request validation answers 400 `validation_error` here (api/main.py).
- Each operation's summary and description come from its endpoint's docstring (`DocumentedRoute`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.domain.errors import (
    ERROR_TABLE,
    AuthenticationFailed,
    DeadlineUnreachable,
    Forbidden,
    IdempotencyConflict,
    InvalidState,
    MediaNotFound,
    PayloadTooLarge,
    PipelineNotFound,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
    TaskNotFound,
    ValidationFailed,
    WebhookSigningOff,
)
from api.rest.schemas import ErrorResponse
from taskservice.catalog import CATALOG, TaskSpec
from taskservice.task_examples import TASK_DATA_EXAMPLES


class DocumentedRoute(APIRoute):
    """An operation documented by its endpoint's docstring: the first paragraph is the summary (its closing
    period dropped), the others the description; a paragraph's lines are joined into one, as in the text."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(endpoint.__doc__ or "").split("\n\n")]
        if kwargs.get("summary") is None and paragraphs[0]:
            kwargs["summary"] = paragraphs[0].removesuffix(".")
        explicit = kwargs.get("description") is not None
        super().__init__(path, endpoint, **kwargs)
        if not explicit:
            self.description = "\n\n".join(paragraphs[1:])


REF = "#/components/schemas/{model}"
ERROR_REF = REF.format(model=ErrorResponse.__name__)
RETRY_AFTER = {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}

# What each domain error means to a caller, and an answer it may see (seed 001's where it has one).
ERROR_DOCS: dict[type[ServiceError], tuple[str, dict[str, Any]]] = {
    ValidationFailed: (
        "the request is invalid; `details` names each bad field by its dotted path",
        {
            "message": "Invalid task data",
            "details": {"task_data.duration": "Input should be less than or equal to 30"},
        },
    ),
    InvalidState: (
        "the task's state refuses this (e.g. cancelling a finished task); `detail` repeats the message",
        {
            "message": "Task has already completed successfully and cannot be cancelled",
            "detail": "Task has already completed successfully and cannot be cancelled",
        },
    ),
    AuthenticationFailed: ("no valid `X-API-Key` or Bearer token", {"message": "Invalid or missing API key"}),
    Forbidden: (
        "this needs the admin key (`ADMIN_API_KEY`), or for a webhook secret's rotation a tenant-wide "
        "credential (an API key or a `role: service` token)",
        {"message": "This endpoint needs the admin key (ADMIN_API_KEY)"},
    ),
    TaskNotFound: ("no such task in the caller's tenant", {"message": "Task with ID 'abc123' not found"}),
    PipelineNotFound: (
        "no such pipeline in the caller's tenant",
        {"message": "Pipeline with ID 'pl-5f0c…' not found"},
    ),
    MediaNotFound: (
        "no such file, or the URL's signature is missing, wrong or expired",
        {"message": "No media at 'demo/generate_image/abc123.png'"},
    ),
    DeadlineUnreachable: (
        "a strict deadline (`Prefer: handling=strict`, `deadline_policy: reject`) the task is not predicted "
        "to meet (its p90 completion is later); nothing was started",
        {
            "message": "The task would finish after its deadline of 60 s (90 % of tasks like it finish by "
            "2026-12-07T12:03:10Z)",
            "deadline_s": 60,
            "estimated_start_at": "2026-12-07T12:01:00Z",
            "estimated_completion_at": "2026-12-07T12:02:30Z",
            "completion_p90_at": "2026-12-07T12:03:10Z",
            "duration_p90_s": 130.0,
        },
    ),
    IdempotencyConflict: (
        "this `Idempotency-Key` was used with another body; `task_id` names the task it made",
        {
            "message": "This Idempotency-Key was already used with a different request body",
            "task_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        },
    ),
    PayloadTooLarge: (
        "the body (or its `metadata`) is too large; `limit_bytes` says how large it may be",
        {"message": "The request body is larger than 1048576 bytes", "limit_bytes": 1048576},
    ),
    RateLimited: (
        "a limit of the tenant is reached (requests per minute, open streams, unfinished tasks of a "
        "project); retry after `Retry-After` seconds",
        {"message": "Submit rate limit of 100 per minute exceeded", "retry_after": 12},
    ),
    ServiceUnavailable: (
        "Temporal is unreachable or overloaded; retry after `Retry-After` seconds",
        {"message": "Temporal is unreachable or overloaded; try again shortly", "retry_after": 5},
    ),
    WebhookSigningOff: (
        "webhooks are sent unsigned here (no `WEBHOOK_SECRET`): there is no tenant secret",
        {"message": "Webhooks are not signed here (no WEBHOOK_SECRET): there is no secret to give"},
    ),
}
# Every authenticated operation: the credential, the tenant's rate limit, and Temporal's availability.
AUTHENTICATED: tuple[type[ServiceError], ...] = (AuthenticationFailed, RateLimited, ServiceUnavailable)


def _example(kind: type[ServiceError]) -> dict[str, Any]:
    code = ERROR_TABLE[kind][1]
    return {"summary": code, "value": {"error": code, **ERROR_DOCS[kind][1]}}


def error_responses(*kinds: type[ServiceError]) -> dict[int | str, dict[str, Any]]:
    """The error answers of an operation that can raise `kinds`, grouped by HTTP status."""
    by_status: dict[int, list[type[ServiceError]]] = {}
    for kind in dict.fromkeys(kinds):
        by_status.setdefault(ERROR_TABLE[kind][0], []).append(kind)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        # The body's schema by reference (ErrorResponse is put in the components once, see install_openapi):
        # a `model` would be filed under a plain-text route's media type.
        examples = {ERROR_TABLE[k][1]: _example(k) for k in group}
        response: dict[str, Any] = {
            "description": "; ".join(f"`{ERROR_TABLE[k][1]}`: {ERROR_DOCS[k][0]}" for k in group),
            "content": {"application/json": {"schema": {"$ref": ERROR_REF}, "examples": examples}},
        }
        if any(k in (RateLimited, ServiceUnavailable) for k in group):
            response["headers"] = {"Retry-After": RETRY_AFTER}
        responses[status] = response
    return responses


def operation_id(route: APIRoute) -> str:
    """Operation IDs are the handlers' names (`submit_task`, `task_status`): what SDK generators call them."""
    return route.name


def variant_name(spec: TaskSpec) -> str:
    return "Submit" + "".join(part.capitalize() for part in spec.name.split("_")) + "Request"


def submit_examples() -> dict[str, dict[str, Any]]:
    """The submit body's named examples (Swagger UI's drop-down): one per task type."""
    return {name: {"summary": spec.description, "value": _submission(name)} for name, spec in CATALOG.items()}


def _submission(task_type: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "project_id": "detective_series_001",
        "task_type": task_type,
        "task_data": TASK_DATA_EXAMPLES[task_type],
    }
    if task_type == "generate_video":  # seed 001's submit example (less its callback URL, which must resolve)
        body |= {"priority": 1, "metadata": {"user_id": "user123", "agent_id": "video_generation_agent"}}
    return body


def _task_data_schemas() -> dict[str, Any]:
    """components.schemas of every task type's input model and the models they use, with examples."""
    models: dict[type[BaseModel], str] = {}
    for name, spec in CATALOG.items():
        models.setdefault(spec.input_model, name)
    _, top = models_json_schema([(model, "validation") for model in models], ref_template=REF)
    schemas: dict[str, Any] = top["$defs"]
    for model, first_type in models.items():
        schemas[model.__name__]["examples"] = [TASK_DATA_EXAMPLES[first_type]]
    return schemas


def _variant(spec: TaskSpec, generic: dict[str, Any]) -> dict[str, Any]:
    """The submit body of one task type: the generic body's fields, `task_type` fixed, `task_data` typed."""
    properties = dict(generic["properties"])
    properties["task_type"] = {
        "type": "string",
        "const": spec.name,
        "enum": [spec.name],
        "title": "Task Type",
        "description": f"`{spec.name}` (queue `{spec.queue.value}`).",
    }
    properties["task_data"] = {
        "$ref": REF.format(model=spec.input_model.__name__),
        "description": f"Inputs of `{spec.name}`.",
    }
    return {
        "type": "object",
        "title": variant_name(spec),
        "description": spec.description,
        "properties": properties,
        "required": generic["required"],
        "examples": [_submission(spec.name)],
    }


def _type_task_data(schemas: dict[str, Any]) -> None:
    """SubmitTaskRequest as a union discriminated by `task_type`, over the catalog's types."""
    generic = schemas["SubmitTaskRequest"]
    for name, schema in _task_data_schemas().items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"OpenAPI schema name {name!r} is used by two different models")
        schemas[name] = schema
    refs = {}
    for name, spec in CATALOG.items():
        schemas[variant_name(spec)] = _variant(spec, generic)
        refs[name] = REF.format(model=variant_name(spec))
    schemas["SubmitTaskRequest"] = {
        "title": "SubmitTaskRequest",
        "description": generic.get("description", ""),
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "task_type", "mapping": refs},
    }


def _drop_framework_422(document: dict[str, Any]) -> None:
    """FastAPI adds a 422 to every operation with parameters; this API answers 400 for those instead."""
    framework = REF.format(model="HTTPValidationError")
    for operations in document["paths"].values():
        for operation in operations.values():
            content = operation.get("responses", {}).get("422", {}).get("content", {})
            if content.get("application/json", {}).get("schema", {}).get("$ref") == framework:
                del operation["responses"]["422"]
    schemas = document["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def install_openapi(app: FastAPI) -> None:
    """Build the document once, on first request, as FastAPI does, then complete it."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _drop_framework_422(document)
            document["components"]["schemas"].setdefault(
                ErrorResponse.__name__, ErrorResponse.model_json_schema(ref_template=REF)
            )
            _type_task_data(document["components"]["schemas"])
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
