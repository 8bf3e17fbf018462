"""Automatic retries (4 attempts, backoff ×2), permanent failures, and POST /retry."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.stack import Stack
from tests.support.tasks import submit, wait_status


def _attempt_times(stack: Stack, marker: str) -> list[float]:
    return [
        r.received_at
        for r in stack.llm.requests
        if r.path.endswith("/chat/completions") and marker in str(r.json)
    ]


async def test_transient_errors_are_retried_four_times_with_backoff(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "always-500 run A [[status=500]]"})
    status = await wait_status(api, task_id, "failed", timeout=30)
    assert status["error"] == "AIServiceUnavailable: LLM endpoint answered HTTP 500"
    assert status["attempt"] == 4
    times = _attempt_times(stack, "always-500 run A")
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # TASK_RETRY_INITIAL_INTERVAL is 0.3 s in tests: 0.3, 0.6, 1.2 s apart.
    for gap, expected in zip(gaps, [0.3, 0.6, 1.2], strict=True):
        assert expected * 0.8 <= gap <= expected + 1.0, gaps


async def test_flaky_upstream_succeeds_on_a_later_attempt(api: httpx.AsyncClient, stack: Stack) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "flaky B [[fail_times=2]]"})
    status = await wait_status(api, task_id, "completed", timeout=30)
    assert status["attempt"] == 3
    assert len(_attempt_times(stack, "flaky B")) == 3


async def test_client_errors_are_not_retried(api: httpx.AsyncClient, stack: Stack) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "bad request C [[status=400]]"})
    status = await wait_status(api, task_id, "failed")
    assert status["error"].startswith("UpstreamClientError: LLM endpoint rejected the request (HTTP 400)")
    assert len(_attempt_times(stack, "bad request C")) == 1


async def test_retry_endpoint_runs_the_same_inputs_again(api: httpx.AsyncClient, stack: Stack) -> None:
    data = {"prompt_template": "retry me D {{x}} [[status=400]]", "test_parameters": {"x": "1"}}
    original = await submit(
        api, "test_prompt", data, metadata={"user_id": "u1"}, priority=3, project_id="p_retry_endpoint"
    )
    await wait_status(api, original, "failed")
    before = (await api.get("/api/v1/tasks/metrics")).json()["metrics"]["retried_tasks"]
    response = await api.post(f"/api/v1/tasks/{original}/retry")
    assert response.status_code == 200
    body = response.json()
    assert body["original_task_id"] == original
    assert body["new_task_id"] != original
    assert body["status"] == "queued"
    assert body["message"] == "Task retry submitted successfully"
    retried = await wait_status(api, body["new_task_id"], "failed")
    assert retried["retry_of"] == original
    assert len(_attempt_times(stack, "retry me D 1")) == 2
    listing = (await api.get("/api/v1/projects/p_retry_endpoint/tasks")).json()["tasks"]
    assert [t["task_id"] for t in listing] == [body["new_task_id"], original]
    copy = listing[0]
    assert copy["task_data"]["test_parameters"] == {"x": "1"}
    assert copy["metadata"] == {"user_id": "u1"}
    await asyncio.sleep(0.5)
    after = (await api.get("/api/v1/tasks/metrics")).json()["metrics"]["retried_tasks"]
    assert after == before + 1


async def test_retry_of_unfinished_task_is_400(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "busy E [[sleep=10]]"})
    response = await api.post(f"/api/v1/tasks/{task_id}/retry")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_task_state"
    await api.delete(f"/api/v1/tasks/{task_id}")


async def test_retry_unknown_task_is_404(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/tasks/00000000-0000-4000-8000-000000000002/retry")
    assert response.status_code == 404
