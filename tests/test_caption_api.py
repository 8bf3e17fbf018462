"""run_image_to_text_inference end to end: API → Temporal → gpu_medium worker on the tiny BLIP → caption."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import httpx
from PIL import Image

from tests.support.file_server import StaticFileServer
from tests.support.media import reference_caption
from tests.support.tasks import submit, wait_status


def _png(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _caption_text(model_dir: Path, image: Image.Image, prompt: str | None, max_new_tokens: int) -> str:
    """The checkpoint's own greedy caption, computed apart from the service."""
    return str(reference_caption(model_dir, image, prompt, max_new_tokens)[0])


async def test_caption_end_to_end(
    api: httpx.AsyncClient, file_server: StaticFileServer, tiny_models: dict[str, Path]
) -> None:
    url = file_server.put("/caption/street.png", _png((30, 30, 160), (120, 72)), "image/png")
    task_id = await submit(
        api,
        "run_image_to_text_inference",
        {"image_url": url, "prompt": "a photo of", "max_new_tokens": 10},
        project_id="caption_project",
    )
    status = await wait_status(api, task_id, {"completed", "failed"}, timeout=120)
    assert status["status"] == "completed", status
    assert status["progress"] == 1.0 and status["attempt"] == 1
    result = status["result"]
    expected = await asyncio.to_thread(
        _caption_text,
        tiny_models["tiny-blip"],
        Image.new("RGB", (120, 72), (30, 30, 160)),
        "a photo of",
        10,
    )
    assert isinstance(result["text"], str) and result["text"] == expected
    assert result["text"].startswith("a photo of")
    assert (result["image_width"], result["image_height"]) == (120, 72)
    assert result["model"] == str(tiny_models["tiny-blip"]) and result["image_source"] == "url"
    assert 1 <= result["generated_tokens"] <= 10

    # The same image inline, without a prompt: unconditional captioning.
    inline = base64.b64encode(_png((30, 30, 160), (120, 72))).decode()
    task_id = await submit(api, "run_image_to_text_inference", {"image_base64": inline, "max_new_tokens": 10})
    result = (await wait_status(api, task_id, "completed", timeout=60))["result"]
    expected = await asyncio.to_thread(
        _caption_text, tiny_models["tiny-blip"], Image.new("RGB", (120, 72), (30, 30, 160)), None, 10
    )
    assert result["text"] == expected and result["image_source"] == "base64"
    assert (result["image_width"], result["image_height"]) == (120, 72)


async def test_caption_bad_inputs(api: httpx.AsyncClient, file_server: StaticFileServer) -> None:
    # Refused at submit (400): no image, two images, not http(s), not base64, max_new_tokens out of range.
    for task_data, field in [
        ({}, "task_data"),
        ({"image_url": file_server.url("/a.png"), "image_base64": "iVBORw0KGgo="}, "task_data"),
        ({"image_url": "ftp://example.com/a.png"}, "task_data.image_url"),
        ({"image_base64": "not base64!"}, "task_data.image_base64"),
        ({"image_url": file_server.url("/a.png"), "max_new_tokens": 1000}, "task_data.max_new_tokens"),
    ]:
        response = await api.post(
            "/api/v1/tasks/submit",
            json={"project_id": "p", "task_type": "run_image_to_text_inference", "task_data": task_data},
        )
        assert response.status_code == 400, (task_data, response.text)
        assert field in response.json()["details"], response.json()

    # Accepted, then failed without retries: the URL answers 404.
    task_id = await submit(api, "run_image_to_text_inference", {"image_url": file_server.url("/nothing.png")})
    status = await wait_status(api, task_id, "failed", timeout=60)
    assert status["error"].startswith("InvalidInput:") and "404" in status["error"]
    assert status["attempt"] == 1 and status["result"] is None
