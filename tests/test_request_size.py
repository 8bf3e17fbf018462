"""Request bodies over MAX_REQUEST_BYTES and `metadata` over 16 KiB are refused with 413 payload_too_large
(never a "retry later") before anything starts; at the limit exactly, they are accepted and the task runs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from temporalio.client import Client

from taskservice.settings import Settings
from tests.support.tasks import count_workflows, submit, wait_status

BODY_LIMIT = Settings.model_fields["max_request_bytes"].default  # what the stack runs with (1 MiB)
METADATA_LIMIT = 16 * 1024
JSON = {"content-type": "application/json"}


def _project() -> str:
    return f"p_size_{uuid.uuid4().hex[:8]}"


def sized(body: Any, size: int) -> bytes:
    """`body` as JSON, padded with whitespace (still the same JSON) to exactly `size` bytes."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def llm_body(project: str, size: int) -> dict[str, Any]:
    """A valid submission of nearly `size` bytes: a long conversation, ending with a short question."""
    history = [{"role": "assistant", "content": "x" * 90_000} for _ in range(size // 90_050)]
    messages = [*history, {"role": "user", "content": "Still there?"}]
    return {"project_id": project, "task_type": "run_llm_inference", "task_data": {"messages": messages}}


def metadata_of(size: int) -> dict[str, str]:
    """Metadata whose compact JSON is exactly `size` bytes."""
    return {"m": "x" * (size - len('{"m":""}'))}


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 64 * 1024):
        yield data[start : start + 64 * 1024]


def assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text[:300]
    body = response.json()
    assert body["error"] == "payload_too_large" and body["limit_bytes"] == limit, body
    assert "Retry-After" not in response.headers


async def executions(temporal: Client, project: str, expected: int) -> int:
    await asyncio.sleep(0.5)  # a start that did happen is visible by now
    return await count_workflows(temporal, f'ProjectId = "{project}"', expected)


async def test_body_over_the_limit_is_413_and_starts_nothing(
    api: httpx.AsyncClient, temporal_client: Client
) -> None:
    project = _project()
    await wait_status(api, await submit(api, "test_prompt", {"prompt_template": "one"}, project_id=project))
    assert await executions(temporal_client, project, 1) == 1
    oversize = sized(llm_body(project, BODY_LIMIT), BODY_LIMIT + 1)
    item = {"project_id": project, "task_type": "test_prompt", "task_data": {"prompt_template": "y" * 12_000}}
    refused = {
        "declared length": await api.post("/api/v1/tasks/submit", content=oversize, headers=JSON),
        "streamed, no length": await api.post(
            "/api/v1/tasks/submit", content=_chunks(oversize), headers=JSON
        ),
        "batch": await api.post("/api/v1/tasks/batch", json={"tasks": [item] * 100}),
        "graphql": await api.post(
            "/graphql",
            content=sized({"query": "{ taskQueueStatus { queuedTasks } }"}, BODY_LIMIT + 1),
            headers=JSON,
        ),
    }
    for response in refused.values():
        assert_too_large(response, BODY_LIMIT)
    assert await executions(temporal_client, project, 1) == 1


async def test_body_of_exactly_the_limit_is_accepted_and_runs(
    api: httpx.AsyncClient, temporal_client: Client
) -> None:
    project = _project()
    response = await api.post(
        "/api/v1/tasks/submit", content=sized(llm_body(project, BODY_LIMIT), BODY_LIMIT), headers=JSON
    )
    assert response.status_code == 200, response.text
    assert await executions(temporal_client, project, 1) == 1
    done = await wait_status(api, response.json()["task_id"], timeout=120)
    assert done["status"] == "completed", done
    assert done["result"]["message"]["content"] == "FAKE-LLM: Still there?"


async def test_metadata_over_16_kib_is_413_and_starts_nothing(
    api: httpx.AsyncClient, temporal_client: Client
) -> None:
    project = _project()
    base = {"project_id": project, "task_type": "test_prompt", "task_data": {"prompt_template": "meta"}}
    over, at_limit = metadata_of(METADATA_LIMIT + 1), metadata_of(METADATA_LIMIT)
    assert_too_large(await api.post("/api/v1/tasks/submit", json={**base, "metadata": over}), METADATA_LIMIT)
    create = "mutation($i: CreateAITaskInput!) { createAITask(input: $i) { id } }"
    graphql_input = {"projectId": project, "taskType": "test_prompt", "inputData": {"prompt_template": "m"}}
    answer = (
        await api.post(
            "/graphql", json={"query": create, "variables": {"i": {**graphql_input, "metadata": over}}}
        )
    ).json()
    assert answer["errors"][0]["extensions"]["code"] == "payload_too_large", answer
    assert answer["errors"][0]["extensions"]["status"] == 413
    assert await executions(temporal_client, project, 0) == 0
    # In a batch the oversize item fails alone; at the limit exactly, metadata is accepted.
    batch = await api.post(
        "/api/v1/tasks/batch", json={"tasks": [{**base, "metadata": over}, {**base, "metadata": at_limit}]}
    )
    results = batch.json()["results"]
    assert [r["success"] for r in results] == [False, True], results
    assert results[0]["error"]["error"] == "payload_too_large"
    assert await executions(temporal_client, project, 1) == 1
    done = await wait_status(api, results[1]["task"]["task_id"])
    assert done["status"] == "completed"
    query = "query($id: ID!) { aiTask(id: $id) { metadata } }"
    stored = await api.post("/graphql", json={"query": query, "variables": {"id": done["task_id"]}})
    assert stored.json()["data"]["aiTask"]["metadata"] == at_limit
