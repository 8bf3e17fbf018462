"""The render cache end to end: API → TaskWorkflow → cache activities → tiny SD on gpu_medium → manifests.

Every test uses its own prompt, so no test sees another's entries.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from typer.testing import CliRunner

from taskservice.content_key import ModelFingerprints, content_key
from taskservice_client import TaskServiceClient
from taskservice_client.cli import app
from tests.support.file_server import StaticFileServer
from tests.support.stack import ADMIN_KEY, API_KEYS, OTHER_KEYS, Stack
from tests.support.tasks import submit, wait_status
from tests.support.tenancy import token

IMAGE = "generate_image"


def _image(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, "resolution": "64x64", "num_inference_steps": 2, **extra}


def _unique(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:8]}"


async def _done(api: httpx.AsyncClient, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    task_id = await submit(api, IMAGE, data, **extra)
    status = await wait_status(api, task_id, "completed", timeout=120)
    return status


async def _sha256(api: httpx.AsyncClient, url: str) -> str:
    response = await api.get(url)
    assert response.status_code == 200, url
    return hashlib.sha256(response.content).hexdigest()


async def _activity_queues(temporal: Client, task_id: str) -> list[str]:
    """The task queues of every activity the task's workflow scheduled."""
    queues = []
    async for event in temporal.get_workflow_handle(task_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            queues.append(event.activity_task_scheduled_event_attributes.task_queue.name)
    return queues


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _gpu_medium_done(api: httpx.AsyncClient, after: str) -> int:
    """Activities the live gpu_medium workers finished, by their own counters, from reports sent after
    `after` (they report every WORKER_REPORT_INTERVAL_S)."""
    deadline = time.monotonic() + 30
    while True:
        # Workers are listed to operators only.
        stats = await api.get("/api/v1/workers/stats", headers={"X-API-Key": ADMIN_KEY})
        workers = stats.json()["workers"]
        medium = [w for w in workers if w["queue"] == "gpu_medium" and w["alive"]]
        if medium and all(_when(w["last_seen"]) > _when(after) for w in medium):
            return sum(int(w["tasks_done"]) for w in medium)
        assert time.monotonic() < deadline, medium
        await asyncio.sleep(0.3)


def _manifest(stack: Stack, tenant: str, key: str) -> Path:
    return Path(stack.env["DATA_DIR"]) / "media" / "cache" / tenant / f"{key}.json"


async def test_a_seeded_repeat_is_a_hit_with_the_same_bytes_and_no_gpu_activity(
    api: httpx.AsyncClient, stack: Stack, temporal_client: Client
) -> None:
    data = _image(_unique("lighthouse at dusk"), seed=11)
    first = await _done(api, data)
    key = first["result"]["cache"]["key"]
    assert first["result"]["cache"] == {"hit": False, "key": key}
    # It waited on its key's render: the render's attempt is its own.
    assert first["processing_time"] > 0 and first["started_at"] and first["attempt"] == 1
    assert _manifest(stack, "default", key).is_file()
    done_before = await _gpu_medium_done(api, first["completed_at"])

    body = {"project_id": "other_project", "task_type": IMAGE, "task_data": data}
    began = time.monotonic()
    answer = await api.post("/api/v1/tasks/submit", json=body, headers={"Prefer": "wait=20"})
    elapsed = time.monotonic() - began
    second = answer.json()
    assert second["status"] == "completed", second
    assert elapsed < 1.0, f"a hit took {elapsed:.2f}s end to end"
    cache = second["result"]["cache"]
    assert cache["hit"] is True and cache["key"] == key
    assert cache["source_task_id"] == first["task_id"]
    assert cache["saved_seconds"] > 0
    # Signed again when the hit is answered (the same URL within the same second), the same file.
    urls = (second["result"]["media_url"], first["result"]["media_url"])
    assert await _sha256(api, urls[0]) == await _sha256(api, urls[1])
    # The output says what made it; the hit carries its source's record.
    provenance = first["result"]["metadata"]["provenance"]
    assert provenance["output_sha256"] == await _sha256(api, urls[1])
    assert provenance == second["result"]["metadata"]["provenance"]
    assert provenance["model_id"] == stack.env["IMAGE_MODEL"]
    assert len(provenance["model_fingerprints"][stack.env["IMAGE_MODEL"]]) == 64
    assert provenance["seeds"] == [11] and provenance["steps"] == 2 and provenance["size"] == "64x64"
    assert provenance["device"] == "cpu" and provenance["libraries"]["diffusers"]
    assert provenance["scheduler"] and provenance["guidance_scale"] == 7.5
    assert provenance["build"] and provenance["input_hashes"] == {}
    assert await _activity_queues(temporal_client, second["task_id"]) == ["task-workflows"]
    # The GPU workers' own counters: the hit ran nothing there.
    assert await _gpu_medium_done(api, second["completed_at"]) == done_before
    # The first task's render ran on gpu_medium, as the key's one render.
    assert "gpu_medium" in await _activity_queues(temporal_client, f"render-default-{key}")
    # A hit is a task like any other: it is listed.
    listed = (await api.get("/api/v1/tasks", params={"project_id": "other_project"})).json()
    assert second["task_id"] in [task["task_id"] for task in listed]


async def test_without_a_seed_or_with_cache_off_every_submit_renders(api: httpx.AsyncClient) -> None:
    unseeded = _image(_unique("forest"))
    one, two = await _done(api, unseeded), await _done(api, unseeded)
    assert "cache" not in one["result"] and "cache" not in two["result"]
    assert one["result"]["metadata"]["seed"] != two["result"]["metadata"]["seed"]

    seeded = _image(_unique("harbour"), seed=5)
    await _done(api, seeded, cache="off")
    off = await _done(api, seeded, cache="off")
    assert "cache" not in off["result"]
    first = await _done(api, seeded)
    assert first["result"]["cache"]["hit"] is False  # the `off` renders left no entry


async def test_refresh_renders_again_and_replaces_the_entry(api: httpx.AsyncClient) -> None:
    data = _image(_unique("castle"), seed=3)
    first = await _done(api, data)
    refreshed = await _done(api, data, cache="refresh")
    assert refreshed["result"]["cache"] == {"hit": False, "key": first["result"]["cache"]["key"]}
    again = await _done(api, data)
    assert again["result"]["cache"]["hit"] is True
    assert again["result"]["cache"]["source_task_id"] == refreshed["task_id"]


async def test_another_tenant_with_the_same_body_misses(api: httpx.AsyncClient, stack: Stack) -> None:
    data = _image(_unique("desert"), seed=9)
    mine = await _done(api, data)
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"X-API-Key": OTHER_KEYS[0]}, timeout=60
    ) as other:
        theirs = await _done(other, data)
    assert theirs["result"]["cache"] == {"hit": False, "key": mine["result"]["cache"]["key"]}


