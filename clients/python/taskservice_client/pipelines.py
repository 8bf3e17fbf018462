"""Pipelines: a whole scene in one request, each step a task fed by earlier steps' outputs.

``client.pipelines.submit/get/wait/cancel/retry/rerun`` (blocking on ``TaskServiceClient``, coroutines on
``AsyncTaskServiceClient``); the operations are written once, as generators (see ``steps``).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, ConfigDict

from taskservice_client.core import ClientCore
from taskservice_client.errors import WaitTimeoutError
from taskservice_client.steps import Operation

if TYPE_CHECKING:
    from taskservice_client.client import AsyncTaskServiceClient, TaskServiceClient

__all__ = [
    "AsyncPipelines",
    "Pipeline",
    "PipelineStep",
    "Pipelines",
    "PlannedStep",
    "SubmittedPipeline",
    "ref",
]

TERMINAL = frozenset({"completed", "failed", "cancelled"})
# One waiting read asks the server to hold it this long (it answers at once when the pipeline has ended).
WAIT_CHUNK_S = 20


def ref(step: str, path: str = "result.media_url") -> dict[str, str]:
    """A reference to an earlier step's output, to stand anywhere in a step's ``task_data``."""
    return {"from": step, "path": path}


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class PlannedStep(_Model):
    id: str
    task_id: str
    task_type: str
    # ``render``, ``cache`` (a render-cache hit, found at submit) or ``reuse`` (from the pipeline retried).
    will: str
    estimated_duration_s: float


class SubmittedPipeline(_Model):
    pipeline_id: str | None
    steps: list[PlannedStep]
    estimated_duration_s: float
    retry_of: str | None = None


class PipelineStep(_Model):
    id: str
    task_id: str
    task_type: str
    status: str
    progress: float
    result: dict[str, Any] | None = None
    error: str | None = None
    cache_hit: bool = False
    reused: bool = False


class Pipeline(_Model):
    pipeline_id: str
    project_id: str
    name: str | None = None
    status: str
    progress: float
    steps: list[PipelineStep]
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    retry_of: str | None = None

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL

    def step(self, step_id: str) -> PipelineStep:
        return next(s for s in self.steps if s.id == step_id)


def submit(core: ClientCore, body: dict[str, Any]) -> Operation[SubmittedPipeline]:
    response = yield from core._request("POST", "/api/v1/pipelines", json_body=body)
    return SubmittedPipeline.model_validate(response.json())


def get(core: ClientCore, pipeline_id: str, wait_s: int = 0) -> Operation[Pipeline]:
    params: dict[str, str | int] = {"wait": wait_s} if wait_s else {}
    timeout = httpx.Timeout(wait_s + 15.0) if wait_s else None
    path = f"/api/v1/pipelines/{pipeline_id}"
    response = yield from core._request("GET", path, params=params, timeout=timeout)
    return Pipeline.model_validate(response.json())


def wait(core: ClientCore, pipeline_id: str, timeout: float | None) -> Operation[Pipeline]:
    """The pipeline once it has ended (waiting on the server, a chunk at a time)."""
    started = time.monotonic()
    while True:
        left = None if timeout is None else timeout - (time.monotonic() - started)
        chunk = WAIT_CHUNK_S if left is None else max(0, min(WAIT_CHUNK_S, int(left)))
        pipeline = yield from get(core, pipeline_id, chunk)
        if pipeline.is_finished:
            return pipeline
        if left is not None and left <= 1:
            raise WaitTimeoutError(pipeline_id, timeout or 0.0, None)


def cancel(core: ClientCore, pipeline_id: str) -> Operation[Pipeline]:
    response = yield from core._request("DELETE", f"/api/v1/pipelines/{pipeline_id}")
    return Pipeline.model_validate(response.json())


def retry(core: ClientCore, pipeline_id: str) -> Operation[SubmittedPipeline]:
    response = yield from core._request("POST", f"/api/v1/pipelines/{pipeline_id}/retry")
    return SubmittedPipeline.model_validate(response.json())


def rerun(
    core: ClientCore, pipeline_id: str, changes: dict[str, dict[str, Any]]
) -> Operation[SubmittedPipeline]:
    path = f"/api/v1/pipelines/{pipeline_id}/rerun"
    response = yield from core._request("POST", path, json_body={"changes": changes})
    return SubmittedPipeline.model_validate(response.json())


def _body(project_id: str, steps: list[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
    return {"project_id": project_id, "steps": steps, **options}


class Pipelines:
    """``client.pipelines`` of the blocking client."""

    def __init__(self, client: TaskServiceClient) -> None:
        self._client = client

    def submit(self, project_id: str, steps: list[dict[str, Any]], **options: Any) -> SubmittedPipeline:
        """Start a pipeline: ``steps`` as ``{id, task_type, task_data, after?}``; ``options``: ``name``,
        ``callback_url``, ``webhook_events_filter``, ``metadata``, ``priority``, ``cache``, ``on_failure``."""
        return self._client._transport.run(submit(self._client, _body(project_id, steps, options)))

    def get(self, pipeline_id: str) -> Pipeline:
        return self._client._transport.run(get(self._client, pipeline_id))

    def wait(self, pipeline_id: str, *, timeout: float | None = 600.0) -> Pipeline:
        """The pipeline once it has ended (whatever its status); ``WaitTimeoutError`` after ``timeout``."""
        return self._client._transport.run(wait(self._client, pipeline_id, timeout))

    def cancel(self, pipeline_id: str) -> Pipeline:
        return self._client._transport.run(cancel(self._client, pipeline_id))

    def retry(self, pipeline_id: str) -> SubmittedPipeline:
        """A new pipeline running the steps that did not complete; the completed ones are reused."""
        return self._client._transport.run(retry(self._client, pipeline_id))

    def rerun(self, pipeline_id: str, changes: dict[str, dict[str, Any]]) -> SubmittedPipeline:
        """A new pipeline with ``changes`` (by step ID, task_data fields): what they reach runs again."""
        return self._client._transport.run(rerun(self._client, pipeline_id, changes))


class AsyncPipelines:
    """``client.pipelines`` of the asyncio client: the same methods, as coroutines."""

    def __init__(self, client: AsyncTaskServiceClient) -> None:
        self._client = client

    async def submit(self, project_id: str, steps: list[dict[str, Any]], **options: Any) -> SubmittedPipeline:
        return await self._client._transport.run(submit(self._client, _body(project_id, steps, options)))

    async def get(self, pipeline_id: str) -> Pipeline:
        return await self._client._transport.run(get(self._client, pipeline_id))

    async def wait(self, pipeline_id: str, *, timeout: float | None = 600.0) -> Pipeline:
        return await self._client._transport.run(wait(self._client, pipeline_id, timeout))

    async def cancel(self, pipeline_id: str) -> Pipeline:
        return await self._client._transport.run(cancel(self._client, pipeline_id))

    async def retry(self, pipeline_id: str) -> SubmittedPipeline:
        return await self._client._transport.run(retry(self._client, pipeline_id))

    async def rerun(self, pipeline_id: str, changes: dict[str, dict[str, Any]]) -> SubmittedPipeline:
        return await self._client._transport.run(rerun(self._client, pipeline_id, changes))
