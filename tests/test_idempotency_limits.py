"""Idempotency keys, rate limits, project concurrency, SSRF guard, and Temporal being down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.stack import API_KEYS, EMPTY_NAMESPACE, OTHER_KEYS, Stack
from tests.support.tasks import submit, wait_status


async def test_same_idempotency_key_returns_the_same_task(api: httpx.AsyncClient) -> None:
    body = {"project_id": "p_idem", "task_type": "test_prompt", "task_data": {"prompt_template": "once"}}
    headers = {"Idempotency-Key": "order-42"}
    first = await api.post("/api/v1/tasks/submit", json=body, headers=headers)
    second = await api.post("/api/v1/tasks/submit", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["task_id"] == second.json()["task_id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    await wait_status(api, first.json()["task_id"], "completed")
    # Still the same task after it finished (the key holds for the retention window).
    third = await api.post("/api/v1/tasks/submit", json=body, headers=headers)
    assert third.json()["task_id"] == first.json()["task_id"]
    listing = (await api.get("/api/v1/projects/p_idem/tasks")).json()
    assert listing["pagination"]["total"] == 1


async def test_idempotency_key_with_another_body_is_refused(api: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-43"}
    body = {"project_id": "p_idem2", "task_type": "test_prompt", "task_data": {"prompt_template": "a"}}
    assert (await api.post("/api/v1/tasks/submit", json=body, headers=headers)).status_code == 200
    body["task_data"] = {"prompt_template": "b"}
    response = await api.post("/api/v1/tasks/submit", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reused"


async def test_idempotency_keys_are_scoped_per_tenant(api: httpx.AsyncClient, stack: Stack) -> None:
    body = {"project_id": "p_idem3", "task_type": "test_prompt", "task_data": {"prompt_template": "x"}}
    headers = {"Idempotency-Key": "shared-key"}
    mine = (await api.post("/api/v1/tasks/submit", json=body, headers=headers)).json()["task_id"]
    # Another key of the same tenant is rotation: the same task.
    async with httpx.AsyncClient(base_url=stack.api_url, headers={"X-API-Key": API_KEYS[1]}) as rotated:
        again = await rotated.post("/api/v1/tasks/submit", json=body, headers=headers)
    assert again.json()["task_id"] == mine and again.headers["Idempotent-Replayed"] == "true"
    async with httpx.AsyncClient(base_url=stack.api_url, headers={"X-API-Key": OTHER_KEYS[0]}) as other:
        theirs = (await other.post("/api/v1/tasks/submit", json=body, headers=headers)).json()["task_id"]
    assert mine != theirs


async def test_concurrent_duplicates_make_one_task(api: httpx.AsyncClient) -> None:
    body = {"project_id": "p_idem4", "task_type": "test_prompt", "task_data": {"prompt_template": "race"}}
    responses = await asyncio.gather(
        *(
            api.post("/api/v1/tasks/submit", json=body, headers={"Idempotency-Key": "race-1"})
            for _ in range(8)
        )
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["task_id"] for r in responses}) == 1


@pytest.fixture(scope="module")
async def strict_api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A second API replica with production-like guards and tiny limits."""
    process, url = stack.start_api(
        "api-strict",
        WEBHOOK_ALLOW_PRIVATE="false",
        RATE_LIMIT_SUBMIT_PER_MIN="4",
        RATE_LIMIT_STATUS_PER_MIN="6",
        MAX_CONCURRENT_PER_PROJECT="2",
    )
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[1]}, timeout=30) as client:
        yield client
    process.stop()


async def test_private_callback_urls_are_refused(strict_api: httpx.AsyncClient) -> None:
    # Another tenant than the rate-limit test's, whose buckets (per tenant) must start full.
    client = httpx.AsyncClient(base_url=strict_api.base_url, headers={"X-API-Key": OTHER_KEYS[0]})
    for url in (
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data",
    ):
        response = await client.post(
            "/api/v1/tasks/submit",
            json={
                "project_id": "p_ssrf",
                "task_type": "test_prompt",
                "task_data": {"prompt_template": "x"},
                "callback_url": url,
            },
        )
        assert response.status_code == 400, url
        assert "private or loopback" in response.json()["details"]["callback_url"]
    await client.aclose()


