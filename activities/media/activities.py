"""Visual media task types on diffusers: generate_image (gpu_medium), generate_video and render_animation
(gpu_heavy).

Models are configuration (IMAGE_MODEL, IMAGE_REFERENCE_MODEL, VIDEO_MODEL, ANIMATION_MODEL: hub ids or
local folders, loaded with `from_pretrained`), held warm by the process's `ModelCache`. The denoising loop
reports `denoising i/N` after every step and stops after the current step when the task is cancelled or
reaches its soft time limit. One pipeline call runs at a time on the worker's device
(`activities.media.device`); same-shape image tasks that arrive together share one (`activities.media.batch`).

How inputs condition the output:
- generate_image: prompt + character_id/pose/lighting. With `reference_images`, the first one is the
  img2img init (strength 0.65); without them, a `style_guide` image is the init at strength 0.85 (it
  lends palette and layout, little else). Further reference images are fetched and checked but SD img2img
  has one init image (an IP-Adapter would be the way to use them all).
- generate_video: prompt from scene_description, camera_angle, lighting, character_positions. The clip is
  generated at the model's native rate in clips of at most its native length; with `storyboard_images`,
  every clip starts from its storyboard keyframe (video-to-video from the image held still, strength
  0.75; the storyboard is spread evenly over the clips, one clip per image when there is time for it);
  without them, each later clip starts from the previous clip's last frame (strength 0.8) for continuity.
- render_animation: AnimateDiff (ANIMATION_MODEL: a saved AnimateDiffPipeline, or `base|motion_adapter`).
  With `character_reference_image`, AnimateDiff video-to-video starts every clip from that image (strength
  0.75), so the character keeps its look; otherwise text-to-video from action/character_id/style.
- Frame count: exactly round(duration × fps) frames, resampled from the native frames by linear blending
  (see `activities.media.video`), encoded as H.264 MP4 (yuv420p).

Sizes, frame counts and durations in the result are read back from the written file.
"""

from __future__ import annotations

import functools

from temporalio import activity

from activities.media.batch import ImageBatcher
from activities.media.clips import generate_clip
from activities.media.device import SpeedOptions
from activities.media.image import generate_image
from activities.media.tools import MediaTools, PhaseObserver, StepObserver
from activities.resources import WorkerResources
from activities.runtime import TaskActivities, run_task
from taskservice.contracts import TaskActivityInput, TaskAttemptResult
from taskservice.task_data import GenerateImageData, GenerateVideoData, RenderAnimationData


class MediaActivities(TaskActivities):
    """The three media activities, on the worker's fetcher and publisher and this process's model cache."""

    def __init__(
        self,
        resources: WorkerResources,
        *,
        step_observer: StepObserver | None = None,
        phase_observer: PhaseObserver | None = None,
    ) -> None:
        from activities.media.models import ModelCache  # no torch import: see media_models

        settings = resources.settings
        self._device = settings.torch_device
        self.models = ModelCache(
            device=settings.torch_device,
            max_gb=settings.model_cache_max_gb,
            options=SpeedOptions.from_settings(settings),
        )
        self.warm_models = self.models
        self.images = ImageBatcher(
            self.models, max_batch=settings.image_max_batch, window_s=settings.image_batch_window_ms / 1000
        )
        self._tools = MediaTools(
            settings,
            self.models,
            self.images,
            resources.fetcher,
            resources.publisher,
            step_observer,
            phase_observer,
        )

    def model_stats(self) -> dict[str, float]:
        return {
            **super().model_stats(),
            "compile_seconds": self.models.compile_seconds,
            "image_batches": self.images.batches,
            "image_batched_tasks": self.images.batched_tasks,
        }

    @activity.defn
    async def generate_image(self, task: TaskActivityInput) -> TaskAttemptResult:
        return await run_task(
            task, GenerateImageData, functools.partial(generate_image, self._tools, task), device=self._device
        )

    @activity.defn
    async def generate_video(self, task: TaskActivityInput) -> TaskAttemptResult:
        return await run_task(
            task, GenerateVideoData, functools.partial(generate_clip, self._tools, task), device=self._device
        )

    @activity.defn
    async def render_animation(self, task: TaskActivityInput) -> TaskAttemptResult:
        return await run_task(
            task,
            RenderAnimationData,
            functools.partial(generate_clip, self._tools, task),
            device=self._device,
        )
