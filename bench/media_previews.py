"""What live previews cost a render (issue 29): the same render with PREVIEW_DECODER off, tiny and vae, as a
ratio to off, at the default PREVIEW_INTERVAL_S (2 s) and at a short one that writes many previews.

Each render runs the real activity (temporalio's ActivityEnvironment) on one warm MediaActivities; only its
preview decoders are swapped between the modes, so every mode runs on the same cached pipeline. Rounds
rotate the order of the modes (the machine is shared: drift spreads over all of them); the median of each
mode counts. Run by `python bench/media_overhead.py --previews` (tiny models on a CPU; `--device cuda`: an
SD-1.5-sized 512²/20 pipeline with a TAESD-sized tiny decoder, random weights).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activities.media.activities import MediaActivities
from activities.media.previews import PreviewDecoders
from activities.resources import WorkerResources
from taskservice.contracts import TaskActivityInput, TaskProgressUpdate
from taskservice.settings import Settings
from tests.support.attempts import TaskActivityEnvironment

MODES = ("off", "tiny", "vae")


@dataclass(frozen=True)
class PreviewCase:
    name: str
    task_type: str  # generate_image or generate_video
    data: dict[str, Any]


def cases(device: str) -> list[PreviewCase]:
    if device.startswith("cuda"):
        image = {"prompt": "a lighthouse", "resolution": "512x512", "num_inference_steps": 20, "seed": 3}
        return [PreviewCase("SD-1.5-sized image 512²/20", "generate_image", image)]
    image = {"prompt": "a lighthouse", "resolution": "128x128", "num_inference_steps": 30, "seed": 3}
    video = {"scene_description": "a long take", "duration": 2, "fps": 8, "resolution": "64x64",
             "num_inference_steps": 8, "seed": 3}  # fmt: skip
    return [
        PreviewCase("tiny SD image 128²/30", "generate_image", image),
        PreviewCase("tiny video 64², 16 frames/8", "generate_video", video),
    ]


async def _render(acts: MediaActivities, case: PreviewCase, task_id: str) -> tuple[float, int]:
    """Seconds the render took, and the previews its heartbeats showed."""
    env = TaskActivityEnvironment()
    beats: list[TaskProgressUpdate] = []
    env.on_heartbeat = lambda *details: beats.append(details[0])
    task = TaskActivityInput(task_id, "bench", case.task_type, case.data, soft_timeout_s=3600.0)
    started = time.perf_counter()
    await env.run(getattr(acts, case.task_type), task)
    seconds = time.perf_counter() - started
    return seconds, len({b.preview.at for b in beats if b.preview is not None})


async def preview_costs(
    models: dict[str, Path], device: str, *, rounds: int = 3, intervals: tuple[float, ...] = (2.0, 0.25)
) -> list[str]:
    """Lines of the report: per case and interval, each mode's median seconds, its ratio to off, and the
    previews one render wrote."""
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(image_model=str(models["image"]), video_model=str(models.get("video", "")) or None,
                        torch_device=device, data_dir=Path(tmp), image_max_batch=1)  # fmt: skip
        async with WorkerResources.open(base) as resources:
            acts = MediaActivities(resources)
            try:
                for case in cases(device):
                    await _render(acts, case, "warmup")  # model loads
                    for interval in intervals:
                        lines.append(await _case_line(acts, base, models["preview"], case, interval, rounds))
            finally:
                await acts.aclose()
    return lines


async def _case_line(
    acts: MediaActivities, base: Settings, model: Path, case: PreviewCase, interval: float, rounds: int
) -> str:
    shared = {"preview_interval_s": interval, "preview_model_image": str(model)}
    shared["preview_model_video"] = str(model)
    decoders = {
        mode: PreviewDecoders(base.model_copy(update={**shared, "preview_decoder": mode}), acts.models)
        for mode in MODES
    }
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    written: dict[str, list[int]] = {mode: [] for mode in MODES}
    decoded: dict[str, tuple[int, float]] = {}
    for index in range(rounds + 1):
        if index == 1:  # what the decodes of the measured rounds took (round 0 loads the tiny decoder)
            decoded = {mode: (decoders[mode].decoded, decoders[mode].decode_seconds) for mode in MODES}
        order = MODES[index % len(MODES) :] + MODES[: index % len(MODES)]
        for mode in order:
            # The bench swaps the worker's preview decoders: the same warm pipeline for every mode.
            acts._tools.previews = decoders[mode]  # noqa: SLF001
            seconds, previews = await _render(acts, case, f"{mode}{index}")
            if index > 0:  # round 0 loads the tiny decoder and warms each path
                times[mode].append(seconds)
                written[mode].append(previews)
    off = statistics.median(times["off"])
    parts = []
    for mode in MODES:
        median = statistics.median(times[mode])
        shown = statistics.median(written[mode])
        count = decoders[mode].decoded - decoded[mode][0]
        seconds = decoders[mode].decode_seconds - decoded[mode][1]
        on_loop = f", {1000 * seconds / count:.1f} ms each on the denoising thread" if count else ""
        parts.append(f"{mode} {median:.2f} s ({median / off:.3f}×, {shown:.0f} previews{on_loop})")
    return f"{case.name}, PREVIEW_INTERVAL_S={interval:g}: " + "; ".join(parts)
