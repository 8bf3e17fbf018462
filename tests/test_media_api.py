"""Image, video and animation end to end: API → Temporal → GPU-queue workers on tiny models → files."""

from __future__ import annotations

import io
import subprocess

import httpx
import imageio_ffmpeg
from PIL import Image

from tests.conftest import Stack, submit, wait_status
from tests.fakes.file_server import FileServer


def _png(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


async def _fetch_media(api: httpx.AsyncClient, url: str) -> bytes:
    response = await api.get(url)
    assert response.status_code == 200, url
    return response.content


def _probe(data: bytes, tmp: str) -> str:
    with open(tmp, "wb") as handle:
        handle.write(data)
    return subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-i", tmp, "-map", "0:v:0", "-f", "null", "-"],
        capture_output=True,
        text=True,
    ).stderr


async def test_generate_image_end_to_end_with_progress(api: httpx.AsyncClient, stack: Stack) -> None:
    task_id = await submit(
        api,
        "generate_image",
        {
            "prompt": "1920s detective in film noir style",
            "character_id": "detective_jones",
            "pose": "standing",
            "lighting": "dramatic_shadow",
            "resolution": "64x64",
            "num_inference_steps": 30,  # ~1 s of denoising: long enough to be seen by polling
            "seed": 7,
        },
        project_id="detective_series_001",
    )
    progress = []
    while True:
        status = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
        progress.append((status["progress"], status["status"], status["current_step"]))
        if status["status"] in {"completed", "failed", "cancelled"}:
            break
    assert status["status"] == "completed", status
    values = [p[0] for p in progress]
    assert values == sorted(values) and values[-1] == 1.0, progress
    assert any(step.startswith("denoising") for _, _, step in progress)
    result = status["result"]
    assert result["payload_media_id"] is None
    assert result["media_url"].startswith(stack.env["MEDIA_PUBLIC_URL"])
    assert result["media_url"].endswith(f"detective_series_001/generate_image/{task_id}.png")
    meta = result["metadata"]
    assert meta["resolution"] == "64x64" and meta["seed"] == 7 and meta["steps"] == 30
    image = Image.open(io.BytesIO(await _fetch_media(api, result["media_url"])))
    assert image.size == (64, 64)
    assert (
        meta["file_size"] == len(image.fp.getvalue())
        if hasattr(image.fp, "getvalue")
        else meta["file_size"] > 0
    )


async def test_image_from_reference_uses_img2img(api: httpx.AsyncClient, file_server: FileServer) -> None:
    ref = file_server.put("/ref.png", _png((200, 30, 30)), "image/png")
    task_id = await submit(
        api,
        "generate_image",
        {"prompt": "portrait", "reference_images": [ref], "resolution": "64x64", "quality": "draft"},
    )
    status = await wait_status(api, task_id, "completed", timeout=120)
    assert status["result"]["metadata"]["resolution"] == "64x64"


async def test_missing_reference_image_fails_cleanly_without_retries(
    api: httpx.AsyncClient, file_server: FileServer
) -> None:
    task_id = await submit(
        api,
        "generate_image",
        {
            "prompt": "portrait",
            "reference_images": [file_server.url("/missing.png")],
            "resolution": "64x64",
            "quality": "draft",
        },
    )
    status = await wait_status(api, task_id, "failed", timeout=60)
    assert status["error"].startswith("InvalidInput:")
    assert "404" in status["error"]
    assert status["attempt"] == 1


async def test_generate_video_end_to_end(api: httpx.AsyncClient, tmp_path: object) -> None:
    task_id = await submit(
        api,
        "generate_video",
        {
            "scene_description": "Detective enters the dark alley",
            "camera_angle": "wide_shot",
            "lighting": "noir_dramatic",
            "duration": 1,
            "fps": 8,
            "resolution": "64x64",
            "num_inference_steps": 1,
        },
    )
    status = await wait_status(api, task_id, "completed", timeout=180)
    result = status["result"]
    meta = result["metadata"]
    assert meta["width"] == 64 and meta["height"] == 64
    assert meta["frame_count"] == 8 and abs(meta["duration"] - 1.0) < 0.01 and meta["fps"] == 8
    info = _probe(await _fetch_media(api, result["media_url"]), f"{tmp_path}/v.mp4")
    assert "h264" in info and "yuv420p" in info and "64x64" in info
    assert "frame=    8" in info or "frame=8" in info.replace(" ", "")


async def test_render_animation_end_to_end(api: httpx.AsyncClient, file_server: FileServer) -> None:
    ref = file_server.put("/character.png", _png((20, 200, 20)), "image/png")
    task_id = await submit(
        api,
        "render_animation",
        {
            "character_reference_image": ref,
            "action": "waves hello",
            "duration": 1,
            "fps": 6,
            "resolution": "64x64",
            "num_inference_steps": 1,
        },
    )
    status = await wait_status(api, task_id, "completed", timeout=180)
    meta = status["result"]["metadata"]
    assert meta["frame_count"] == 6 and meta["width"] == 64


async def test_cancel_mid_denoise(api: httpx.AsyncClient) -> None:
    task_id = await submit(
        api,
        "generate_image",
        {"prompt": "slow", "resolution": "128x128", "num_inference_steps": 150},
    )
    status = await wait_status(api, task_id, "processing", timeout=120)
    while not (status["current_step"] or "").startswith("denoising"):
        status = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
    response = await api.delete(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200
    assert response.json()["previous_state"] == "processing"
    final = await wait_status(api, task_id, "cancelled", timeout=10)
    assert final["result"] is None
