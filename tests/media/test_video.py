"""generate_video and render_animation end to end on tiny pipelines; files checked by decoding them."""

from __future__ import annotations

import asyncio
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
from temporalio.exceptions import ApplicationError

from activities.media.activities import MediaActivities
from activities.media.video import encode_mp4, resample_frames, resampled_chunks, split_clips
from tests.support.file_server import StaticFileServer
from tests.support.media import (
    StepRecorder,
    activity_env,
    assert_progress,
    assert_signed_media_url,
    make_settings,
    task_input,
)
from tests.support.worker_resources import opened


def decode(path: Path) -> tuple[dict[str, Any], int]:
    """Metadata and the number of frames, decoded independently of the service's own probe."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta: dict[str, Any] = next(reader)
    frames = sum(1 for _ in reader)
    return meta, frames


def check_video(result: dict[str, Any], media_dir: Path, key: str, *, size: tuple[int, int], frames: int,
                fps: int) -> None:  # fmt: skip
    path = media_dir / "media" / key
    assert_signed_media_url(result["media_url"], media_dir, key)
    meta, decoded = decode(path)
    assert tuple(meta["size"]) == size
    assert decoded == frames
    assert meta["fps"] == pytest.approx(fps)
    assert meta["duration"] == pytest.approx(frames / fps, abs=0.02)
    m = result["metadata"]
    assert (m["width"], m["height"], m["frame_count"], m["fps"]) == (*size, frames, fps)
    assert m["duration"] == pytest.approx(frames / fps, abs=0.02)
    assert m["resolution"] == f"{size[0]}x{size[1]}" and m["format"] == "mp4" and m["codec"] == "h264"
    assert m["file_size"] == path.stat().st_size


async def test_text_to_video(media: MediaActivities, media_dir: Path, steps: StepRecorder) -> None:
    run = activity_env()
    data = {
        "scene_description": "a harbour at dawn",
        "camera_angle": "wide",
        "lighting": "golden hour",
        "character_positions": [{"character_id": "ali", "position": "left", "action": "waves"}],
        "duration": 1,
        "fps": 8,
        "resolution": "64x64",
        "seed": 3,
        "num_inference_steps": 2,
    }
    started = time.perf_counter()
    result = await run.env.run(media.generate_video, task_input("generate_video", data, task_id="vid_text"))
    elapsed = time.perf_counter() - started
    check_video(result, media_dir, "proj_media/generate_video/vid_text.mp4", size=(64, 64), frames=8, fps=8)
    assert result["metadata"]["native_frames"] == 8 and result["metadata"]["steps"] == 2
    # `steps` is per clip (what `quality` / num_inference_steps promise); the total over clips beside it.
    assert result["metadata"]["steps_per_clip"] == [2] and result["metadata"]["steps_total"] == 2
    assert_progress(run.heartbeats)
    assert [e.step for e in steps.events] == [1, 2]
    print(f"\n[media] generate_video 64x64 1s@8fps 2 steps: {elapsed:.2f}s", file=sys.stderr)


async def test_video_from_storyboard_resampled(
    media: MediaActivities, media_dir: Path, http_server: StaticFileServer
) -> None:
    run = activity_env()
    data = {
        "scene_description": "a chase through the market",
        "storyboard_images": [http_server.base_url + "/story-1.png", http_server.base_url + "/story-2.png"],
        "duration": 1.5,
        "fps": 12,
        "resolution": "64x48",
        "num_inference_steps": 2,
    }
    result = await run.env.run(media.generate_video, task_input("generate_video", data, task_id="vid_story"))
    # 12 native frames (1.5 s at 8 fps) in two storyboard clips, blended up to 18 frames at 12 fps.
    check_video(
        result, media_dir, "proj_media/generate_video/vid_story.mp4", size=(64, 48), frames=18, fps=12
    )
    meta = result["metadata"]
    assert meta["clips"] == 2 and meta["native_frames"] == 12 and meta["conditioning"] == "storyboard"
    assert_progress(run.heartbeats)


async def test_render_animation(
    media: MediaActivities, media_dir: Path, http_server: StaticFileServer
) -> None:
    run = activity_env()
    data = {
        "action": "jumps over a fence",
        "character_id": "ali",
        "style": "watercolor",
        "character_reference_image": http_server.base_url + "/ref.png",
        "duration": 1,
        "fps": 10,
        "resolution": "64x64",
        "seed": 11,
        "num_inference_steps": 2,
    }
    started = time.perf_counter()
    result = await run.env.run(media.render_animation, task_input("render_animation", data, task_id="anim_1"))
    elapsed = time.perf_counter() - started
    check_video(result, media_dir, "proj_media/render_animation/anim_1.mp4", size=(64, 64), frames=10, fps=10)
    assert result["metadata"]["conditioning"] == "character_reference"
    assert_progress(run.heartbeats)
    print(f"\n[media] render_animation 64x64 1s@10fps 2 steps (img cond): {elapsed:.2f}s", file=sys.stderr)


async def test_render_animation_text_only(media: MediaActivities, media_dir: Path) -> None:
    data = {"action": "waves", "duration": 1, "fps": 8, "resolution": "64x64", "num_inference_steps": 2}
    result = await activity_env().env.run(
        media.render_animation, task_input("render_animation", data, task_id="anim_2")
    )
    check_video(result, media_dir, "proj_media/render_animation/anim_2.mp4", size=(64, 64), frames=8, fps=8)
    assert result["metadata"]["conditioning"] == "text"


async def test_cancel_video_mid_denoise(media: MediaActivities, steps: StepRecorder) -> None:
    """TextToVideoSDPipeline has no `_interrupt`: the legacy callback raises to stop it."""
    run = activity_env()
    loop = asyncio.get_running_loop()
    cancelled_at: list[float] = []

    def cancel_at_step_2(event: object) -> None:
        if len(steps.events) == 2 and not cancelled_at:
            cancelled_at.append(time.perf_counter())
            loop.call_soon_threadsafe(run.env.cancel)

    steps.on_event = cancel_at_step_2
    data = {
        "scene_description": "long",
        "duration": 1,
        "fps": 8,
        "resolution": "64x64",
        "num_inference_steps": 20,
    }
    with pytest.raises(asyncio.CancelledError):
        await run.env.run(media.generate_video, task_input("generate_video", data, task_id="vid_cancel"))
    latency = time.perf_counter() - cancelled_at[0]
    assert steps.events[-1].stopping and [e.stopping for e in steps.events].count(True) == 1
    assert len([e for e in steps.events if e.at > cancelled_at[0]]) <= 2
    assert len(steps.events) < 20
    print(f"\n[media] video cancel latency: {latency * 1000:.0f} ms", file=sys.stderr)


def test_resample_frames_exact_count_and_endpoints() -> None:
    native = np.stack([np.full((4, 4, 3), v, dtype=np.uint8) for v in (0, 100, 200)])
    out = resample_frames(native, 5)
    assert out.shape == (5, 4, 4, 3)
    assert [int(f[0, 0, 0]) for f in out] == [0, 50, 100, 150, 200]
    assert resample_frames(native, 3) is native
    assert [int(f[0, 0, 0]) for f in resample_frames(native, 2)] == [0, 200]


def test_split_clips() -> None:
    assert split_clips(8, 16) == [8]
    assert split_clips(40, 16) == [14, 13, 13]
    assert sum(split_clips(240, 16)) == 240 and max(split_clips(240, 16)) <= 16


def _resample_all_at_once(frames: np.ndarray, target_count: int) -> np.ndarray:
    """The blending as it was before chunking: every output frame's float32 copy alive at once."""
    source_count = frames.shape[0]
    positions = np.arange(target_count, dtype=np.float64) * (source_count - 1) / (target_count - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, source_count - 1)
    weight = (positions - lower).astype(np.float32)[:, None, None, None]
    blended = frames[lower].astype(np.float32) * (1.0 - weight) + frames[upper].astype(np.float32) * weight
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


