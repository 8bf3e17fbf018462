"""generate_video and render_animation: clips of a text-to-video or AnimateDiff pipeline, resampled to the
requested frame rate and encoded as H.264 MP4 (see `activities.media.activities` for how inputs condition
them)."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.io.publish import ResultFile
from activities.media.previews import RenderPreviews
from activities.media.prompts import compose_animation_prompt, compose_video_prompt
from activities.media.resume import ClipStore
from activities.media.tools import (
    P_ENCODE,
    P_LOAD,
    P_UPLOAD,
    P_WAITING,
    DenoiseJob,
    MediaTools,
    media_result,
    parse_resolution,
    workdir,
)
from activities.provenance import Recipe
from activities.runtime import TaskInterrupted, TaskProgress
from taskservice.contracts import TaskActivityInput
from taskservice.media_budget import NATIVE_FPS
from taskservice.task_data import GenerateVideoData, RenderAnimationData
from taskservice.tracing import span

if TYPE_CHECKING:
    from PIL.Image import Image

    from activities.media.video import Frames

# Video-to-video strengths: how far a clip may move from the image it starts from.
STORYBOARD_STRENGTH = 0.75
CONTINUATION_STRENGTH = 0.8
CHARACTER_REFERENCE_STRENGTH = 0.75
# Native clip length of ModelScope text-to-video and AnimateDiff (trained on 16 frames at ~8 fps, NATIVE_FPS).
NATIVE_CLIP_FRAMES = 16
MIN_CLIP_FRAMES = 4

ClipKind = Literal["video", "animation"]


@dataclass
class _ClipJob(DenoiseJob):
    kind: ClipKind
    clips: Sequence[int]  # frames of each clip, summing to the native frame count
    keyframes: list[Image]  # one per clip, or empty
    keyframe_strength: float
    fps: int
    target_frames: int
    previews: RenderPreviews | None = None


@dataclass
class _ClipResult:
    clips: int
    native_frames: int
    # Denoising steps each clip ran: the quality's count, fewer for a clip continued by video-to-video.
    steps_per_clip: list[int]


@dataclass(frozen=True)
class _ClipRequest:
    """What sets a video apart from an animation: model, prompt, conditioning images and their pull."""

    kind: ClipKind
    model_id: str
    prompt: str
    image_urls: list[str]
    strength: float
    conditioning: str  # the result's name for image conditioning


def _clip_request(tools: MediaTools, data: GenerateVideoData | RenderAnimationData) -> _ClipRequest:
    if isinstance(data, GenerateVideoData):
        model_id = tools.model_id("text2video")
        prompt, urls = compose_video_prompt(data), list(data.storyboard_images)
        return _ClipRequest("video", model_id, prompt, urls, STORYBOARD_STRENGTH, "storyboard")
    model_id = tools.model_id("animation")
    urls = [data.character_reference_image] if data.character_reference_image else []
    return _ClipRequest(
        "animation",
        model_id,
        compose_animation_prompt(data),
        urls,
        CHARACTER_REFERENCE_STRENGTH,
        "character_reference",
    )


async def generate_clip(
    tools: MediaTools,
    task: TaskActivityInput,
    data: GenerateVideoData | RenderAnimationData,
    progress: TaskProgress,
) -> dict[str, Any]:
    """Both clip task types: fetch the conditioning images, render, read the file back, publish."""
    from activities.media.video import probe_video

    tools.check_budget(task.task_type, data)
    request = _clip_request(tools, data)
    hashes: dict[str, str] = {}
    images = await tools.fetch_images(request.image_urls, progress, hashes)
    with workdir(task) as folder:
        job = _plan_job(task, data, request, images, folder / "video.mp4")
        job.previews = tools.previews_for(task, progress, "video")
        store = await ClipStore.open(
            tools.storage, task, folder, progress, seed=job.seed, clips=len(job.clips)
        )
        job.seed = store.seed  # a resumed render keeps the seed it started with
        store.on_kept = tools.phase_hook(task.task_id, progress, "kept_clip")
        try:
            rendered = await tools.run_blocking(progress, _render_clip, tools, job, store, progress)
            info = await asyncio.to_thread(probe_video, job.path)
            recipe = Recipe(
                job.model_id, [job.seed], job.steps, (info.width, info.height), tools.models.device, hashes
            )
            provenance = await tools.provenance_of(recipe, job.path)
            published = await tools.publish(
                task, ResultFile(job.path, "mp4", "video/mp4"), request.prompt, progress
            )
        except (asyncio.CancelledError, ApplicationError) as err:
            if _ends_the_task(err):
                await store.discard()  # no retry will resume it
            raise
        await store.discard()
    return media_result(
        published,
        model_id=job.model_id,
        seed=job.seed,
        size=(info.width, info.height),
        # `steps` is per clip, as the quality table promises it; the total over clips beside it.
        steps=job.steps,
        conditioning=request.conditioning if images else "text",
        duration=info.duration,
        fps=info.fps,
        frame_count=info.frame_count,
        format="mp4",
        codec=info.codec,
        native_fps=NATIVE_FPS,
        native_frames=rendered.native_frames,
        provenance=provenance,
        clips=rendered.clips,
        steps_per_clip=rendered.steps_per_clip,
        steps_total=sum(rendered.steps_per_clip),
        resumed=store.resumed(),
    )


def _plan_job(
    task: TaskActivityInput,
    data: GenerateVideoData | RenderAnimationData,
    request: _ClipRequest,
    images: list[Image],
    path: Path,
) -> _ClipJob:
    """Clip lengths, one keyframe per clip (if any), steps and seed of the run."""
    width, height = parse_resolution(data.resolution)
    steps = data.denoising_steps()
    native_frames = max(2, math.ceil(data.duration * NATIVE_FPS))
    if request.kind == "animation":
        # One reference image conditions every clip of the animation.
        clips = _plan_clips(native_frames, 0)
        keyframes = images[:1] * len(clips)
    else:
        clips = _plan_clips(native_frames, len(images))
        keyframes = _spread(images, len(clips))
    if keyframes:
        steps = max(steps, math.ceil(1 / min(request.strength, CONTINUATION_STRENGTH)))
    return _ClipJob(
        task_id=task.task_id,
        kind=request.kind,
        model_id=request.model_id,
        prompt=request.prompt,
        negative_prompt=data.negative_prompt,
        width=width,
        height=height,
        steps=steps,
        seed=data.run_seed(),
        clips=clips,
        keyframes=keyframes,
        keyframe_strength=request.strength,
        fps=data.fps,
        target_frames=max(1, round(data.duration * data.fps)),
        path=path,
    )


def _render_clip(tools: MediaTools, job: _ClipJob, store: ClipStore, progress: TaskProgress) -> _ClipResult:
    """Blocking: generate the native frames clip by clip (holding the device), then resample them to fps
    and encode the MP4 (the device free for the next task meanwhile)."""
    from activities.media.video import encode_mp4, resampled_chunks

    native, per_clip = _denoise_clips(tools, job, store, progress)
    progress.report(P_ENCODE, "encoding_video")
    on_frame = tools.phase_hook(job.task_id, progress, "encoding_video", (P_ENCODE, P_UPLOAD))

    with span("media.encode", format="mp4", frames=job.target_frames):
        encode_mp4(
            resampled_chunks(native, job.target_frames),
            job.path,
            job.fps,
            frame_count=job.target_frames,
            should_stop=lambda: progress.should_stop,
            on_frame=on_frame,
        )
    return _ClipResult(clips=len(job.clips), native_frames=int(native.shape[0]), steps_per_clip=per_clip)


def _denoise_clips(
    tools: MediaTools, job: _ClipJob, store: ClipStore, progress: TaskProgress
) -> tuple[Frames, list[int]]:
    """Blocking, holding the device: every clip's native frames (those an earlier attempt kept, then the
    rest, each kept as it finishes), and the steps each clip ran."""
    import numpy as np

    from activities.media.device import prepare_call
    from activities.media.video import decode_latent_frames

    decode = functools.partial(
        decode_latent_frames,
        chunk_s=tools.settings.cancel_check_s,
        should_stop=lambda: progress.should_stop,
        on_chunk=tools.phase_hook(job.task_id, progress, "decoding_video"),
    )

    def waiting() -> None:
        progress.report(P_WAITING, "waiting_for_device")

    with tools.models.gate.hold(lambda: progress.should_stop, on_wait=waiting):
        progress.report(P_LOAD, "loading_model")
        text_pipe, image_pipe = _pipelines(tools, job)
        progress.raise_if_stopped()
        strengths: list[float | None] = []  # per clip; None for text-to-video
        for index in range(len(job.clips)):
            if job.keyframes:
                strengths.append(job.keyframe_strength)
            elif index > 0 and image_pipe is not None:
                strengths.append(CONTINUATION_STRENGTH)
            else:
                strengths.append(None)
        per_clip = [job.steps if s is None else int(job.steps * s) for s in strengths]
        rendered: list[Frames] = store.finished()
        for index, (frames, strength) in enumerate(zip(job.clips, strengths, strict=True)):
            if index < len(rendered):
                continue
            suffix = f" (clip {index + 1}/{len(job.clips)})" if len(job.clips) > 1 else ""
            offset, span = sum(per_clip[:index]), sum(per_clip)
            on_step = tools.step_hook(job.task_id, progress, total=per_clip[index], offset=offset, span=span,
                                      suffix=suffix)  # fmt: skip
            pipe = text_pipe if strength is None else image_pipe
            prepare_call(pipe, tools.models.options, images=frames, width=job.width, height=job.height)
            on_step = tools.models.compile_clock.watch(pipe, (frames, job.height, job.width), on_step)
            rendered.append(
                _denoise_clip(job, pipe, index, frames, strength, rendered, on_step, decode, progress)
            )
            if len(job.clips) > 1:
                store.keep(index, rendered[-1])
    return np.concatenate(rendered), per_clip


def _pipelines(tools: MediaTools, job: _ClipJob) -> tuple[Any, Any]:
    """The text-to-clip pipeline and its video-to-video companion (None where it has none and no
    keyframe needs one: only clip-to-clip continuity is lost, clips are then independent)."""
    from activities.media.models import UnsupportedPipelineError

    models = tools.models
    if job.kind == "video":
        text_pipe = models.text_to_video(job.model_id)
        companion: Callable[[], Any] = lambda: models.video_to_video(job.model_id)  # noqa: E731
    else:
        text_pipe = models.animation(job.model_id)
        companion = lambda: models.animation_from_video(job.model_id)  # noqa: E731
    try:
        return text_pipe, companion()
    except UnsupportedPipelineError:
        if job.keyframes:
            raise
        return text_pipe, None


def _denoise_clip(
    job: _ClipJob,
    pipe: Any,
    index: int,
    frames: int,
    strength: float | None,
    rendered: list[Frames],
    on_step: Callable[[int], bool],
    decode: Callable[[Any, Any], Frames],
    progress: TaskProgress,
) -> Frames:
    """One clip's native frames: text-to-video, or video-to-video from its keyframe (or the previous
    clip's last frame) held still."""
    import torch
    from PIL import Image as PILImage

    from activities.media.device import call_instance, run_denoising

    kwargs: dict[str, Any] = {
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
        "num_inference_steps": job.steps,
        # A distinct, reproducible noise per clip.
        "generator": torch.Generator("cpu").manual_seed((job.seed + index) % 2**32),
        # Decoded here, frames at a time, so that a cancel need not wait for the whole clip's decode.
        "output_type": "latent",
    }
    if strength is None:
        kwargs.update(num_frames=frames, height=job.height, width=job.width)
    else:
        if job.keyframes:
            still = job.keyframes[index].resize((job.width, job.height))
        else:
            still = PILImage.fromarray(rendered[-1][-1])
        kwargs.update(video=[still] * frames, strength=strength)
        if job.kind == "animation":
            kwargs.update(height=job.height, width=job.width)
    previews = job.previews
    on_latents = None if previews is None else functools.partial(_offer, previews, pipe)
    with span("media.denoise", steps=job.steps, clip=index + 1, frames=frames):
        output = run_denoising(call_instance(pipe), on_step, on_latents=on_latents, **kwargs)
    if output is None:
        raise TaskInterrupted(progress.stop_reason)
    with span("media.decode", clip=index + 1, frames=frames):
        return decode(pipe.vae, output.frames)


def _offer(previews: RenderPreviews, pipe: Any, latents: Any) -> None:
    previews.offer(latents, pipe)


def _ends_the_task(err: BaseException) -> bool:
    """Whether no attempt follows this one: the task was cancelled (not a soft limit's or a worker shutdown's
    cancellation: those are retried), or it failed for good."""
    if isinstance(err, ApplicationError):
        return err.non_retryable
    details = activity.cancellation_details()
    return details is not None and details.cancel_requested


def _plan_clips(native_frames: int, keyframes: int) -> Sequence[int]:
    """Clip lengths: at most the native clip length; one clip per storyboard keyframe when frames allow."""
    from activities.media.video import split_clips

    needed = math.ceil(native_frames / NATIVE_CLIP_FRAMES)
    wanted = max(needed, min(keyframes, native_frames // MIN_CLIP_FRAMES))
    return split_clips(native_frames, math.ceil(native_frames / max(wanted, 1)))


def _spread(images: list[Image], clips: int) -> list[Image]:
    """One keyframe per clip, taken evenly from the storyboard in order."""
    if not images:
        return []
    return [images[i * len(images) // clips] for i in range(clips)]
