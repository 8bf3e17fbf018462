"""A task's life through the REST API: submit, status, listing, metrics, health."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime

import httpx
from temporalio.client import Client

from taskservice import system
from tests.support.stack import API_KEYS, COUNTING_NAMESPACE, WORKER_QUEUES, Replica, Stack
from tests.support.tasks import settled_metrics, submit, wait_status

PROMPT = {
    "prompt_id": "character_creator_v2_1",
    "prompt_template": "Create a character based on: {{concept}}",
    "agent_type": "character_creator",
    "test_parameters": {"concept": "mysterious librarian with dark secrets", "genre": "thriller"},
    "test_result_id": "test_result_123",
}


async def test_submit_answers_the_seed_fields(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/tasks/submit",
        json={
            "project_id": "detective_series_001",
            "task_type": "test_prompt",
            "task_data": PROMPT,
            "priority": 1,
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {
        "task_id",
        "status",
        "project_id",
        "estimated_duration",
        "queue_position",
        "created_at",
    }
    assert body["status"] == "queued"
    assert body["project_id"] == "detective_series_001"
    # The learned p50 once the type has ETA_MIN_SAMPLES finished tasks, the catalog's 10 s before.
    assert body["estimated_duration"] == math.ceil(body["estimate"]["duration_p50_s"])
    assert body["estimate"]["basis"] == "learned" or body["estimated_duration"] == 10
    assert body["queue_position"] >= 1
    assert body["created_at"].endswith("Z")


async def test_test_prompt_runs_to_completion_with_model_output(api: httpx.AsyncClient, stack: Stack) -> None:
    task_id = await submit(api, "test_prompt", PROMPT)
    status = await wait_status(api, task_id, "completed")
    result = status["result"]
    assert result["rendered_prompt"] == "Create a character based on: mysterious librarian with dark secrets"
    assert result["output"] == "FAKE-LLM: " + result["rendered_prompt"]
    assert result["model"] == "fake-model-1"
    assert result["usage"]["total_tokens"] == result["tokens_used"] > 0
    assert result["prompt_id"] == "character_creator_v2_1" and result["test_result_id"] == "test_result_123"
    assert status["progress"] == 1.0 and status["error"] is None
    started = datetime.fromisoformat(status["started_at"])
    completed = datetime.fromisoformat(status["completed_at"])
    assert started <= completed
    assert 0 <= status["processing_time"] <= (completed - started).total_seconds() + 0.01
    # The rendered prompt is what reached the model.
    assert any(
        m["content"] == result["rendered_prompt"] for r in stack.llm.chat_requests for m in r["messages"]
    )


async def test_processing_reports_progress_from_heartbeats(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "think slowly [[sleep=3]]"})
    status = await wait_status(api, task_id, "processing", timeout=20)
    assert status["started_at"] is not None
    seen = await wait_status(api, task_id, "processing")
    deadline = asyncio.get_running_loop().time() + 3
    while seen["current_step"] != "calling_llm" and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        seen = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
    assert seen["current_step"] == "calling_llm"
    assert 0 < seen["progress"] < 1
    done = await wait_status(api, task_id, "completed")
    assert done["progress"] == 1.0


async def test_unknown_task_is_404_in_seed_format(api: httpx.AsyncClient) -> None:
    for task_id in ("abc123", "00000000-0000-4000-8000-000000000000"):
        response = await api.get(f"/api/v1/tasks/{task_id}/status")
        assert response.status_code == 404
        assert response.json() == {
            "error": "task_not_found",
            "message": f"Task with ID '{task_id}' not found",
        }


async def test_project_listing_newest_first_with_filters_and_pagination(api: httpx.AsyncClient) -> None:
    project = "proj_listing"
    ids = []
    for i in range(5):
        ids.append(await submit(api, "test_prompt", {"prompt_template": f"item {i}"}, project_id=project))
        await asyncio.sleep(0.02)
    for task_id in ids:
        await wait_status(api, task_id, "completed")
    listing = (await api.get(f"/api/v1/projects/{project}/tasks")).json()
    assert [t["task_id"] for t in listing["tasks"]] == list(reversed(ids))
    assert listing["pagination"] == {"page": 1, "limit": 20, "total": 5, "total_pages": 1}
    item = listing["tasks"][0]
    assert set(item) >= {
        "task_id",
        "project_id",
        "task_type",
        "status",
        "task_data",
        "result",
        "created_at",
        "updated_at",
    }
    assert item["task_data"]["prompt_template"] == "item 4"

    page2 = (await api.get(f"/api/v1/projects/{project}/tasks", params={"page": 2, "limit": 2})).json()
    assert [t["task_id"] for t in page2["tasks"]] == [ids[2], ids[1]]
    assert page2["pagination"] == {"page": 2, "limit": 2, "total": 5, "total_pages": 3}

    completed = (await api.get(f"/api/v1/projects/{project}/tasks", params={"status": "completed"})).json()
    assert completed["pagination"]["total"] == 5
    failed = (await api.get(f"/api/v1/projects/{project}/tasks", params={"status": "failed"})).json()
    assert failed["pagination"]["total"] == 0
    by_type = (
        await api.get(f"/api/v1/projects/{project}/tasks", params={"task_type": "evaluate_department"})
    ).json()
    assert by_type["tasks"] == []
    too_big = await api.get(f"/api/v1/projects/{project}/tasks", params={"limit": 101})
    assert too_big.status_code == 400
    assert too_big.json()["error"] == "validation_error"
    assert "limit" in too_big.json()["details"]


async def test_listing_is_by_creation_when_tasks_finish_out_of_order(api: httpx.AsyncClient) -> None:
    # Visibility returns open tasks first, then closed ones by close time; the listing stops reading it early,
    # so the order must still be by creation on every page when close order and start order disagree.
    project = "proj_close_order"
    sleeps = [30, 2, 0, 1, 0]
    ids = []
    for i, seconds in enumerate(sleeps):
        body = {"prompt_template": f"item {i} [[sleep={seconds}]]"}
        ids.append(await submit(api, "test_prompt", body, project_id=project))
        await asyncio.sleep(0.05)
    for task_id in ids[1:]:
        await wait_status(api, task_id, "completed")
    newest_first = list(reversed(ids))
    try:
        for limit in (1, 2, 3, 5):
            seen = []
            for page in range(1, -(-len(ids) // limit) + 1):
                params = {"page": page, "limit": limit}
                listing = (await api.get(f"/api/v1/projects/{project}/tasks", params=params)).json()
                assert listing["pagination"]["total"] == len(ids)
                seen += [t["task_id"] for t in listing["tasks"]]
            assert seen == newest_first, limit
    finally:
        await api.delete(f"/api/v1/tasks/{ids[0]}")


async def test_listing_narrows_its_window_when_the_oldest_task_is_still_running(
    api: httpx.AsyncClient,
) -> None:
    # The oldest task, still running, comes first in visibility's order and bounds a window holding every
    # task; the listing must narrow it with counts (more than 2 × 1 + 20 tasks) and still answer exactly.
    project = "proj_narrowing"
    oldest = await submit(api, "test_prompt", {"prompt_template": "old [[sleep=60]]"}, project_id=project)
    ids = [oldest]
    for i in range(30):
        ids.append(await submit(api, "test_prompt", {"prompt_template": f"quick {i}"}, project_id=project))
    try:
        for task_id in ids[1:]:
            await wait_status(api, task_id, "completed")
        newest_first = list(reversed(ids))
        # Deep pages are bracketed by counts between two start times: every page, for several sizes.
        pages = [(page, limit) for limit in (1, 4, 7) for page in range(1, -(-len(ids) // limit) + 2)]
        for page, limit in pages:
            params = {"page": page, "limit": limit}
            listing = (await api.get(f"/api/v1/projects/{project}/tasks", params=params)).json()
            assert listing["pagination"]["total"] == len(ids)
            expected = newest_first[(page - 1) * limit : page * limit]
            assert [t["task_id"] for t in listing["tasks"]] == expected, (page, limit)
    finally:
        await api.delete(f"/api/v1/tasks/{oldest}")


async def test_health_reports_temporal_workers_and_queues(api: httpx.AsyncClient, stack: Stack) -> None:
    body = (await api.get("/api/v1/health")).json()
    assert body["status"] == "healthy"
    assert body["temporal_status"] == "connected"
    assert body["worker_count"] >= len(WORKER_QUEUES)  # one per queue, and any replaced one still polling
    assert set(body["queue_sizes"]) == {"gpu_heavy", "gpu_medium", "cpu_intensive", "default"}
    load = body["system_load"]
    assert set(load) == {"cpu_percent", "memory_percent", "gpu_utilization"}
    assert 0 <= load["cpu_percent"] <= 100 and 0 < load["memory_percent"] <= 100
    # One figure per GPU of this host (none without NVIDIA GPUs), as the API process reads it too.
    assert len(load["gpu_utilization"]) == len(system.gpu_utilization())
    assert all(0 <= used <= 100 for used in load["gpu_utilization"])
    assert 0 <= body["uptime"] <= time.time() - stack.api.started_at + 1


async def test_liveness_needs_no_key(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as anonymous:
        assert (await anonymous.get("/health")).json() == {"status": "ok"}
        response = await anonymous.get("/api/v1/health")
        assert response.status_code == 401
        assert response.json() == {"error": "authentication_failed", "message": "Invalid or missing API key"}


async def test_metrics_count_outcomes_and_survive_api_restart(
    counting: Replica, counting_temporal: Client, stack: Stack
) -> None:
    """In the counting namespace nothing but this test's tasks finish meanwhile: each one counts once."""
    async with counting.client() as api:
        before = await settled_metrics(api, counting_temporal)
        ok = await submit(api, "test_prompt", {"prompt_template": "fine"})
        bad = await submit(api, "test_prompt", {"prompt_template": "rejected [[status=400]]"})
        await wait_status(api, ok, "completed")
        await wait_status(api, bad, "failed")
        metrics = await settled_metrics(api, counting_temporal)
    assert metrics["total_tasks"] == before["total_tasks"] + 2
    assert metrics["completed_tasks"] == before["completed_tasks"] + 1
    assert metrics["failed_tasks"] == before["failed_tasks"] + 1
    assert metrics["cancelled_tasks"] == before["cancelled_tasks"]
    assert metrics["retried_tasks"] == before["retried_tasks"]
    assert metrics["currently_running"] == 0
    assert metrics["average_durations"]["test_prompt"] > 0
    total = metrics["total_tasks"]
    assert metrics["success_rate"] == round(100 * metrics["completed_tasks"] / total, 1)
    assert metrics["failure_rate"] == round(100 * metrics["failed_tasks"] / total, 1)
    assert set(metrics) == {
        "total_tasks",
        "completed_tasks",
        "failed_tasks",
        "retried_tasks",
        "cancelled_tasks",
        "success_rate",
        "failure_rate",
        "average_durations",
        "currently_running",
    }

    # A second API process (as after a restart) reads the same numbers: they live in Temporal.
    process, url = stack.start_api("api-restarted", TEMPORAL_NAMESPACE=COUNTING_NAMESPACE)
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}) as other:
            again = (await other.get("/api/v1/tasks/metrics")).json()["metrics"]
    finally:
        process.stop()
    assert again == metrics


async def test_task_queue_health_has_seed_shape_and_alerts(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/v1/tasks/health")).json()
    assert body["status"] in {"healthy", "warning", "critical"}
    assert set(body["metrics"]) == {
        "total_tasks",
        "completed_tasks",
        "failed_tasks",
        "success_rate",
        "failure_rate",
        "currently_running",
    }
    rate = body["metrics"]["failure_rate"]
    rate_alerts = [a for a in body["alerts"] if a["metric"] == "failure_rate"]
    if rate > 20:
        assert rate_alerts[0]["severity"] == "critical"
    elif rate > 10:
        assert rate_alerts[0]["severity"] == "warning"
        assert rate_alerts[0]["message"] == f"Elevated failure rate: {rate:.2f}%"
    else:
        assert rate_alerts == []
    expected = (
        "critical"
        if any(a["severity"] == "critical" for a in body["alerts"])
        else ("warning" if body["alerts"] else "healthy")
    )
    assert body["status"] == expected
