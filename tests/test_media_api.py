"""Image, video and animation end to end: API → Temporal → GPU-queue workers on tiny models → files."""

from __future__ import annotations

import io
import re
import subprocess
from urllib.parse import urlsplit

import httpx
import imageio_ffmpeg
import pytest
from PIL import Image

from tests.support.file_server import StaticFileServer
from tests.support.stack import Stack
from tests.support.tasks import submit, wait_status


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
            # ~2 s of denoising even on a quiet machine: heartbeats reach the server at most once a second, so
            # a denoise shorter than that can pass unseen (30 steps did once, in a clean-clone run).
            "num_inference_steps": 80,
            "seed": 7,
        },
        project_id="detective_series_001",
        # This test watches the activity's own heartbeats: a seeded image is otherwise a coalesced render
        # (tests/test_render_cache.py follows a waiting task's progress).
        cache="off",
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
    assert any(step.startswith("denoising") for _, _, step in progress), progress
    result = status["result"]
    assert result["payload_media_id"] is None
    assert result["media_url"].startswith(stack.env["MEDIA_PUBLIC_URL"])
    # A signed, expiring URL (local storage): the path names the file, the query carries the signature.
    url = urlsplit(result["media_url"])
    assert url.path.endswith(f"detective_series_001/generate_image/{task_id}.png")
    assert {"expires", "sig"} <= {part.split("=")[0] for part in url.query.split("&")}
    meta = result["metadata"]
    assert meta["resolution"] == "64x64" and meta["seed"] == 7 and meta["steps"] == 80
    png = await _fetch_media(api, result["media_url"])
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    assert meta["file_size"] == len(png)


async def test_image_from_reference_uses_img2img(
    api: httpx.AsyncClient, file_server: StaticFileServer
) -> None:
    ref = file_server.put("/ref.png", _png((200, 30, 30)), "image/png")
    task_id = await submit(
        api,
        "generate_image",
        {"prompt": "portrait", "reference_images": [ref], "resolution": "64x64", "quality": "draft"},
    )
    status = await wait_status(api, task_id, "completed", timeout=120)
    assert status["result"]["metadata"]["resolution"] == "64x64"


async def test_missing_reference_image_fails_cleanly_without_retries(
    api: httpx.AsyncClient, file_server: StaticFileServer
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


@pytest.mark.parametrize(
    ("duration", "fps", "steps"),
    [
        (1, 8, 1),
        # Two native clips, the second continued from the first by video-to-video (at 0.8 strength: 2 steps
        # give it one).
        pytest.param(3, 12, 2, marks=pytest.mark.heavy, id="3s-12fps-two-clips"),
    ],
)
async def test_generate_video_end_to_end(
    api: httpx.AsyncClient, tmp_path: object, duration: int, fps: int, steps: int
) -> None:
    frames = duration * fps
    task_id = await submit(
        api,
        "generate_video",
        {
            "scene_description": "Detective enters the dark alley",
            "camera_angle": "wide_shot",
            "lighting": "noir_dramatic",
            "duration": duration,
            "fps": fps,
            "resolution": "64x64",
            "num_inference_steps": steps,
        },
    )
    status = await wait_status(api, task_id, {"completed", "failed"}, timeout=120 + 10 * frames)
    assert status["status"] == "completed", status
    result = status["result"]
    meta = result["metadata"]
    assert meta["width"] == 64 and meta["height"] == 64
    assert meta["frame_count"] == frames and abs(meta["duration"] - duration) < 0.01 and meta["fps"] == fps
    info = _probe(await _fetch_media(api, result["media_url"]), f"{tmp_path}/v.mp4")
    assert "h264" in info and "yuv420p" in info and "64x64" in info
    assert re.findall(r"frame=\s*(\d+)", info)[-1] == str(frames)  # ffmpeg's final count of decoded frames


async def test_render_animation_end_to_end(api: httpx.AsyncClient, file_server: StaticFileServer) -> None:
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
