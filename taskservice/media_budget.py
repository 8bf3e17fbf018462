"""The work one media request may ask of a worker: its settings, their per-device defaults, and the check.

A request's figure is a product of what it asks: width × height for one video frame, × frames for a whole
video, × denoising steps for an image, seconds for an audio mix. The API refuses a request whose figure is
above its budget (400 `validation_error` naming both) before anything starts. The defaults depend on the
device the media workers run on (`MEDIA_BUDGET_DEVICE`): what a 24 GB GPU runs with the real models, or what
a 24 GB CPU machine runs (dev, tests). Each budget can be set on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskservice.assemble_data import AssembleClipData
from taskservice.task_data import (
    GenerateImageData,
    GenerateVideoData,
    ProcessAudioData,
    RenderAnimationData,
)

BudgetDevice = Literal["cpu", "gpu"]
# Frames per second that the clip models render natively (ModelScope text-to-video, AnimateDiff): a video has
# at least duration × NATIVE_FPS frames in memory, whatever its fps. The worker plans its clips with it too.
NATIVE_FPS = 8


@dataclass(frozen=True)
class MediaBudget:
    """The budgets in force: each the largest figure a request may have, for the workers' device."""

    device: BudgetDevice
    video_pixels: int
    video_pixel_frames: int
    animation_pixels: int
    animation_pixel_frames: int
    image_pixel_steps: int
    audio_mix_s: float


# Defaults per device. GPU: a 1920×1080 frame, the seed's 1080p example up to 30 s at 24 fps, a 2048² image at
# 50 steps. CPU (24 GB): a 1280×720 frame (a 1080p frame took a CPU worker to 20 GB) and the default video
# (7 s at 24 fps), a 1024² image at 50 steps.
DEVICE_DEFAULTS: dict[BudgetDevice, dict[str, int]] = {
    "gpu": {
        "video_pixels": 1920 * 1080,
        "video_pixel_frames": 1920 * 1080 * 30 * 24,
        "animation_pixels": 1920 * 1080,
        "animation_pixel_frames": 1920 * 1080 * 30 * 24,
        "image_pixel_steps": 2048 * 2048 * 50,
    },
    "cpu": {
        "video_pixels": 1280 * 720,
        "video_pixel_frames": 1280 * 720 * 7 * 24,
        "animation_pixels": 1280 * 720,
        "animation_pixel_frames": 1280 * 720 * 7 * 24,
        "image_pixel_steps": 1024 * 1024 * 50,
    },
}
_DEVICE_DEFAULT = "Unset: the default of MEDIA_BUDGET_DEVICE's device (README, Media budgets)."


class MediaBudgetSettings(BaseSettings):
    """The budgets of media requests and the bounds of decoded inputs: part of Settings, declared apart."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    media_budget_device: Literal["auto", "cpu", "gpu"] = Field(
        "auto",
        description="Device whose budget defaults apply to media requests; `auto`: in the API `gpu` with "
        "ENVIRONMENT=production or a `cuda` TORCH_DEVICE, else `cpu`; in a media worker, its models' device.",
    )
    max_video_pixels: int | None = Field(
        None, ge=1, description=f"generate_video: width × height of a frame. {_DEVICE_DEFAULT}"
    )
    max_video_pixel_frames: int | None = Field(
        None,
        ge=1,
        description="generate_video: width × height × frames (the larger of duration × fps and duration × 8, "
        f"the frames the model renders). {_DEVICE_DEFAULT}",
    )
    max_animation_pixels: int | None = Field(
        None, ge=1, description=f"render_animation: width × height of a frame. {_DEVICE_DEFAULT}"
    )
    max_animation_pixel_frames: int | None = Field(
        None, ge=1, description=f"render_animation: width × height × frames, as for video. {_DEVICE_DEFAULT}"
    )
    max_image_pixel_steps: int | None = Field(
        None,
        ge=1,
        description=f"generate_image, run_sd_inference: width × height × denoising steps. {_DEVICE_DEFAULT}",
    )
    max_audio_mix_s: float = Field(
        3600.0,
        gt=0,
        description="process_audio, assemble_clip: length of the mix (a track's offset plus its audio; "
        "assemble_clip: also the video's length), seconds.",
    )
    max_audio_input_s: float = Field(
        3600.0, gt=0, description="Longest audio input decoded (a track, a voice reference), seconds."
    )
    max_input_pixels: int = Field(
        40_000_000, ge=1, description="Largest input image decoded (width × height); above it: InvalidInput."
    )

    def budget_for(self, device: BudgetDevice) -> MediaBudget:
        """The budgets for workers on `device`: each setting that is set, else the device's default."""
        defaults = DEVICE_DEFAULTS[device]
        chosen = {name: getattr(self, f"max_{name}") or default for name, default in defaults.items()}
        return MediaBudget(device=device, audio_mix_s=self.max_audio_mix_s, **chosen)


