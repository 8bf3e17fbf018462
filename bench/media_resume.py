"""What a resumed render saves (issue 29): a video of several clips, its attempt lost after half and after
nine tenths of its clips; the retry's time to finish against a full render (what a retry cost before).

The attempt is lost the way a dying worker loses it, as far as the render can tell: a retryable failure
right after a clip was kept (the kept clips stay in storage), then the same activity is run again as
attempt 2 with the last heartbeat of attempt 1, as Temporal hands it over. Run by
`python bench/media_overhead.py --resume` (tiny video model on a CPU; `--device cuda` on a GPU).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from activities.media.activities import MediaActivities
from activities.media.tools import PhaseEvent
from activities.resources import WorkerResources
from activities.runtime import HEARTBEAT_EVERY_S
from taskservice.contracts import TaskActivityInput, TaskProgressUpdate
from taskservice.settings import Settings
from tests.support.attempts import TaskActivityEnvironment

CLIPS = 5  # 10 s at 8 fps: 80 native frames in five 16-frame clips


class _AttemptLost(Exception):
    """The bench's stand-in for a lost worker (retryable)."""


def _task(task_id: str, steps: int, resolution: str) -> TaskActivityInput:
    data = {"scene_description": "a long take", "duration": CLIPS * 2, "fps": 8, "resolution": resolution,
            "seed": 7, "num_inference_steps": steps}  # fmt: skip
    return TaskActivityInput(task_id, "bench", "generate_video", data, soft_timeout_s=3600.0)


class _LoseAfter:
    """The phase observer: loses the attempt right after clip `clips` was kept (None: never)."""

    def __init__(self) -> None:
        self.clips: int | None = None

    def __call__(self, event: PhaseEvent) -> None:
        if event.phase == "kept_clip" and event.done == self.clips:
            time.sleep(HEARTBEAT_EVERY_S + 0.2)  # its heartbeat goes out, as it would have on a worker
            raise _AttemptLost


async def _timed(acts: MediaActivities, env: TaskActivityEnvironment, task: TaskActivityInput) -> float:
    started = time.perf_counter()
    await env.run(acts.generate_video, task)
    return time.perf_counter() - started


async def resume_costs(
    video_model: Path, device: str, *, steps: int = 4, resolution: str = "64x64"
) -> list[str]:
    """Lines of the report: full render, then for a loss at ~50 % and ~90 % the retry's time and ratio."""
    lose = _LoseAfter()
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(video_model=str(video_model), torch_device=device, data_dir=Path(tmp))
        async with WorkerResources.open(settings) as resources:
            acts = MediaActivities(resources, phase_observer=lose)
            try:
                await _timed(acts, TaskActivityEnvironment(), _task("warmup", 2, resolution))  # model load
                # Full renders before and after the lost ones (the machine is shared): the faster one counts.
                fulls = [await _timed(acts, TaskActivityEnvironment(), _task("full0", steps, resolution))]
                losses = []
                for share in (0.5, 0.9):
                    kept = max(1, min(CLIPS - 1, round(share * CLIPS)))
                    losses.append(await _lost_and_resumed(acts, lose, kept, steps, resolution))
                fulls.append(await _timed(acts, TaskActivityEnvironment(), _task("full1", steps, resolution)))
                full = min(fulls)
                lines.append(
                    f"full render, {CLIPS} clips, {resolution}, {steps} steps: {full:.2f} s "
                    f"(runs: {', '.join(f'{f:.2f}' for f in fulls)} s)"
                )
                for kept, lost_after, resumed in losses:
                    lines.append(
                        f"lost after clip {kept}/{CLIPS} ({lost_after:.2f} s in): the retry finished in "
                        f"{resumed:.2f} s = {resumed / full:.2f}× a full re-render"
                    )
            finally:
                await acts.aclose()
    return lines


async def _lost_and_resumed(
    acts: MediaActivities, lose: _LoseAfter, kept: int, steps: int, resolution: str
) -> tuple[int, float, float]:
    """(clips kept, seconds until the attempt was lost, seconds the retry took to finish)."""
    task = _task(f"lost{kept}", steps, resolution)
    first = TaskActivityEnvironment()
    sent: list[TaskProgressUpdate] = []
    first.on_heartbeat = lambda *details: sent.append(details[0])
    lose.clips = kept
    started = time.perf_counter()
    try:
        await first.run(acts.generate_video, task)
    except _AttemptLost:
        lost_after = time.perf_counter() - started
    finally:
        lose.clips = None
    last = _last_with(sent, kept)
    retry = TaskActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[last])
    resumed = await _timed(acts, retry, task)
    return kept, lost_after, resumed


def _last_with(sent: list[TaskProgressUpdate], kept: int) -> TaskProgressUpdate:
    """The lost attempt's last heartbeat (what the server hands the retry), checked to hold `kept` clips."""
    last = sent[-1]
    if last.clips is None or len(last.clips.keys) != kept:
        raise RuntimeError(f"the last heartbeat does not hold {kept} kept clips: {last}")
    return last
