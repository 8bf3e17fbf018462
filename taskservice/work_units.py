"""How much a task asks of its worker, in one number per task type: what its run time grows with.

Images: pixels x denoising steps; video and animation: that x frames; voice: characters; audio mixes: input
seconds of the tracks (trimmed where trims say, else a nominal length per track; assemble_clip too, whose
video's length is known only once fetched); LLM types: prompt characters / 4 (about
tokens) plus the tokens asked for. Read from the validated task data (defaults filled in), once, here.
"""

from __future__ import annotations

import json
from typing import Any

from taskservice.task_data import QUALITY_STEPS

# Units are scaled to stay readable: megapixel-steps for diffusion, kilo-characters for prompts.
MEGA = 1_000_000.0
# A track without a trim end counts as this many seconds (its real length is known only once fetched).
NOMINAL_TRACK_S = 30.0
CHARS_PER_TOKEN = 4.0
DEFAULT_OUTPUT_TOKENS = 256.0


def _pixels(task_data: dict[str, Any], default: str) -> float:
    width, _, height = str(task_data.get("resolution", default)).partition("x")
    try:
        return float(width) * float(height)
    except ValueError:
        return 0.0


def _steps(task_data: dict[str, Any]) -> float:
    steps = task_data.get("num_inference_steps")
    if steps is None:
        steps = QUALITY_STEPS.get(task_data.get("quality", "standard"), 20)
    return float(steps)


def _diffusion(task_data: dict[str, Any], resolution: str, frames: float = 1.0) -> float:
    return _pixels(task_data, resolution) * _steps(task_data) * frames / MEGA


def _frames(task_data: dict[str, Any], duration: float, fps: float) -> float:
    return float(task_data.get("duration", duration)) * float(task_data.get("fps", fps))


def _audio_seconds(task_data: dict[str, Any]) -> float:
    total = 0.0
    for track in task_data.get("tracks", []):
        trim = track.get("trim") or {}
        end = trim.get("end_s")
        total += (float(end) - float(trim.get("start_s", 0.0))) if end is not None else NOMINAL_TRACK_S
    return total


def _llm_tokens(task_data: dict[str, Any]) -> float:
    prompt_chars = len(json.dumps(task_data, ensure_ascii=False))
    output = task_data.get("max_tokens") or task_data.get("max_new_tokens") or DEFAULT_OUTPUT_TOKENS
    return prompt_chars / CHARS_PER_TOKEN + float(output)


def work_units(task_type: str, task_data: dict[str, Any]) -> float:
    """The task's work units (see the module's docstring); LLM-driven types count tokens."""
    if task_type in ("generate_image", "run_sd_inference"):
        return _diffusion(task_data, "1024x1024")
    if task_type == "generate_video":
        return _diffusion(task_data, "1280x720", _frames(task_data, 7.0, 24))
    if task_type == "render_animation":
        return _diffusion(task_data, "512x512", _frames(task_data, 4.0, 12))
    if task_type in ("generate_character_voice", "run_tts_inference"):
        return float(len(str(task_data.get("text", ""))))
    if task_type in ("process_audio", "assemble_clip"):
        return _audio_seconds(task_data)
    return _llm_tokens(task_data)


# What a media result's metadata calls the seconds its attempt held a device, by kind of device.
GPU_SECONDS = "gpu_seconds"
CPU_SECONDS = "cpu_seconds"
DEVICE_SECONDS_KEYS = (GPU_SECONDS, CPU_SECONDS)
# ... and the part of them the attempt waited for a cold model (not a cost of the task's size).
MODEL_LOAD_SECONDS = "model_load_s"


def device_seconds_key(device: str) -> str:
    """`gpu_seconds` on an accelerator (cuda, mps), `cpu_seconds` on a CPU worker."""
    return CPU_SECONDS if device.split(":", 1)[0] == "cpu" else GPU_SECONDS
