"""The render cache end to end: API → TaskWorkflow → cache activities → tiny SD on gpu_medium → manifests.

Every test uses its own prompt, so no test sees another's entries.
"""

from __future__ import annotations

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

from taskservice.content_key import ModelFingerprints, content_key
from tests.support.file_server import StaticFileServer
from tests.support.stack import OTHER_KEYS, Stack
from tests.support.tasks import submit, wait_status

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


def _manifest(stack: Stack, tenant: str, key: str) -> Path:
    return Path(stack.env["DATA_DIR"]) / "media" / "cache" / tenant / f"{key}.json"


async def test_a_seeded_repeat_is_a_hit_with_the_same_bytes_and_no_gpu_activity(
    api: httpx.AsyncClient, stack: Stack, temporal_client: Client
) -> None:
    data = _image(_unique("lighthouse at dusk"), seed=11)
    first = await _done(api, data)
    key = first["result"]["cache"]["key"]
    assert first["result"]["cache"] == {"hit": False, "key": key}
    assert _manifest(stack, "default", key).is_file()

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
    assert "gpu_medium" in await _activity_queues(temporal_client, first["task_id"])
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


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()
