"""The API's operations, once for both clients: each builds its request, runs ``ClientCore._request`` and
parses the answer into a model (see ``steps`` for how an operation runs)."""

from __future__ import annotations

from typing import Any

import httpx

from taskservice_client import models
from taskservice_client.core import ClientCore
from taskservice_client.errors import error_from_response
from taskservice_client.steps import Emit, Emitting, HttpCall, Operation


def submit(
    core: ClientCore,
    project_id: str,
    task_type: str,
    task_data: dict[str, Any],
    priority: int = 2,
    callback_url: str | None = None,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    cache: str | None = None,
) -> Operation[models.SubmitResult]:
    body: dict[str, Any] = {
        "project_id": project_id,
        "task_type": task_type,
        "task_data": task_data,
        "priority": priority,
        "metadata": metadata or {},
    }
    if callback_url is not None:
        body["callback_url"] = callback_url
    if cache is not None:
        body["cache"] = cache
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    response = yield from core._request("POST", "/api/v1/tasks/submit", json_body=body, headers=headers)
    replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
    return models.SubmitResult.model_validate({**response.json(), "replayed": replayed})


def quote(
    core: ClientCore,
    project_id: str,
    task_type: str,
    task_data: dict[str, Any],
    *,
    deadline_s: float | None = None,
    strict: bool = False,
) -> Operation[models.Quote]:
    body: dict[str, Any] = {"project_id": project_id, "task_type": task_type, "task_data": task_data}
    if deadline_s is not None:
        body["deadline_s"] = deadline_s
    headers = {"Prefer": "handling=strict"} if strict else {}
    response = yield from core._request("POST", "/api/v1/tasks/quote", json_body=body, headers=headers)
    return models.Quote.model_validate(response.json())


def status(core: ClientCore, task_id: str) -> Operation[models.TaskStatus]:
    response = yield from core._request("GET", f"/api/v1/tasks/{task_id}/status")
    return models.TaskStatus.model_validate(response.json())


def cancel(core: ClientCore, task_id: str) -> Operation[models.CancelResult]:
    response = yield from core._request("DELETE", f"/api/v1/tasks/{task_id}")
    return models.CancelResult.model_validate(response.json())


def retry(core: ClientCore, task_id: str) -> Operation[models.RetryResult]:
    response = yield from core._request("POST", f"/api/v1/tasks/{task_id}/retry")
    return models.RetryResult.model_validate(response.json())


def webhook_secret(core: ClientCore) -> Operation[models.WebhookSecret]:
    response = yield from core._request("GET", "/api/v1/webhooks/secret")
    return models.WebhookSecret.model_validate(response.json())


def rotate_webhook_secret(core: ClientCore) -> Operation[models.WebhookSecret]:
    response = yield from core._request("POST", "/api/v1/webhooks/secret/rotate", retry=False)
    return models.WebhookSecret.model_validate(response.json())


def list_page(
    core: ClientCore,
    project_id: str,
    page: int,
    limit: int,
    status: models.TaskState | str | None,
    task_type: str | None,
) -> Operation[models.TaskPage]:
    if not 1 <= limit <= 100:
        raise ValueError("limit/page_size must be between 1 and 100")
    params: dict[str, str | int] = {"page": page, "limit": limit}
    if status is not None:
        params["status"] = str(status)
    if task_type is not None:
        params["task_type"] = task_type
    response = yield from core._request("GET", f"/api/v1/projects/{project_id}/tasks", params=params)
    return models.TaskPage.model_validate(response.json())


def list_tasks(
    core: ClientCore,
    project_id: str,
    status: models.TaskState | str | None,
    task_type: str | None,
    page_size: int,
    max_items: int | None,
) -> Emitting[models.TaskListItem, None]:
    """Every task of the project, page after page (a task that moves between pages is emitted once)."""
    seen: set[str] = set()
    page = 1
    while True:
        result = yield from list_page(core, project_id, page, page_size, status, task_type)
        for item in result.tasks:
            if item.task_id in seen:
                continue
            seen.add(item.task_id)
            yield Emit(item)
            if max_items is not None and len(seen) >= max_items:
                return
        if not result.tasks or page >= result.pagination.total_pages:
            return
        page += 1


def health(core: ClientCore) -> Operation[models.Health]:
    response = yield from core._request("GET", "/api/v1/health", retry=False, accept=(503,))
    # 503 with a health body means "unhealthy" (Temporal unreachable): a result, not an error.
    body = response.json() if response.status_code == 503 else None
    if response.status_code == 503 and not (isinstance(body, dict) and "temporal_status" in body):
        raise error_from_response(response)
    return models.Health.model_validate(response.json())


def queue_health(core: ClientCore) -> Operation[models.QueueHealth]:
    response = yield from core._request("GET", "/api/v1/tasks/health")
    return models.QueueHealth.model_validate(response.json())


def metrics(core: ClientCore) -> Operation[models.Metrics]:
    response = yield from core._request("GET", "/api/v1/tasks/metrics")
    body = response.json()
    return models.Metrics.model_validate({**body.get("metrics", {}), "timestamp": body.get("timestamp")})


def ping(core: ClientCore) -> Operation[bool]:
    """The liveness probe: no key, no retries; any HTTP error means "not alive"."""
    try:
        response: httpx.Response = yield HttpCall(
            "GET", core._url("/health"), timeout=httpx.Timeout(core.timeout)
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200
