"""Visual media task types on diffusers: generate_image (gpu_medium), generate_video and render_animation
(gpu_heavy).

Models are configuration (IMAGE_MODEL, IMAGE_REFERENCE_MODEL, VIDEO_MODEL, ANIMATION_MODEL: hub ids or
local folders, loaded with `from_pretrained`), held warm by the process's `ModelCache`. The denoising loop
reports `denoising i/N` after every step and stops after the current step when the task is cancelled or
reaches its soft time limit.

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
  (see `activities.media_video`), encoded as H.264 MP4 (yuv420p).

Sizes, frame counts and durations in the result are read back from the written file.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel
from temporalio import activity

from activities.fetch import InputFetcher, decode_image
from activities.payload_cms import PayloadCMS
from activities.runtime import TaskInterrupted, TaskProgress, parse_task_data, permanent_error, run_task
from activities.storage import MediaStorage, build_storage, media_key
from taskservice.contracts import TaskActivityInput
from taskservice.netguard import redact_url
from taskservice.settings import Settings
from taskservice.task_data import GenerateImageData, GenerateVideoData, RenderAnimationData

if TYPE_CHECKING:
    from PIL.Image import Image

    from activities.media_models import ModelCache
    from activities.media_video import Frames

log = logging.getLogger("taskservice.media")


# Denoising steps per quality level (real checkpoints); a `num_inference_steps` key in task_data overrides.
QUALITY_STEPS = {"draft": 4, "standard": 20, "high": 30, "ultra": 50}
VIDEO_DEFAULT_QUALITY = "standard"
MAX_STEPS = 150
# img2img / video-to-video strengths: how far from the conditioning image the result may move.
REFERENCE_STRENGTH = 0.65
STYLE_GUIDE_STRENGTH = 0.85
STORYBOARD_STRENGTH = 0.75
CONTINUATION_STRENGTH = 0.8
CHARACTER_REFERENCE_STRENGTH = 0.75
# Native clip shape of ModelScope text-to-video and AnimateDiff (trained on 16 frames at ~8 fps).
NATIVE_FPS = 8
NATIVE_CLIP_FRAMES = 16
MIN_CLIP_FRAMES = 4
IMAGE_ACCEPT = ("image/",)
# Progress bands of one task: inputs, model load, denoising, encoding, upload.
P_LOAD, P_DENOISE, P_ENCODE, P_UPLOAD = 0.05, 0.15, 0.85, 0.95


@dataclass(frozen=True)
class StepEvent:
    """One finished denoising step, for observers (tests, benchmarks) of the loop."""

    task_id: str
    step: int
    total: int
    stopping: bool
    at: float


StepObserver = Callable[[StepEvent], None]


@dataclass
class _ImageJob:
    task_id: str
    model_id: str
    text_model_id: str | None
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    seed: int
    init_image: Image | None
    strength: float
    path: Path


@dataclass
class _ClipJob:
    task_id: str
    kind: Literal["video", "animation"]
    model_id: str
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    seed: int
    clips: Sequence[int]  # frames of each clip, summing to the native frame count
    keyframes: list[Image]  # one per clip, or empty
    keyframe_strength: float
    fps: int
    target_frames: int
    path: Path


@dataclass
class _ClipResult:
    clips: int
    native_frames: int
    steps: int


class MediaActivities:
    """The three media activities, with their HTTP client, storage, CMS client and model cache."""

    def __init__(
        self,
        settings: Settings,
        *,
        storage: MediaStorage | None = None,
        step_observer: StepObserver | None = None,
    ) -> None:
        from activities.media_models import ModelCache  # no torch import: see media_models

        self._settings = settings
        self._client = httpx.AsyncClient(follow_redirects=False)
        self._fetcher = InputFetcher(settings, self._client)
        self._storage = storage if storage is not None else build_storage(settings)
        self._cms = PayloadCMS(settings, self._client)
        self._models: ModelCache = ModelCache(
            device=settings.torch_device, max_gb=settings.model_cache_max_gb
        )
        self._step_observer = step_observer

    @property
    def models(self) -> ModelCache:
        return self._models

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [self.generate_image, self.generate_video, self.render_animation]

    def cache_stats(self) -> dict[str, int]:
        return {"hits": self._models.hits, "misses": self._models.loads}

    def loaded_models(self) -> list[str]:
        return self._models.loaded_models()

    async def aclose(self) -> None:
        await self._client.aclose()
        await asyncio.to_thread(self._models.clear)

    # -- activities --------------------------------------------------------------------------------

    @activity.defn(name="generate_image")
    async def generate_image(self, task: TaskActivityInput) -> dict[str, Any]:
        data = parse_task_data(GenerateImageData, task)
        return await run_task(task, lambda progress: self._generate_image(task, data, progress))

    @activity.defn(name="generate_video")
    async def generate_video(self, task: TaskActivityInput) -> dict[str, Any]:
        data = parse_task_data(GenerateVideoData, task)
        return await run_task(task, lambda progress: self._generate_video(task, data, progress))

    @activity.defn(name="render_animation")
    async def render_animation(self, task: TaskActivityInput) -> dict[str, Any]:
        data = parse_task_data(RenderAnimationData, task)
        return await run_task(task, lambda progress: self._render_animation(task, data, progress))

    # -- generate_image ----------------------------------------------------------------------------

    async def _generate_image(
        self, task: TaskActivityInput, data: GenerateImageData, progress: TaskProgress
    ) -> dict[str, Any]:
        settings = self._settings
        conditioned = bool(data.reference_images or data.style_guide)
        if conditioned:
            model_id = _required(
                settings.image_reference_model or settings.image_model,
                "IMAGE_REFERENCE_MODEL (or IMAGE_MODEL)",
            )
        else:
            model_id = _required(settings.image_model, "IMAGE_MODEL")
        width, height = parse_resolution(data.resolution)
        steps = requested_steps(data, data.quality)
        seed = data.seed if data.seed is not None else secrets.randbelow(2**32)
        progress.report(0.01, "fetching_inputs")
        urls = [*data.reference_images, *([data.style_guide] if data.style_guide else [])]
        images = await self._fetch_images(urls)
        init_image = images[0] if images else None
        strength = REFERENCE_STRENGTH if data.reference_images else STYLE_GUIDE_STRENGTH
        if init_image is not None:
            # img2img runs int(steps × strength) steps: make sure that is at least one.
            steps = max(steps, math.ceil(1 / strength))
        with _workdir(task) as workdir:
            job = _ImageJob(
                task_id=task.task_id,
                model_id=model_id,
                text_model_id=settings.image_model,
                prompt=compose_image_prompt(data),
                negative_prompt=data.negative_prompt,
                width=width,
                height=height,
                steps=steps,
                seed=seed,
                init_image=init_image,
                strength=strength,
                path=workdir / "image.png",
            )
            ran_steps = await self._run_blocking(progress, self._render_image, job, progress)
            width_out, height_out = await asyncio.to_thread(_image_size, job.path)
            stored, media_id = await self._publish(task, job.path, "png", "image/png", job.prompt, progress)
        conditioning = "reference_image" if data.reference_images else "style_guide" if images else "text"
        return _result(
            stored.url,
            media_id,
            {
                "duration": None,
                "resolution": f"{width_out}x{height_out}",
                "fps": None,
                "file_size": stored.size,
                "generation_model": model_id,
                "seed": seed,
                "steps": ran_steps,
                "width": width_out,
                "height": height_out,
                "format": "png",
                "conditioning": conditioning,
                "storage_key": stored.key,
            },
        )

    def _render_image(self, job: _ImageJob, progress: TaskProgress) -> int:
        """Blocking: load (or reuse) the pipeline, denoise, save the PNG; returns the steps run."""
        import torch

        from activities.media_models import call_instance, run_denoising

        progress.report(P_LOAD, "loading_model")
        if job.init_image is not None:
            cached = self._models.image_to_image(job.model_id, job.text_model_id)
            total = int(job.steps * job.strength)
        else:
            cached = self._models.text_to_image(job.model_id)
            total = job.steps
        progress.raise_if_stopped()
        pipe = call_instance(cached)
        kwargs: dict[str, Any] = {
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "num_inference_steps": job.steps,
            "generator": torch.Generator("cpu").manual_seed(job.seed),
            "output_type": "pil",
        }
        if job.init_image is not None:
            kwargs["image"] = job.init_image.resize((job.width, job.height))
            kwargs["strength"] = job.strength
        else:
            kwargs["height"], kwargs["width"] = job.height, job.width
        on_step = self._step_hook(job.task_id, progress, total=total, offset=0, span=total, suffix="")
        output = run_denoising(pipe, on_step, **kwargs)
        if output is None:
            raise TaskInterrupted(progress.stop_reason)
        progress.report(P_ENCODE, "saving_image")
        output.images[0].save(job.path, format="PNG")
        return total

    # -- generate_video / render_animation ---------------------------------------------------------

    async def _generate_video(
        self, task: TaskActivityInput, data: GenerateVideoData, progress: TaskProgress
    ) -> dict[str, Any]:
        model_id = _required(self._settings.video_model, "VIDEO_MODEL")
        progress.report(0.01, "fetching_inputs")
        keyframes = await self._fetch_images(data.storyboard_images)
        return await self._clip_task(
            task,
            progress,
            kind="video",
            model_id=model_id,
            prompt=compose_video_prompt(data),
            data=data,
            conditioning_images=keyframes,
            strength=STORYBOARD_STRENGTH,
        )

    async def _render_animation(
        self, task: TaskActivityInput, data: RenderAnimationData, progress: TaskProgress
    ) -> dict[str, Any]:
        model_id = _required(self._settings.animation_model, "ANIMATION_MODEL")
        progress.report(0.01, "fetching_inputs")
        urls = [data.character_reference_image] if data.character_reference_image else []
        reference = await self._fetch_images(urls)
        return await self._clip_task(
            task,
            progress,
            kind="animation",
            model_id=model_id,
            prompt=compose_animation_prompt(data),
            data=data,
            conditioning_images=reference,
            strength=CHARACTER_REFERENCE_STRENGTH,
        )

    async def _clip_task(
        self,
        task: TaskActivityInput,
        progress: TaskProgress,
        *,
        kind: Literal["video", "animation"],
        model_id: str,
        prompt: str,
        data: GenerateVideoData | RenderAnimationData,
        conditioning_images: list[Image],
        strength: float,
    ) -> dict[str, Any]:
        width, height = parse_resolution(data.resolution)
        quality = (data.model_extra or {}).get("quality", VIDEO_DEFAULT_QUALITY)
        steps = requested_steps(data, quality if quality in QUALITY_STEPS else VIDEO_DEFAULT_QUALITY)
        seed = data.seed if data.seed is not None else secrets.randbelow(2**32)
        native_frames = max(2, math.ceil(data.duration * NATIVE_FPS))
        target_frames = max(1, round(data.duration * data.fps))
        if kind == "animation":
            # One reference image conditions every clip of the animation.
            clips = _plan_clips(native_frames, 0)
            keyframes = conditioning_images[:1] * len(clips)
        else:
            clips = _plan_clips(native_frames, len(conditioning_images))
            keyframes = _spread(conditioning_images, len(clips))
        if keyframes:
            steps = max(steps, math.ceil(1 / min(strength, CONTINUATION_STRENGTH)))
        with _workdir(task) as workdir:
            job = _ClipJob(
                task_id=task.task_id,
                kind=kind,
                model_id=model_id,
                prompt=prompt,
                negative_prompt=data.negative_prompt,
                width=width,
                height=height,
                steps=steps,
                seed=seed,
                clips=clips,
                keyframes=keyframes,
                keyframe_strength=strength,
                fps=data.fps,
                target_frames=target_frames,
                path=workdir / "video.mp4",
            )
            rendered = await self._run_blocking(progress, self._render_clip, job, progress)
            from activities.media_video import probe_video

            info = await asyncio.to_thread(probe_video, job.path)
            stored, media_id = await self._publish(task, job.path, "mp4", "video/mp4", prompt, progress)
        conditioning = (
            ("character_reference" if kind == "animation" else "storyboard")
            if conditioning_images
            else "text"
        )
        return _result(
            stored.url,
            media_id,
            {
                "duration": info.duration,
                "resolution": f"{info.width}x{info.height}",
                "fps": info.fps,
                "file_size": stored.size,
                "generation_model": model_id,
                "seed": seed,
                "steps": rendered.steps,
                "width": info.width,
                "height": info.height,
                "frame_count": info.frame_count,
                "format": "mp4",
                "codec": info.codec,
                "native_fps": NATIVE_FPS,
                "native_frames": rendered.native_frames,
                "clips": rendered.clips,
                "conditioning": conditioning,
                "storage_key": stored.key,
            },
        )

    def _render_clip(self, job: _ClipJob, progress: TaskProgress) -> _ClipResult:
        """Blocking: generate the native frames clip by clip, resample to fps, encode the MP4."""
        import numpy as np
        import torch
        from PIL import Image as PILImage

        from activities.media_models import UnsupportedPipelineError, call_instance, run_denoising
        from activities.media_video import encode_mp4, resample_frames, to_uint8_frames

        progress.report(P_LOAD, "loading_model")
        models = self._models
        if job.kind == "video":
            text_pipe = models.text_to_video(job.model_id)
            companion: Callable[[], Any] = lambda: models.video_to_video(job.model_id)  # noqa: E731
        else:
            text_pipe = models.animation(job.model_id)
            companion = lambda: models.animation_from_video(job.model_id)  # noqa: E731
        image_pipe: Any = None
        try:
            image_pipe = companion()
        except UnsupportedPipelineError:
            if job.keyframes:
                raise
            # Only clip-to-clip continuity needs it: fall back to independent clips.
        progress.raise_if_stopped()

        plans: list[tuple[int, float | None]] = []  # (frames, strength or None for text-to-video)
        for index, frames in enumerate(job.clips):
            if job.keyframes:
                plans.append((frames, job.keyframe_strength))
            elif index > 0 and image_pipe is not None:
                plans.append((frames, CONTINUATION_STRENGTH))
            else:
                plans.append((frames, None))
        per_clip = [job.steps if s is None else int(job.steps * s) for _, s in plans]
        total = sum(per_clip)
        done = 0
        rendered: list[Frames] = []
        for index, (frames, strength) in enumerate(plans):
            suffix = f" (clip {index + 1}/{len(plans)})" if len(plans) > 1 else ""
            on_step = self._step_hook(job.task_id, progress, total=per_clip[index], offset=done, span=total,
                                      suffix=suffix)  # fmt: skip
            kwargs: dict[str, Any] = {
                "prompt": job.prompt,
                "negative_prompt": job.negative_prompt,
                "num_inference_steps": job.steps,
                # A distinct, reproducible noise per clip.
                "generator": torch.Generator("cpu").manual_seed((job.seed + index) % 2**32),
                "output_type": "np",
            }
            if strength is None:
                pipe = call_instance(text_pipe)
                kwargs.update(num_frames=frames, height=job.height, width=job.width)
            else:
                pipe = call_instance(image_pipe)
                if job.keyframes:
                    still = job.keyframes[index].resize((job.width, job.height))
                else:
                    still = PILImage.fromarray(rendered[-1][-1])
                kwargs.update(video=[still] * frames, strength=strength)
                if job.kind == "animation":
                    kwargs.update(height=job.height, width=job.width)
            output = run_denoising(pipe, on_step, **kwargs)
            if output is None:
                raise TaskInterrupted(progress.stop_reason)
            rendered.append(to_uint8_frames(output.frames[0]))
            done += per_clip[index]
        native = np.concatenate(rendered)
        progress.report(P_ENCODE, "encoding_video")
        frames_out = resample_frames(native, job.target_frames)

        def on_frame(written: int, count: int) -> None:
            progress.report(P_ENCODE + (P_UPLOAD - P_ENCODE) * written / count, "encoding_video")

        encode_mp4(frames_out, job.path, job.fps, should_stop=lambda: progress.should_stop, on_frame=on_frame)
        return _ClipResult(clips=len(plans), native_frames=int(native.shape[0]), steps=total)

    # -- shared steps ------------------------------------------------------------------------------

    def _step_hook(
        self, task_id: str, progress: TaskProgress, *, total: int, offset: int, span: int, suffix: str
    ) -> Callable[[int], bool]:
        """The per-step callback: report `denoising i/N`, and answer whether the run must stop now."""
        span = max(span, 1)

        def on_step(step: int) -> bool:
            done = offset + min(step + 1, max(total, 1))
            stopping = progress.should_stop
            progress.report(
                P_DENOISE + (P_ENCODE - P_DENOISE) * done / span, f"denoising {done}/{span}{suffix}"
            )
            if self._step_observer is not None:
                self._step_observer(StepEvent(task_id, done, span, stopping, time.perf_counter()))
            return stopping

        return on_step

    async def _run_blocking(self, progress: TaskProgress, fn: Callable[..., Any], *args: Any) -> Any:
        """Run the heavy part in a thread; load failures → ConfigurationError; free memory on failure."""
        from activities.media_models import ModelLoadError, UnsupportedPipelineError

        try:
            return await progress.run_blocking(fn, *args)
        except ModelLoadError as err:
            raise permanent_error(
                f"{_MODEL_ENV[err.kind]}={err.model_id!r} cannot be loaded: {err.__cause__}",
                "ConfigurationError",
            ) from None
        except UnsupportedPipelineError as err:
            raise permanent_error(f"VIDEO_MODEL/ANIMATION_MODEL: {err}", "ConfigurationError") from None
        except BaseException:
            # Cancelled, soft timeout or a crash: the thread has returned (run_blocking waited for it);
            # hand cached-allocator memory back so the next task starts clean.
            # cudaFree may wait for other tasks' kernels: keep it off the event loop.
            await asyncio.to_thread(self._models.release_device_memory, collect=False)
            raise

    async def _fetch_images(self, urls: Sequence[str]) -> list[Image]:
        fetched = await asyncio.gather(*(self._fetcher.fetch(url, accept=IMAGE_ACCEPT) for url in urls))
        return [
            await asyncio.to_thread(decode_image, f.data, f"input URL {redact_url(f.url)}") for f in fetched
        ]

    async def _publish(
        self,
        task: TaskActivityInput,
        path: Path,
        ext: str,
        content_type: str,
        alt: str,
        progress: TaskProgress,
    ) -> tuple[Any, str | None]:
        progress.report(P_UPLOAD, "uploading")
        key = media_key(task.project_id, task.task_type, task.task_id, ext)
        stored = await self._storage.put_file(key, path, content_type)
        progress.report(0.98, "registering_media")
        media_id = await self._cms.register_media(
            path, filename=f"{task.task_id}.{ext}", content_type=content_type, alt=alt
        )
        log.info(
            "Media stored",
            extra={
                "task_id": task.task_id,
                "project_id": task.project_id,
                "task_type": task.task_type,
                "key": stored.key,
                "size": stored.size,
                "payload_media_id": media_id,
            },
        )
        return stored, media_id


_MODEL_ENV = {
    "text2image": "IMAGE_MODEL",
    "image2image": "IMAGE_REFERENCE_MODEL",
    "text2video": "VIDEO_MODEL",
    "video2video": "VIDEO_MODEL",
    "animation": "ANIMATION_MODEL",
    "animation_v2v": "ANIMATION_MODEL",
}


def build(settings: Settings) -> MediaActivities:
    return MediaActivities(settings)


# -- pure helpers ---------------------------------------------------------------------------------


def _required(value: str | None, env: str) -> str:
    if not value:
        raise permanent_error(
            f"no model configured: set {env} to a diffusers model id or local folder", "ConfigurationError"
        )
    return value


def parse_resolution(resolution: str) -> tuple[int, int]:
    """`WxH` → (width, height), each rounded to the nearest multiple of 8 (the VAE's downsampling)."""
    width, height = (int(v) for v in resolution.lower().split("x", 1))
    return max(8, round(width / 8) * 8), max(8, round(height / 8) * 8)


def requested_steps(data: BaseModel, quality: str) -> int:
    """Steps for `quality`, unless task_data carries an explicit `num_inference_steps` (1..150)."""
    override = (data.model_extra or {}).get("num_inference_steps")
    if override is not None:
        if not isinstance(override, int) or isinstance(override, bool) or not 1 <= override <= MAX_STEPS:
            raise permanent_error(f"num_inference_steps must be an integer 1-{MAX_STEPS}", "InvalidInput")
        return override
    return QUALITY_STEPS[quality]


def compose_image_prompt(data: GenerateImageData) -> str:
    parts = [data.prompt.strip()]
    if data.character_id:
        parts.append(f"character {data.character_id}")
    if data.pose:
        parts.append(f"pose: {data.pose}")
    if data.lighting:
        parts.append(f"lighting: {data.lighting}")
    return ", ".join(parts)


def compose_video_prompt(data: GenerateVideoData) -> str:
    parts = [data.scene_description.strip()]
    if data.camera_angle:
        parts.append(f"camera: {data.camera_angle}")
    if data.lighting:
        parts.append(f"lighting: {data.lighting}")
    for position in data.character_positions:
        words = [position.character_id]
        if position.position:
            words.append(f"at {position.position}")
        if position.action:
            words.append(position.action)
        parts.append(" ".join(words))
    return ", ".join(parts)


def compose_animation_prompt(data: RenderAnimationData) -> str:
    parts = [f"{data.character_id} {data.action.strip()}" if data.character_id else data.action.strip()]
    if data.style:
        parts.append(f"{data.style} style")
    return ", ".join(parts)


def _plan_clips(native_frames: int, keyframes: int) -> Sequence[int]:
    """Clip lengths: at most the native clip length; one clip per storyboard keyframe when frames allow."""
    from activities.media_video import split_clips

    needed = math.ceil(native_frames / NATIVE_CLIP_FRAMES)
    wanted = max(needed, min(keyframes, native_frames // MIN_CLIP_FRAMES))
    return split_clips(native_frames, math.ceil(native_frames / max(wanted, 1)))


def _spread(images: list[Image], clips: int) -> list[Image]:
    """One keyframe per clip, taken evenly from the storyboard in order."""
    if not images:
        return []
    return [images[i * len(images) // clips] for i in range(clips)]


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image as PILImage

    with PILImage.open(path) as image:
        image.verify()  # a truncated or corrupt PNG fails here, not in a client's browser
    with PILImage.open(path) as image:
        width, height = image.size
    return int(width), int(height)


def _result(url: str, media_id: str | None, metadata: dict[str, Any]) -> dict[str, Any]:
    return {"media_url": url, "payload_media_id": media_id, "metadata": metadata}


class _workdir:
    """A per-attempt temp folder, removed however the attempt ends (success, error, cancel)."""

    def __init__(self, task: TaskActivityInput) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"media-{task.task_id}-", ignore_cleanup_errors=True)

    def __enter__(self) -> Path:
        return Path(self._tmp.name)

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()