def budget_device(setting: str, *, gpu_workers: bool) -> BudgetDevice:
    """MEDIA_BUDGET_DEVICE, with `auto` decided by whether the media workers are known to have a GPU."""
    if setting == "cpu":
        return "cpu"
    return "gpu" if setting == "gpu" or gpu_workers else "cpu"


@dataclass(frozen=True)
class OverBudget:
    """A request above one budget: which setting, its limit, and the request's figure."""

    field: str  # the task_data field that sets the figure
    setting: str  # the budget's environment variable
    limit: float
    figure: float
    what: str  # how the figure is made, e.g. "1920x1080 × 720 frames"
    unit: str  # e.g. "pixel-frames"

    def message(self, task_type: str, device: BudgetDevice) -> str:
        return (
            f"{task_type} asks {self.what} = {_number(self.figure)} {self.unit}, above {self.setting} = "
            f"{_number(self.limit)} {self.unit} (the budget of this service's {device} workers)"
        )


def over_budget(data: BaseModel, budget: MediaBudget) -> OverBudget | None:
    """The first budget a validated task_data is above, or None when it fits (or has no budget)."""
    if isinstance(data, GenerateVideoData | RenderAnimationData):
        return _clip_over_budget(data, budget)
    if isinstance(data, GenerateImageData):
        width, height = _size(data.resolution)
        steps = data.denoising_steps()
        figure = width * height * steps
        if figure > budget.image_pixel_steps:
            what = f"{width}x{height} × {steps} steps"
            limit = budget.image_pixel_steps
            return OverBudget("resolution", "MAX_IMAGE_PIXEL_STEPS", limit, figure, what, "pixel-steps")
    if isinstance(data, ProcessAudioData | AssembleClipData):
        for index, track in enumerate(data.tracks):
            # A trimmed track's length is known: it ends there at the earliest.
            kept = track.trim.end_s - track.trim.start_s if track.trim and track.trim.end_s else 0.0
            end = track.offset_s + max(kept, 0.0)
            if end > budget.audio_mix_s:
                what = f"a mix of at least {end:g} s (track {index + 1})"
                field = f"tracks.{index}.offset_s"
                return OverBudget(field, "MAX_AUDIO_MIX_S", budget.audio_mix_s, end, what, "seconds")
    return None


def _clip_over_budget(
    data: GenerateVideoData | RenderAnimationData, budget: MediaBudget
) -> OverBudget | None:
    video = isinstance(data, GenerateVideoData)
    prefix = "VIDEO" if video else "ANIMATION"
    pixels_limit = budget.video_pixels if video else budget.animation_pixels
    frames_limit = budget.video_pixel_frames if video else budget.animation_pixel_frames
    width, height = _size(data.resolution)
    if width * height > pixels_limit:
        what = f"{width}x{height} a frame"
        figure = width * height
        return OverBudget("resolution", f"MAX_{prefix}_PIXELS", pixels_limit, figure, what, "pixels")
    frames = clip_frames(data.duration, data.fps)
    if width * height * frames > frames_limit:
        what = f"{width}x{height} × {frames} frames"
        figure = width * height * frames
        setting = f"MAX_{prefix}_PIXEL_FRAMES"
        return OverBudget("duration", setting, frames_limit, figure, what, "pixel-frames")
    return None


def clip_frames(duration: float, fps: int) -> int:
    """Frames a clip request holds: those of the file, or those the model renders when more."""
    return max(round(duration * fps), math.ceil(duration * NATIVE_FPS))


def _size(resolution: str) -> tuple[int, int]:
    width, height = resolution.lower().split("x", 1)
    return int(width), int(height)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,g}"