def test_resampled_chunks_are_the_frames_of_one_pass() -> None:
    native = np.random.default_rng(5).integers(0, 256, size=(9, 6, 10, 3), dtype=np.uint8)
    reference = _resample_all_at_once(native, 61)
    for chunk_pixels in (1, 60, 7 * 60, 10_000):
        chunks = list(resampled_chunks(native, 61, chunk_pixels=chunk_pixels))
        assert max(len(c) for c in chunks) == max(1, min(61, chunk_pixels // 60))
        assert np.array_equal(np.concatenate(chunks), reference)
    assert np.array_equal(resample_frames(native, 61), reference)


def test_resampling_memory_does_not_grow_with_duration() -> None:
    """Peak traced memory of resampling 10× more output frames stays that of one chunk (numpy allocations
    are traced by tracemalloc)."""
    native = np.random.default_rng(1).integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8)

    def peak(frames: int) -> int:
        tracemalloc.start()
        try:
            for _chunk in resampled_chunks(native, frames, chunk_pixels=8 * 64 * 64):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak(120), peak(1200)
    assert long < short * 1.5, (short, long)
    # A one-pass float32 blend of the 1200 frames would need ≥ 1200 × 64 × 64 × 3 × 4 bytes.
    assert long < 1200 * 64 * 64 * 3 * 4 / 10


def test_chunked_encoding_writes_the_frames_of_one_pass(tmp_path: Path) -> None:
    native = np.random.default_rng(2).integers(0, 256, size=(5, 32, 48, 3), dtype=np.uint8)
    whole, chunked = tmp_path / "whole.mp4", tmp_path / "chunked.mp4"
    encode_mp4([_resample_all_at_once(native, 23)], whole, 12, frame_count=23)
    written: list[int] = []
    chunks = resampled_chunks(native, 23, chunk_pixels=3 * 32 * 48)
    encode_mp4(chunks, chunked, 12, frame_count=23, on_frame=lambda done, total: written.append(done))
    assert written == list(range(1, 24))
    decoded_whole, decoded_chunked = (
        list(imageio_ffmpeg.read_frames(str(whole))),
        list(imageio_ffmpeg.read_frames(str(chunked))),
    )
    assert len(decoded_chunked) == 24  # metadata, then 23 frames
    assert decoded_chunked[1:] == decoded_whole[1:]


async def test_worker_holds_requests_to_its_own_budget(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A request let through under another budget is refused by the worker before it loads anything."""
    settings = make_settings(
        tiny_models, tmp_path, max_video_pixel_frames=64 * 64 * 8, max_image_pixel_steps=10
    )
    async with opened(MediaActivities, settings) as acts:
        video = {"scene_description": "x", "duration": 2, "fps": 8, "resolution": "64x64"}
        image = {"prompt": "x", "resolution": "64x64", "quality": "draft"}
        for method, task_type, data, setting in [
            (acts.generate_video, "generate_video", video, "MAX_VIDEO_PIXEL_FRAMES = 32,768 pixel-frames"),
            (acts.generate_image, "generate_image", image, "MAX_IMAGE_PIXEL_STEPS = 10 pixel-steps"),
        ]:
            with pytest.raises(ApplicationError) as caught:
                await activity_env().env.run(method, task_input(task_type, data))
            assert caught.value.type == "InvalidInput" and caught.value.non_retryable
            assert setting in str(caught.value) and "this service's cpu workers" in str(caught.value)
        assert acts.loaded_models() == []