async def test_rate_limits_and_project_concurrency(strict_api: httpx.AsyncClient, stack: Stack) -> None:
    project = "p_limits"
    body = {
        "project_id": project,
        "task_type": "test_prompt",
        "task_data": {"prompt_template": "hold [[sleep=8]]"},
    }
    ok = [await strict_api.post("/api/v1/tasks/submit", json=body) for _ in range(2)]
    assert [r.status_code for r in ok] == [200, 200]
    # Third unfinished task of the project: the per-project limit (2).
    third = await strict_api.post("/api/v1/tasks/submit", json=body)
    assert third.status_code == 429
    assert third.json()["error"] == "rate_limited"
    assert int(third.headers["Retry-After"]) > 0
    # Submit bucket (4/min): one left, then 429.
    other = {**body, "project_id": "p_limits_other", "task_data": {"prompt_template": "quick"}}
    assert (await strict_api.post("/api/v1/tasks/submit", json=other)).status_code == 200
    limited = await strict_api.post("/api/v1/tasks/submit", json=other)
    assert limited.status_code == 429
    assert "Submit rate limit" in limited.json()["message"]
    assert int(limited.headers["Retry-After"]) >= 1
    # Status bucket (6/min).
    task_id = ok[0].json()["task_id"]
    codes = [(await strict_api.get(f"/api/v1/tasks/{task_id}/status")).status_code for _ in range(7)]
    assert codes[:6] == [200] * 6 and codes[6] == 429
    for response in ok:
        async with httpx.AsyncClient(base_url=stack.api_url, headers={"X-API-Key": API_KEYS[0]}) as main:
            await main.delete(f"/api/v1/tasks/{response.json()['task_id']}")


async def test_temporal_unreachable_is_503_with_retry_after(stack: Stack) -> None:
    process, url = stack.start_api("api-no-temporal", TEMPORAL_ADDRESS="127.0.0.1:9")
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}) as client:
            assert (await client.get("/health")).status_code == 200
            response = await client.post(
                "/api/v1/tasks/submit",
                json={"project_id": "p", "task_type": "test_prompt", "task_data": {"prompt_template": "x"}},
            )
            assert response.status_code == 503
            assert response.json()["error"] == "service_unavailable"
            assert response.json()["retry_after"] > 0
            assert int(response.headers["Retry-After"]) > 0
            status = await client.get("/api/v1/tasks/00000000-0000-4000-8000-000000000000/status")
            assert status.status_code == 503
            health = await client.get("/api/v1/health")
            assert health.status_code == 503
            assert health.json()["temporal_status"] == "disconnected"
    finally:
        process.stop()


async def test_queued_task_says_when_no_worker_polls_its_queue(api: httpx.AsyncClient, stack: Stack) -> None:
    """A namespace without any worker: the task says so, and cancel still removes it."""
    process, url = stack.start_api("api-no-workers", TEMPORAL_NAMESPACE=EMPTY_NAMESPACE)
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=30) as client:
            task_id = await submit(
                client, "generate_video", {"scene_description": "Detective enters", "duration": 7}
            )
            status = (await client.get(f"/api/v1/tasks/{task_id}/status")).json()
            assert status["status"] == "queued"
            assert status["current_step"] == "waiting_for_worker: no worker is polling queue 'gpu_heavy'"
            health = (await client.get("/api/v1/health")).json()
            assert health["worker_count"] == 0 and health["status"] == "degraded"
            response = await client.delete(f"/api/v1/tasks/{task_id}")
            assert response.status_code == 200
            assert response.json()["previous_state"] == "queued"
            final = (await client.get(f"/api/v1/tasks/{task_id}/status")).json()
            assert final["status"] == "cancelled"
    finally:
        process.stop()
