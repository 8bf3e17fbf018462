"""A cancel stops a video task in whichever phase it is: denoising (between steps), decoding (between frame
chunks) and encoding (between frames), within one denoising step plus 5 s (issue 29)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from activities.media.activities import MediaActivities
from tests.support.media import PhaseRecorder, Run, Seen, activity_env, make_settings, task_input
from tests.support.worker_resources import opened

CANCEL_BOUND_S = 5.0  # plus one denoising step
FRAMES = 16  # 2 s at 8 fps: one native clip, 16 output frames


@pytest.fixture(scope="module")
def recorder() -> PhaseRecorder:
    return PhaseRecorder()


@pytest.fixture(scope="module")
async def media(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, recorder: PhaseRecorder
) -> AsyncIterator[MediaActivities]:
    # CANCEL_CHECK_S this small decodes the tiny model's frames one at a time: a decode of several chunks.
    settings = make_settings(tiny_models, tmp_path_factory.mktemp("media-cancel"), cancel_check_s=0.0001)
    async with opened(
        MediaActivities, settings, step_observer=recorder.step, phase_observer=recorder.phase
    ) as acts:
        yield acts


async def _cancel_once_heartbeat_shows(run: Run, phase: str) -> float:
    """Wait until the task's heartbeat shows `phase` as its step (what /status reads), then cancel; the time
    of the cancel. Returns once the cancel has reached the activity (a few loop turns later)."""
    deadline = time.monotonic() + 10
    while not (run.heartbeats and run.heartbeats[-1]["step"].startswith(phase)):
        assert time.monotonic() < deadline, f"no heartbeat in {phase}: {run.heartbeats[-3:]}"
        await asyncio.sleep(0.02)
    cancelled_at = time.perf_counter()
    run.env.cancel()
    await asyncio.sleep(0.05)
    return cancelled_at


@pytest.mark.parametrize(
    ("phase", "at_unit"),
    [("denoising", 2), ("decoding_video", 2), ("encoding_video", 3)],
)
async def test_cancel_returns_within_the_bound_in_each_phase(
    media: MediaActivities, recorder: PhaseRecorder, phase: str, at_unit: int
) -> None:
    run = activity_env()
    loop = asyncio.get_running_loop()
    cancel: list[concurrent.futures.Future[float]] = []
    lock = threading.Lock()

    def on_event(seen: Seen) -> None:
        with lock:
            if seen.phase != phase or seen.done != at_unit or cancel:
                return
            cancel.append(asyncio.run_coroutine_threadsafe(_cancel_once_heartbeat_shows(run, phase), loop))
        # The task's thread holds here (as a slow chunk would) until the cancel has reached the activity.
        cancel[0].result(timeout=15)

    recorder.seen.clear()
    recorder.on_event = on_event
    steps = 20 if phase == "denoising" else 4
    data = {"scene_description": f"cancel in {phase}", "duration": 2, "fps": 8, "resolution": "64x64",
            "num_inference_steps": steps}  # fmt: skip
    task = task_input("generate_video", data, task_id=f"vid_cancel_{phase}", soft_timeout_s=600)
    try:
        with pytest.raises(asyncio.CancelledError):
            await run.env.run(media.generate_video, task)
        returned_at = time.perf_counter()
    finally:
        recorder.on_event = None
    cancelled_at = cancel[0].result()
    denoise = [s for s in recorder.seen if s.phase == "denoising"]
    step_s = (denoise[-1].at - denoise[0].at) / max(len(denoise) - 1, 1)
    latency = returned_at - cancelled_at
    assert latency <= step_s + CANCEL_BOUND_S, f"cancel in {phase} took {latency:.2f}s (step {step_s:.2f}s)"
    # The phase it hit, as the heartbeat (the task's current_step) showed it, and nothing after it: the work
    # stopped within one more unit of that phase.
    assert run.heartbeats[-1]["step"].startswith(phase), run.heartbeats[-1]
    after = [s for s in recorder.seen if s.at > cancelled_at]
    assert all(s.phase == phase for s in after), after
    assert len(after) <= 1, after
    hit = [s for s in recorder.seen if s.phase == phase]
    assert hit[-1].done < hit[-1].total, f"{phase} ran to its end: {hit[-1]}"
    later = {"denoising": {"decoding_video", "encoding_video"}, "decoding_video": {"encoding_video"}}
    assert not [s for s in recorder.seen if s.phase in later.get(phase, set())]
    print(
        f"\n[media] cancel in {phase}: {latency * 1000:.0f} ms (step {step_s * 1000:.0f} ms)", file=sys.stderr
    )


async def test_decoded_frames_arrive_in_chunks_and_the_video_completes(
    media: MediaActivities, recorder: PhaseRecorder
) -> None:
    """Unstopped, the chunked decode covers every frame once and the task completes."""
    recorder.seen.clear()
    run = activity_env()
    data = {
        "scene_description": "whole",
        "duration": 2,
        "fps": 8,
        "resolution": "64x64",
        "num_inference_steps": 2,
    }
    task = task_input("generate_video", data, task_id="vid_chunks", soft_timeout_s=600)
    result = await run.env.run(media.generate_video, task)
    assert result["metadata"]["frame_count"] == FRAMES
    decoded = [s.done for s in recorder.seen if s.phase == "decoding_video"]
    assert len(decoded) > 1 and decoded[-1] == FRAMES and decoded == sorted(set(decoded))
    encoded = [s.done for s in recorder.seen if s.phase == "encoding_video"]
    assert encoded == list(range(1, FRAMES + 1))
