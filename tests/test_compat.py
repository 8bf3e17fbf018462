"""Seeds 002-004 surfaces: task resource, my tasks, batch, queues, statistics, bulk ops, cleanup, workers,
live events (SSE and WebSocket)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from typing import Any

import httpx
import websockets
from temporalio.client import Client

from tests.support.stack import (
    ADMIN_KEY,
    API_KEYS,
    EMPTY_NAMESPACE,
    ISOLATED_NAMESPACE,
    OTHER_KEYS,
    Replica,
    Stack,
)
from tests.support.tasks import no_open_tasks, submit, task_ids, wait_status


async def test_seed_002_task_resource(api: httpx.AsyncClient) -> None:
    ok = await submit(api, "test_prompt", {"prompt_template": "seed two"})
    await wait_status(api, ok, "completed")
    body = (await api.get(f"/api/v1/tasks/{ok}")).json()
    assert body["status"] == "completed" and body["progress"] == 100 and body["error"] is None
    assert body["result"]["output"] == "FAKE-LLM: seed two"
    assert body["created_at"] and body["updated_at"] and body["completed_at"]
    bad = await submit(api, "test_prompt", {"prompt_template": "seed two fails [[status=400]]"})
    await wait_status(api, bad, "failed")
    error = (await api.get(f"/api/v1/tasks/{bad}")).json()["error"]
    assert error["type"] == "UpstreamClientError"
    assert error["message"].startswith("LLM endpoint rejected the request (HTTP 400)")
    assert (await api.get(f"/api/v1/tasks/{uuid.uuid4()}")).status_code == 404


async def test_my_tasks_are_the_callers_only_newest_first(stack: Stack) -> None:
    project = f"p_mine_{uuid.uuid4().hex[:6]}"
    async with (
        httpx.AsyncClient(base_url=stack.api_url, headers={"X-API-Key": API_KEYS[0]}) as mine,
        # Another tenant, with a project of the same name (a project is a name within a tenant).
        httpx.AsyncClient(base_url=stack.api_url, headers={"X-API-Key": OTHER_KEYS[0]}) as theirs,
    ):
        own = [
            await submit(mine, "test_prompt", {"prompt_template": f"mine {i}"}, project_id=project)
            for i in range(3)
        ]
        other = await submit(theirs, "test_prompt", {"prompt_template": "theirs"}, project_id=project)
        # Visibility is eventually consistent (milliseconds, longer on a loaded machine): wait for all three.
        for _ in range(50):
            response = await mine.get("/api/v1/tasks", params={"project_id": project, "limit": 2})
            assert response.status_code == 200
            if response.headers["X-Total-Count"] == "3":
                break
            await asyncio.sleep(0.1)
        assert [t["task_id"] for t in response.json()] == [own[2], own[1]]
        assert response.headers["X-Total-Count"] == "3"
        assert 'rel="next"' in response.headers["Link"]
        page2 = (
            await mine.get("/api/v1/tasks", params={"project_id": project, "limit": 2, "page": 2})
        ).json()
        assert [t["task_id"] for t in page2] == [own[0]]
        assert other not in [
            t["task_id"] for t in (await mine.get("/api/v1/tasks", params={"limit": 100})).json()
        ]


async def test_batch_create_with_one_bad_item(api: httpx.AsyncClient) -> None:
    items = [
        {"project_id": "p_batch", "task_type": "test_prompt", "task_data": {"prompt_template": "b1"}},
        {"project_id": "p_batch", "task_type": "nope", "task_data": {}},
        {
            "project_id": "p_batch",
            "task_type": "test_prompt",
            "task_data": {"prompt_template": "b3"},
            "priority": "URGENT",
        },
        {"task_type": "test_prompt"},
    ]
    body = (await api.post("/api/v1/tasks/batch", json={"tasks": items})).json()
    assert body["created"] == 2 and body["failed"] == 2
    results = body["results"]
    assert [r["success"] for r in results] == [True, False, True, False]
    assert (
        results[1]["error"]["error"] == "validation_error" and "task_type" in results[1]["error"]["details"]
    )
    assert "project_id" in results[3]["error"]["details"]
    for r in (results[0], results[2]):
        await wait_status(api, r["task"]["task_id"], "completed")
    too_many = await api.post("/api/v1/tasks/batch", json={"tasks": [items[0]] * 101})
    assert too_many.status_code == 400


async def _statistics(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/v1/tasks/statistics", params={"hours": 1})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_queue_status_and_statistics(
    api: httpx.AsyncClient, counting: Replica, counting_temporal: Client
) -> None:
    queues = {q["queue"]: q for q in (await api.get("/api/v1/queues")).json()["queues"]}
    assert set(queues) == {"gpu_heavy", "gpu_medium", "cpu_intensive", "default"}
    assert queues["default"]["configured_concurrency"] == 2
    assert queues["default"]["worker_count"] >= 1
    assert "test_prompt" in queues["default"]["task_types"]
    # Statistics are namespace-wide: counted where only this test's tasks change meanwhile.
    async with counting.client() as client:
        await no_open_tasks(counting_temporal)
        before = await _statistics(client)
        ok = await submit(client, "test_prompt", {"prompt_template": "counted"})
        bad = await submit(client, "test_prompt", {"prompt_template": "counted [[status=400]]"})
        await wait_status(client, ok, "completed")
        await wait_status(client, bad, "failed")
        expected = {**before["by_status"]}
        expected["completed"] += 1
        expected["failed"] += 1
        for _ in range(50):  # visibility records a task's last status a moment after it closes
            stats = await _statistics(client)
            if stats["by_status"] == expected:
                break
            await asyncio.sleep(0.1)
    assert stats["by_status"] == expected
    assert stats["total"] == sum(stats["by_status"].values()) == before["total"] + 2
    prompts, prompts_before = stats["by_type"]["test_prompt"], before["by_type"].get("test_prompt", {})
    assert prompts["completed"] == prompts_before.get("completed", 0) + 1
    assert prompts["failed"] == prompts_before.get("failed", 0) + 1


async def test_bulk_cancel_and_retry_by_filter(api: httpx.AsyncClient) -> None:
    project = f"p_bulk_{uuid.uuid4().hex[:6]}"
    ids = [
        await submit(api, "test_prompt", {"prompt_template": f"bulk {i} [[sleep=20]]"}, project_id=project)
        for i in range(3)
    ]
    await asyncio.sleep(0.5)
    cancelled = (await api.post("/api/v1/tasks/bulk/cancel", json={"project_id": project})).json()
    assert cancelled["matched"] == 3 and cancelled["affected"] == 3
    for task_id in ids:
        assert (await wait_status(api, task_id, "cancelled", timeout=15))["status"] == "cancelled"
    retried = (
        await api.post("/api/v1/tasks/bulk/retry", json={"project_id": project, "status": "cancelled"})
    ).json()
    assert retried.get("affected") == 3, retried
    await api.post("/api/v1/tasks/bulk/cancel", json={"project_id": project})
    empty = await api.post("/api/v1/tasks/bulk/cancel", json={})
    assert empty.status_code == 400


async def test_admin_cleanup_needs_the_admin_key(
    api: httpx.AsyncClient, stack: Stack, counting: Replica, counting_temporal: Client
) -> None:
    assert (await api.post("/api/v1/admin/cleanup", json={})).status_code == 403
    # Cleanup deletes every old finished task of the namespace: the counting one, whose tests count deltas.
    async with counting.client(ADMIN_KEY) as admin:
        task_id = await submit(admin, "test_prompt", {"prompt_template": "to be cleaned"})
        await wait_status(admin, task_id, "completed")
        await no_open_tasks(counting_temporal)
        await asyncio.sleep(1.5)  # closed (bookkeeping done) and older than the 0.36 s cutoff
        finished = await task_ids(counting_temporal, 'ExecutionStatus != "Running"')
        assert task_id in finished
        cleanup = {"finished_older_than_hours": 0.0001}
        dry = (await admin.post("/api/v1/admin/cleanup", json={**cleanup, "dry_run": True})).json()
        assert set(dry["task_ids"]) == finished and dry["dry_run"] is True
        assert (dry["deleted"], dry["cancelled"]) == (len(finished), 0)
        assert (await admin.get(f"/api/v1/tasks/{task_id}")).status_code == 200
        done = (await admin.post("/api/v1/admin/cleanup", json=cleanup)).json()
        # Temporal deletes asynchronously (its system worker); the request was accepted for each task.
        assert set(done["task_ids"]) == finished and (done["deleted"], done["cancelled"]) == (
            len(finished),
            0,
        )
    empty = await Client.connect(stack.temporal.address, namespace=EMPTY_NAMESPACE)
    process, url = stack.start_api("api-admin-no-workers", TEMPORAL_NAMESPACE=EMPTY_NAMESPACE)
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": ADMIN_KEY}, timeout=30) as admin:
            stuck = await submit(admin, "generate_video", {"scene_description": "never picked up"})
            await asyncio.sleep(1.5)
            queued = await task_ids(empty, 'ExecutionStatus = "Running"')
            assert stuck in queued
            cleaned = (
                await admin.post(
                    "/api/v1/admin/cleanup",
                    json={"finished_older_than_hours": 10_000, "cancel_queued_older_than_hours": 0.0003},
                )
            ).json()
            assert set(cleaned["task_ids"]) == queued
            assert (cleaned["deleted"], cleaned["cancelled"]) == (0, len(queued))
            assert (await admin.get(f"/api/v1/tasks/{stuck}")).json()["status"] == "cancelled"
    finally:
        process.stop()


async def test_workers_report_themselves_and_a_dead_one_shows_gone(stack: Stack) -> None:
    async with stack.replica("registry", ISOLATED_NAMESPACE, worker_flags=("--no-supervisor",)) as replica:
        async with replica.client(ADMIN_KEY) as client:  # workers are listed to operators only
            identity = f"default@{os.uname().nodename}:{replica.worker.pid}"

            async def me() -> dict[str, object] | None:
                workers = (await client.get("/api/v1/workers/health")).json()["workers"]
                return next((w for w in workers if w["identity"] == identity), None)

            deadline = time.monotonic() + 20
            while (found := await me()) is None or not found["alive"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.5)
            assert found["queue"] == "default" and found["rss_mb"] > 0 and found["concurrency"] == 2
            stats = (await client.get("/api/v1/workers/stats")).json()
            assert stats["totals"]["rss_mb"] > 0
            os.kill(replica.worker.pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while (found := await me()) is not None and found["alive"]:
                assert time.monotonic() < deadline, "a dead worker must show as gone within 60 s"
                await asyncio.sleep(1)
            assert found is not None and found["state"] == "gone"


async def test_server_sent_events_follow_a_task_to_the_end(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "streamed [[sleep=2]]"})
    events = []
    async with api.stream("GET", f"/api/v1/tasks/{task_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name == "task":
                events.append(json.loads(line[6:]))
            elif line.startswith("data: ") and name == "end":
                break
    statuses = [e["status"] for e in events]
    assert statuses[-1] == "completed"
    assert "processing" in statuses
    assert events[-1]["result"]["output"] == "FAKE-LLM: streamed [[sleep=2]]"
    assert (await api.get(f"/api/v1/tasks/{uuid.uuid4()}/events")).status_code == 404


async def test_websocket_follows_a_task_with_query_key(api: httpx.AsyncClient, stack: Stack) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "socket [[sleep=1]]"})
    ws_url = stack.api_url.replace("http", "ws") + f"/ws/tasks/{task_id}?api_key={API_KEYS[0]}"
    messages = []
    async with websockets.connect(ws_url) as socket:
        async for raw in socket:
            messages.append(json.loads(raw))
    assert messages[-1]["status"] == "completed"
    bad = stack.api_url.replace("http", "ws") + f"/ws/tasks/{task_id}?api_key=wrong"
    try:
        async with websockets.connect(bad) as socket:
            await socket.recv()
        raise AssertionError("a wrong key must be refused")
    except websockets.exceptions.WebSocketException:
        pass


async def test_project_stream_sees_new_tasks(api: httpx.AsyncClient) -> None:
    project = f"p_stream_{uuid.uuid4().hex[:6]}"
    seen: list[dict[str, object]] = []

    async def listen() -> None:
        async with api.stream("GET", f"/api/v1/projects/{project}/events") as response:
            name = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name == "task":
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["status"] == "completed":
                        return

    listener = asyncio.create_task(listen())
    await asyncio.sleep(1)
    await submit(api, "test_prompt", {"prompt_template": "project stream"}, project_id=project)
    await asyncio.wait_for(listener, timeout=20)
    assert seen[-1]["project_id"] == project


async def test_seed_004_inference_task_types(api: httpx.AsyncClient) -> None:
    llm = await submit(
        api,
        "run_llm_inference",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name a noir film."},
            ]
        },
    )
    result = (await wait_status(api, llm, "completed"))["result"]
    assert result["message"] == {"role": "assistant", "content": "FAKE-LLM: Name a noir film."}
    assert result["usage"]["total_tokens"] > 0
    sd = await submit(
        api, "run_sd_inference", {"prompt": "a lighthouse", "resolution": "64x64", "quality": "draft"}
    )
    image = (await wait_status(api, sd, "completed", timeout=120))["result"]
    assert image["metadata"]["resolution"] == "64x64" and "/run_sd_inference/" in image["media_url"]
    tts = await submit(
        api, "run_tts_inference", {"text": "Hello.", "output_format": "wav", "sample_rate": 22050}
    )
    voice = (await wait_status(api, tts, "completed", timeout=120))["result"]
    assert voice["metadata"]["format"] == "wav"
    missing = await api.post(
        "/api/v1/tasks/submit", json={"project_id": "p", "task_type": "run_llm_inference", "task_data": {}}
    )
    assert missing.status_code == 400
