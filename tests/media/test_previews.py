"""Live previews of renders in progress (issue 29): a running image task shows a `preview_url` that changes as
it denoises, its SSE stream carries `preview` events, a webhook subscriber that asked for `preview` gets them
(one that did not, none), the preview is served only at its signed URL and its task stays invisible to
another tenant; PREVIEW_DECODER=off writes none, `vae` does."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from activities.media.activities import MediaActivities
from taskservice.previews import PREVIEW_EXT, PREVIEW_MAX_SIDE
from tests.support.media import activity_env, make_settings, task_input
from tests.support.stack import API_KEYS, OTHER_KEYS, PREVIEWS_NAMESPACE, Stack, wait_for_pollers
from tests.support.tasks import submit, wait_status
from tests.support.tenancy import answers_as_missing, masked
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.worker_resources import opened

PROJECT = "previews"
# 30 steps at 128² take a few seconds on this CPU: several previews at this interval, several heartbeats.
IMAGE = {"prompt": "a lighthouse at dusk", "resolution": "128x128", "num_inference_steps": 30}
INTERVAL_S = "0.25"


@dataclass
class PreviewStack:
    api: httpx.AsyncClient
    url: str


@pytest.fixture(scope="module")
async def previews(stack: Stack, tiny_models: dict[str, Path]) -> AsyncIterator[PreviewStack]:
    """A default and a gpu_medium worker with tiny preview decoders, and an API, in a namespace of their own
    (their media in the session's DATA_DIR, served at the session API's signed /media URLs)."""
    taesd = str(tiny_models["tiny-taesd"])
    env = {"TEMPORAL_NAMESPACE": PREVIEWS_NAMESPACE, "PREVIEW_INTERVAL_S": INTERVAL_S,
           "PREVIEW_MODEL_IMAGE": taesd, "PREVIEW_MODEL_VIDEO": taesd}  # fmt: skip
    workers = [stack.spawn(f"worker-previews-{q}", ["workers", q], **env) for q in ("default", "gpu_medium")]
    api = None
    try:
        api, url = stack.start_api("api-previews", **env)
        await wait_for_pollers(stack.temporal.address, PREVIEWS_NAMESPACE, ["default", "gpu_medium"])
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=60) as c:
            yield PreviewStack(c, url)
    finally:
        if api is not None:
            api.stop()
        for worker in workers:
            worker.stop()


async def _sse_events(client: httpx.AsyncClient, path: str, into: list[tuple[str, dict[str, Any]]]) -> None:
    """Every event of a task's SSE stream (name, data) until `end`."""
    async with client.stream("GET", path) as response:
        assert response.status_code == 200
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                into.append((name, json.loads(line[6:])))
                if name == "end":
                    return