async def test_an_input_url_whose_content_changed_misses(
    api: httpx.AsyncClient, file_server: StaticFileServer
) -> None:
    path = f"/cache-ref-{uuid.uuid4().hex[:8]}.png"
    url = file_server.put(path, _png((200, 30, 30)), "image/png")
    data = _image(_unique("portrait"), seed=4, reference_images=[url])
    first = await _done(api, data)
    reference = hashlib.sha256(_png((200, 30, 30))).hexdigest()
    assert first["result"]["metadata"]["provenance"]["input_hashes"] == {url: reference}
    assert (await _done(api, data))["result"]["cache"]["hit"] is True
    file_server.put(path, _png((30, 200, 30)), "image/png")
    changed = await _done(api, data)
    assert changed["result"]["cache"]["hit"] is False
    assert changed["result"]["cache"]["key"] != first["result"]["cache"]["key"]


async def test_an_expired_entry_or_one_whose_media_is_gone_misses(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    data = _image(_unique("river"), seed=21)
    first = await _done(api, data)
    manifest = _manifest(stack, "default", first["result"]["cache"]["key"])
    entry = json.loads(manifest.read_text())
    entry["created"] = (datetime.now(UTC) - timedelta(days=31)).isoformat()
    manifest.write_text(json.dumps(entry))
    expired = await _done(api, data)
    assert expired["result"]["cache"]["hit"] is False  # and it rendered anew, writing a fresh entry

    assert (await _done(api, data))["result"]["cache"]["source_task_id"] == expired["task_id"]
    media = Path(stack.env["DATA_DIR"]) / "media" / expired["result"]["metadata"]["storage_key"]
    media.unlink()
    gone = await _done(api, data)
    assert gone["result"]["cache"]["hit"] is False


def test_a_new_checkpoint_at_the_same_path_is_a_new_key(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_models["tiny-sd"], folder)
    fingerprints = ModelFingerprints()
    settings = {"image_model": str(folder), "torch_device": "cpu"}
    data = _image("same body", seed=1)
    key = content_key(IMAGE, data, settings, {}, fingerprints)
    assert content_key(IMAGE, data, settings, {}, fingerprints) == key
    config = folder / "unet" / "config.json"
    unet = json.loads(config.read_text())
    unet["norm_eps"] = unet.get("norm_eps", 1e-5) * 2
    config.write_text(json.dumps(unet))
    assert content_key(IMAGE, data, settings, {}, fingerprints) != key
    # The URL is not in the key, its content is.
    url_data = _image("same body", seed=1, reference_images=["https://a.example/x.png"])
    moved = _image("same body", seed=1, reference_images=["https://b.example/y.png"])
    same = {"https://a.example/x.png": "ab" * 32, "https://b.example/y.png": "ab" * 32}
    assert content_key(IMAGE, url_data, settings, same, fingerprints) == content_key(
        IMAGE, moved, settings, same, fingerprints
    )


async def _renders(temporal: Client, key: str) -> list[str]:
    """The render workflow runs of a key (default tenant), as their close statuses."""
    runs = temporal.list_workflows(f'WorkflowId = "render-default-{key}"')
    return [str(run.status.name if run.status else "RUNNING") async for run in runs]


async def test_four_identical_submits_render_once(api: httpx.AsyncClient, temporal_client: Client) -> None:
    data = _image(_unique("storyboard frame"), seed=8, num_inference_steps=40)
    ids = await asyncio.gather(*(submit(api, IMAGE, data) for _ in range(4)))
    done = [await wait_status(api, task_id, "completed", timeout=180) for task_id in ids]
    key = done[0]["result"]["cache"]["key"]
    caches = [status["result"]["cache"] for status in done]
    assert sum(1 for cache in caches if not cache["hit"]) == 1, caches
    assert sum(1 for cache in caches if cache.get("coalesced")) >= 2, caches
    assert {cache["key"] for cache in caches} == {key}
    hashes = {await _sha256(api, status["result"]["media_url"]) for status in done}
    assert len(hashes) == 1
    assert await _renders(temporal_client, key) == ["COMPLETED"]


async def _denoising(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """The task's status once its render is denoising (a cancel then stops it after the current step)."""
    deadline = time.monotonic() + 120
    while True:
        status: dict[str, Any] = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
        if (status["current_step"] or "").startswith("denoising"):
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)


async def test_cancelling_one_waiter_leaves_the_render_to_the_other(
    api: httpx.AsyncClient, temporal_client: Client
) -> None:
    data = _image(_unique("long shot"), seed=2, num_inference_steps=150)
    first = await submit(api, IMAGE, data)
    second = await submit(api, IMAGE, data)
    # A waiting task shows the render's progress.
    status = await _denoising(api, second)
    assert 0 < status["progress"] < 1, status
    assert (await api.delete(f"/api/v1/tasks/{second}")).status_code == 200
    await wait_status(api, second, "cancelled", timeout=30)
    status = await wait_status(api, first, "completed", timeout=180)
    # Either task may have started the render (their joins race); the render went on for the one left.
    assert status["result"]["cache"]["source_task_id" if status["result"]["cache"]["hit"] else "key"]
    await _sha256(api, status["result"]["media_url"])


async def test_cancelling_every_waiter_stops_the_render(
    api: httpx.AsyncClient, stack: Stack, temporal_client: Client
) -> None:
    data = _image(_unique("very long shot"), seed=2, num_inference_steps=150, resolution="256x256")
    ids = [await submit(api, IMAGE, data) for _ in range(2)]
    await _denoising(api, ids[1])
    for task_id in ids:
        assert (await api.delete(f"/api/v1/tasks/{task_id}")).status_code == 200
    for task_id in ids:
        await wait_status(api, task_id, "cancelled", timeout=30)
    key = await _key_of(temporal_client, ids[0])
    render = temporal_client.get_workflow_handle(f"render-default-{key}")
    await asyncio.wait_for(render.result(), timeout=60)
    events = [event.event_type async for event in render.fetch_history_events()]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED in events
    assert not _manifest(stack, "default", key).exists()


async def test_a_failed_render_fails_every_waiter_and_is_not_cached(
    api: httpx.AsyncClient, stack: Stack, file_server: StaticFileServer, temporal_client: Client
) -> None:
    url = file_server.put(f"/broken-{uuid.uuid4().hex[:8]}.png", b"not a png at all", "image/png")
    data = _image(_unique("broken"), seed=6, reference_images=[url])
    ids = await asyncio.gather(*(submit(api, IMAGE, data) for _ in range(2)))
    failed = [await wait_status(api, task_id, {"completed", "failed"}, timeout=120) for task_id in ids]
    assert [status["status"] for status in failed] == ["failed", "failed"]
    assert failed[0]["error"] == failed[1]["error"] and failed[0]["error"].startswith("InvalidInput")
    key = await _key_of(temporal_client, ids[0])
    assert not _manifest(stack, "default", key).exists()


async def _key_of(temporal: Client, task_id: str) -> str:
    """The content key a task computed (its lookup activity's result)."""
    async for event in temporal.get_workflow_handle(task_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            payload = event.activity_task_completed_event_attributes.result.payloads[0]
            key: str = json.loads(payload.data)["key"]
            return key
    raise AssertionError(f"{task_id} computed no key")


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_metrics_count_hits_and_saved_seconds_exactly(api: httpx.AsyncClient, stack: Stack) -> None:
    tenant = f"cachemetrics{uuid.uuid4().hex[:8]}"  # a tenant of its own: its counts are this test's
    headers = {"Authorization": f"Bearer {token('metrics-user', tenant)}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as client:
        data = _image(_unique("metrics"), seed=12)
        first = await _done(client, data)
        hits = [await _done(client, data) for _ in range(2)]
        assert first["result"]["cache"]["hit"] is False
        saved = round(sum(hit["result"]["cache"]["saved_seconds"] for hit in hits), 3)
        assert saved > 0
        deadline = time.monotonic() + 60
        while (body := (await client.get("/api/v1/tasks/metrics")).json())["metrics"]["completed_tasks"] < 3:
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.5)
        assert body["cache"] == {IMAGE: {"hits": 2, "coalesced": 0, "misses": 1, "saved_seconds": saved}}
    # Prometheus: every tenant's counts, refreshed from the metrics workflow.
    hit_line = 'taskservice_cache_tasks_total{answer="hit",task_type="generate_image"}'
    admin = {"X-API-Key": ADMIN_KEY}
    while hit_line not in (exposition := (await api.get("/metrics", headers=admin)).text):
        assert time.monotonic() < deadline + 30, exposition[-2000:]
        await asyncio.sleep(0.5)
    assert 'taskservice_cache_gpu_seconds_saved_total{task_type="generate_image"}' in exposition


async def test_graphql_create_takes_the_cache_mode(api: httpx.AsyncClient) -> None:
    mutation = "mutation C($input: CreateAITaskInput!) { createAITask(input: $input) { id } }"
    data = _image(_unique("graphql"), seed=13)
    created = []
    for mode in ("auto", "reuse"):
        variables = {"input": {"projectId": "p_gql", "taskType": IMAGE, "inputData": data, "cache": mode}}
        body = (await api.post("/graphql", json={"query": mutation, "variables": variables})).json()
        assert not body.get("errors"), body
        created.append(await wait_status(api, body["data"]["createAITask"]["id"], "completed", timeout=120))
    assert [status["result"]["cache"]["hit"] for status in created] == [False, True]
    bad = {"input": {"projectId": "p_gql", "taskType": IMAGE, "inputData": data, "cache": "sometimes"}}
    body = (await api.post("/graphql", json={"query": mutation, "variables": bad})).json()
    assert body["errors"][0]["extensions"]["code"] == "validation_error", body


def test_sdk_and_taskctl_reuse_an_llm_answer(stack: Stack) -> None:
    prompt = {"prompt_template": f"reuse me {uuid.uuid4().hex[:8]}"}
    with TaskServiceClient(stack.api_url, API_KEYS[0]) as client:
        first = client.submit_and_wait("p_sdk_cache", "test_prompt", prompt, cache="reuse", timeout=60)
        again = client.submit_and_wait("p_sdk_cache", "test_prompt", prompt, cache="reuse", timeout=60)
        auto = client.submit_and_wait("p_sdk_cache", "test_prompt", prompt, timeout=60)
    assert not first.cache_hit and again.cache_hit and not auto.cache_hit  # LLM types: only `reuse`
    assert again.result is not None and again.result["cache"]["source_task_id"] == first.task_id
    args = ["--url", stack.api_url, "--api-key", API_KEYS[0], "submit", "test_prompt", "-p", "p_cli_cache"]
    shown = CliRunner().invoke(app, [*args, "--data", json.dumps(prompt), "--cache", "reuse", "--wait"])
    assert shown.exit_code == 0, shown.output
    assert f"hit: the result of {first.task_id}" in shown.output
