"""A video render that loses its attempt after its second clip resumes from the third on the retry, with the
same seed, and gives the frames of an uninterrupted render (issue 29). The retry is the same activity run
again with attempt 2 and the last heartbeat the first attempt sent, as Temporal delivers it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest

from activities.media.activities import MediaActivities
from taskservice.contracts import TaskProgressUpdate
from tests.support.attempts import TaskActivityEnvironment
from tests.support.media import PhaseRecorder, Seen, make_settings, task_input

# 6 s at 8 fps: 48 native frames in three 16-frame clips.
DATA = {"scene_description": "a long shot", "duration": 6, "fps": 8, "resolution": "64x64", "seed": 11,
        "num_inference_steps": 2}  # fmt: skip
CLIPS = 3


@pytest.fixture(scope="module")
def recorder() -> PhaseRecorder:
    return PhaseRecorder()


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media-resume")


@pytest.fixture(scope="module")
async def media(
    tiny_models: dict[str, Path], media_dir: Path, recorder: PhaseRecorder
) -> AsyncIterator[MediaActivities]:
    async with MediaActivitiesFor(tiny_models, media_dir, recorder) as acts:
        yield acts


def MediaActivitiesFor(tiny_models: dict[str, Path], media_dir: Path, recorder: PhaseRecorder) -> Any:  # noqa: N802
    from tests.support.worker_resources import opened

    settings = make_settings(tiny_models, media_dir)
    return opened(MediaActivities, settings, step_observer=recorder.step, phase_observer=recorder.phase)


def frames_of(path: Path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]).astype(np.float32)


def kept_clips(media_dir: Path, task_id: str) -> list[Path]:
    return sorted((media_dir / "media" / "proj_media" / "generate_video").glob(f"{task_id}.clip*.npy"))


async def test_a_retry_resumes_from_the_first_unfinished_clip(
    media: MediaActivities, media_dir: Path, recorder: PhaseRecorder
) -> None:
    loop = asyncio.get_running_loop()
    first = TaskActivityEnvironment()
    sent: list[TaskProgressUpdate] = []
    first.on_heartbeat = lambda *details: sent.append(details[0])
    lost: list[concurrent.futures.Future[None]] = []
    lock = threading.Lock()

    async def heartbeat_holds_two_clips() -> None:
        # What the server holds of the attempt once the worker dies: its last heartbeat.
        while not (sent and sent[-1].clips is not None and len(sent[-1].clips.keys) == 2):
            await asyncio.sleep(0.02)

    def on_event(seen: Seen) -> None:
        with lock:
            if seen.phase != "kept_clip" or seen.done != 2 or lost:
                return
            lost.append(asyncio.run_coroutine_threadsafe(heartbeat_holds_two_clips(), loop))
        lost[0].result(timeout=30)
        # The attempt is lost right after its second clip (a retryable failure: what a lost worker is).
        raise RuntimeError("worker lost")

    recorder.seen.clear()
    recorder.on_event = on_event
    task = task_input("generate_video", DATA, task_id="vid_resume", soft_timeout_s=900)
    try:
        with pytest.raises(RuntimeError, match="worker lost"):
            await first.run(media.generate_video, task)
    finally:
        recorder.on_event = None
    first_attempt = list(recorder.seen)
    assert len(kept_clips(media_dir, "vid_resume")) == 2  # a retryable failure keeps them

    recorder.seen.clear()
    retry = TaskActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[sent[-1]])
    resumed = await retry.run(media.generate_video, task)
    second_attempt = list(recorder.seen)
    assert resumed["metadata"]["resumed"] == {"from_clip": 2, "attempts": 2}
    assert resumed["metadata"]["clips"] == CLIPS and resumed["metadata"]["seed"] == 11
    # Clip renders (a clip's decode run to its end): two, then the third only.
    renders = [s for s in first_attempt + second_attempt if s.phase == "decoding_video" and s.done == s.total]
    assert len(renders) == CLIPS < CLIPS + 1
    # Progress continues where it was: the retry's first denoising step counts the finished clips' steps.
    first_steps = [s.done for s in first_attempt if s.phase == "denoising"]
    assert min(s.done for s in second_attempt if s.phase == "denoising") > max(first_steps)
    assert kept_clips(media_dir, "vid_resume") == []  # published: the kept clips are gone

    whole = await TaskActivityEnvironment().run(
        media.generate_video, task_input("generate_video", DATA, task_id="vid_whole", soft_timeout_s=900)
    )
    assert whole["metadata"]["resumed"] == {"from_clip": 0, "attempts": 1}
    folder = media_dir / "media" / "proj_media" / "generate_video"
    resumed_frames, whole_frames = frames_of(folder / "vid_resume.mp4"), frames_of(folder / "vid_whole.mp4")
    assert resumed_frames.shape == whole_frames.shape
    assert np.abs(resumed_frames - whole_frames).max() <= 2.0


async def test_a_checkpoint_of_another_render_is_not_resumed(media: MediaActivities, media_dir: Path) -> None:
    """A heartbeat whose clips are gone from storage (or of another plan) starts the render afresh."""
    from taskservice.contracts import ClipCheckpoint

    stale = TaskProgressUpdate(
        progress=0.5,
        step="kept_clip 2/3",
        clips=ClipCheckpoint(seed=99, clips=CLIPS, keys=["proj_media/generate_video/vid_stale.clip0.npy"]),
    )
    retry = TaskActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[stale])
    data = {**DATA, "duration": 1}
    task = task_input("generate_video", data, task_id="vid_stale", soft_timeout_s=900)
    result = await retry.run(media.generate_video, task)
    assert result["metadata"]["resumed"] == {"from_clip": 0, "attempts": 1}
    assert result["metadata"]["seed"] == 11


async def test_a_cancelled_render_leaves_no_kept_clips(
    media: MediaActivities, media_dir: Path, recorder: PhaseRecorder
) -> None:
    """A cancel ends the task for good: what it kept is deleted (a retryable failure keeps it, above)."""
    run = TaskActivityEnvironment()
    sent: list[TaskProgressUpdate] = []
    run.on_heartbeat = lambda *details: sent.append(details[0])
    loop = asyncio.get_running_loop()
    cancelled: list[concurrent.futures.Future[None]] = []

    async def cancel() -> None:
        run.cancel()
        await asyncio.sleep(0.05)

    def on_event(seen: Seen) -> None:
        if seen.phase == "kept_clip" and not cancelled:
            assert len(kept_clips(media_dir, "vid_cancelled")) == 1
            cancelled.append(asyncio.run_coroutine_threadsafe(cancel(), loop))
            cancelled[0].result(timeout=30)

    recorder.on_event = on_event
    task = task_input("generate_video", {**DATA, "duration": 3}, task_id="vid_cancelled", soft_timeout_s=900)
    try:
        with pytest.raises(asyncio.CancelledError):
            await run.run(media.generate_video, task)
    finally:
        recorder.on_event = None
    assert cancelled and kept_clips(media_dir, "vid_cancelled") == []