async def _previews_seen(api: httpx.AsyncClient, task_id: str, wanted: int) -> list[dict[str, Any]]:
    """The task's /status at each new `preview_at` (and the preview's bytes then), until `wanted` were seen
    or the task finished."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 180
    while len(seen) < wanted and time.monotonic() < deadline:
        body = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
        if body["status"] in ("completed", "failed", "cancelled"):
            break
        if body.get("preview_url") and (not seen or body["preview_at"] != seen[-1]["preview_at"]):
            fetched = await api.get(body["preview_url"])
            assert fetched.status_code == 200, fetched.text
            seen.append({**body, "bytes": fetched.content})
        await asyncio.sleep(0.1)
    return seen


async def test_running_image_task_shows_changing_previews_on_status_streams_and_webhooks(
    previews: PreviewStack, webhook_receiver: WebhookReceiver
) -> None:
    api = previews.api
    webhook_receiver.clear()
    hooked = await submit(api, "generate_image", {**IMAGE, "seed": 11}, project_id=PROJECT,
                          callback_url=webhook_receiver.url("/with-preview"),
                          webhook_events_filter=["preview", "completed"])  # fmt: skip
    quiet = await submit(api, "generate_image", {**IMAGE, "seed": 12}, project_id=PROJECT,
                         callback_url=webhook_receiver.url("/without-preview"))  # fmt: skip
    streamed: list[tuple[str, dict[str, Any]]] = []
    reading = asyncio.create_task(_sse_events(api, f"/api/v1/tasks/{hooked}/events", streamed))

    seen = await _previews_seen(api, hooked, wanted=2)
    assert len(seen) == 2, f"fewer than two previews before the task finished: {[s['status'] for s in seen]}"
    first, second = seen
    for body in seen:
        assert body["status"] == "processing" and body["completed_at"] is None
        url = httpx.URL(body["preview_url"])
        assert url.path == f"/media/{PROJECT}/generate_image/{hooked}.{PREVIEW_EXT}"
        assert set(url.params) == {"expires", "sig"}
        with Image.open(io.BytesIO(body["bytes"])) as image:
            assert image.format == "WEBP" and max(image.size) <= PREVIEW_MAX_SIDE, image.size
            image.load()
    assert first["bytes"] != second["bytes"], "the preview did not change between two reads"
    assert "preview_url" in (await api.get(f"/api/v1/tasks/{hooked}")).json()  # seed 002's resource too

    done = await wait_status(api, hooked, "completed", timeout=180)
    assert done["preview_url"] is None  # the result's media_url takes over
    await wait_status(api, quiet, "completed", timeout=180)
    await asyncio.wait_for(reading, 30)

    preview_events = [data for name, data in streamed if name == "preview"]
    assert preview_events, [name for name, _ in streamed]
    assert all(e["task_id"] == hooked and e["preview_url"] and e["preview_at"] for e in preview_events)
    assert len({e["preview_at"] for e in preview_events}) == len(preview_events)  # one event per preview

    webhook_receiver.wait_for(3, timeout=60)  # ≥ 1 preview and both final webhooks
    await asyncio.sleep(1)
    by_path: dict[str, list[dict[str, Any]]] = {}
    for hook in webhook_receiver.received:
        by_path.setdefault(hook.path, []).append(hook.json or {})
    hooked_events = [h.get("event") for h in by_path["/with-preview"]]
    assert "preview" in hooked_events and hooked_events[-1] is None, hooked_events  # previews, then final
    preview_hook = next(h for h in by_path["/with-preview"] if h.get("event") == "preview")
    assert preview_hook["task_id"] == hooked and preview_hook["preview_url"] and preview_hook["preview_at"]
    assert [h.get("event") for h in by_path["/without-preview"]] == [None]


async def test_preview_is_served_at_its_signed_url_only_and_its_task_to_its_tenant_only(
    previews: PreviewStack, stack: Stack
) -> None:
    api = previews.api
    task_id = await submit(api, "generate_image", {**IMAGE, "seed": 21}, project_id=PROJECT)
    seen = await _previews_seen(api, task_id, wanted=1)
    assert seen, "no preview before the task finished"
    url = httpx.URL(seen[0]["preview_url"])
    key = url.path.removeprefix("/media/")
    signature, expires = url.params["sig"], url.params["expires"]
    media = f"{url.scheme}://{url.host}:{url.port}/media"
    async with httpx.AsyncClient(base_url=previews.url, headers={"X-API-Key": OTHER_KEYS[0]}) as other:
        # Another tenant cannot learn the URL: the task does not exist for it.
        await answers_as_missing(lambda some_id: other.get(f"/api/v1/tasks/{some_id}/status"), task_id)
        missing_key = f"{PROJECT}/generate_image/{uuid.uuid4()}.{PREVIEW_EXT}"
        reference = await other.get(f"{media}/{missing_key}")
        assert reference.status_code == 404
        tampered = ("A" if signature[0] != "A" else "B") + signature[1:]
        for client in (api, other):
            for params in ({}, {"expires": expires, "sig": tampered}, {"sig": signature}):
                response = await client.get(f"{media}/{key}", params=params)
                assert response.status_code == 404, params
                assert masked(response.text, key) == masked(reference.text, missing_key)
            # The preview's signature opens the preview only, not the task's result beside it.
            result_key = f"{PROJECT}/generate_image/{task_id}.png"
            response = await client.get(f"{media}/{result_key}", params=dict(url.params))
            assert response.status_code == 404
    await wait_status(api, task_id, "completed", timeout=180)


@pytest.mark.parametrize(("decoder", "expected"), [("off", False), ("vae", True)])
async def test_preview_decoder_setting(
    tiny_models: dict[str, Path], tmp_path: Path, decoder: str, expected: bool
) -> None:
    """PREVIEW_DECODER=off writes no preview and heartbeats none; `vae` previews with the pipeline's VAE
    (no tiny model configured)."""
    settings = make_settings(tiny_models, tmp_path, preview_decoder=decoder, preview_interval_s=0.05)
    run = activity_env()
    async with opened(MediaActivities, settings) as media:
        data = {**IMAGE, "resolution": "64x64", "seed": 5}
        result = await run.env.run(media.generate_image, task_input("generate_image", data, task_id=decoder))
    assert result["media_url"]
    previews = [h["preview"] for h in run.heartbeats if h.get("preview")]
    stored = list((tmp_path / "media").rglob(f"*.{PREVIEW_EXT}"))
    assert bool(previews) is expected and bool(stored) is expected, (previews, stored)


async def test_video_preview_is_a_strip_of_first_middle_and_last_frames(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    settings = make_settings(tiny_models, tmp_path, preview_interval_s=0.05,
                             preview_model_video=str(tiny_models["tiny-taesd"]))  # fmt: skip
    run = activity_env()
    data = {"scene_description": "a strip", "duration": 2, "fps": 8, "resolution": "64x48",
            "num_inference_steps": 6}  # fmt: skip
    async with opened(MediaActivities, settings) as media:
        await run.env.run(media.generate_video, task_input("generate_video", data, task_id="strip"))
    assert any(h.get("preview") for h in run.heartbeats)
    (stored,) = (tmp_path / "media").rglob(f"*.{PREVIEW_EXT}")
    with Image.open(stored) as image:
        width, height = image.size
    assert max(width, height) <= PREVIEW_MAX_SIDE and abs(width / height - 3 * 64 / 48) < 0.1, image.size
