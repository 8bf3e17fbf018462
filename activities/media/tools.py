"""What every diffusers task shares: input images, the per-step hook, the blocking run and its errors,
result publishing, and the small conversions of task_data (resolution, steps, seed, model setting)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from activities.io.fetch import IMAGE_TYPES, InputFetcher, decode_image
from activities.io.publish import MediaPublisher, PublishedMedia, ResultFile
from activities.media.previews import PreviewDecoders, PreviewKind, RenderPreviews
from activities.provenance import ProvenanceRecorder, Recipe
from activities.runtime import TaskProgress, permanent_error
from taskservice.contracts import TaskActivityInput
from taskservice.media_budget import budget_device, over_budget
from taskservice.netguard import redact_url
from taskservice.settings import Settings

if TYPE_CHECKING:
    from PIL.Image import Image

    from activities.media.batch import ImageBatcher
    from activities.media.models import ModelCache, PipelineKind

T = TypeVar("T")

# Progress bands of one task: inputs, waiting for the device, model load, denoising, encoding, upload.
P_WAITING, P_LOAD, P_DENOISE, P_ENCODE, P_UPLOAD = 0.03, 0.05, 0.15, 0.85, 0.95

_MODEL_ENV = {
    "text2image": "IMAGE_MODEL",
    "image2image": "IMAGE_REFERENCE_MODEL",
    "text2video": "VIDEO_MODEL",
    "video2video": "VIDEO_MODEL",
    "animation": "ANIMATION_MODEL",
    "animation_v2v": "ANIMATION_MODEL",
}


@dataclass(frozen=True)
class StepEvent:
    """One finished denoising step, for observers (tests, benchmarks) of the loop."""

    task_id: str
    step: int
    total: int
    stopping: bool
    at: float


StepObserver = Callable[[StepEvent], None]


@dataclass(frozen=True)
class PhaseEvent:
    """A piece of work outside the denoising loop done (frames decoded, frames encoded), for observers."""

    task_id: str
    phase: str  # "decoding", "encoding"
    done: int
    total: int
    at: float


PhaseObserver = Callable[[PhaseEvent], None]


class MediaTools:
    """The worker's model cache, fetcher and publisher, with the steps every media task takes through them."""

    def __init__(
        self,
        settings: Settings,
        models: ModelCache,
        images: ImageBatcher,
        fetcher: InputFetcher,
        publisher: MediaPublisher,
        step_observer: StepObserver | None,
        phase_observer: PhaseObserver | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.images = images
        self._fetcher = fetcher
        self._publisher = publisher
        self.storage = publisher.storage  # where renders keep their finished clips (activities.media.resume)
        self._step_observer = step_observer
        self.provenance = ProvenanceRecorder(settings)
        self._phase_observer = phase_observer
        self.previews = PreviewDecoders(settings, models)

    def model_id(self, kind: PipelineKind) -> str:
        """The model configured for this kind of pipeline; none: a ConfigurationError naming its setting."""
        env = _MODEL_ENV[kind]
        model_id: str | None = getattr(self.settings, env.lower())
        if kind == "image2image":
            model_id, env = model_id or self.settings.image_model, f"{env} (or IMAGE_MODEL)"
        if not model_id:
            message = f"no model configured: set {env} to a diffusers model id or local folder"
            raise permanent_error(message, "ConfigurationError")
        return model_id

    def check_budget(self, task_type: str, data: BaseModel) -> None:
        """The request within the budget of this worker's own device (MEDIA_BUDGET_DEVICE, `auto`: the device
        the models run on), checked before anything is fetched or loaded: the API checked it at submit, but
        with what it was told of the workers, and perhaps under another budget (a retried old task)."""
        on_gpu = self.models.device.startswith("cuda")
        device = budget_device(self.settings.media_budget_device, gpu_workers=on_gpu)
        over = over_budget(data, self.settings.budget_for(device))
        if over is not None:
            raise permanent_error(over.message(task_type, device), "InvalidInput")

    def previews_for(
        self, task: TaskActivityInput, progress: TaskProgress, kind: PreviewKind
    ) -> RenderPreviews | None:
        """The live previews of this attempt's render; None when its kind gets none (PREVIEW_DECODER)."""
        if not self.previews.enabled(kind):
            return None
        return RenderPreviews(self.previews, self.storage, task, progress, kind)

    def step_hook(
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

    def phase_hook(
        self, task_id: str, progress: TaskProgress, phase: str, band: tuple[float, float] | None = None
    ) -> Callable[[int, int], None]:
        """The callback of a chunked phase (`done` of `total` units): report `<phase> done/total` (moving
        progress across `band` when given), tell the observer; the caller looks for a cancel after it."""

        def on_chunk(done: int, total: int) -> None:
            value = 0.0 if band is None else band[0] + (band[1] - band[0]) * done / max(total, 1)
            progress.report(value, f"{phase} {done}/{total}")
            if self._phase_observer is not None:
                self._phase_observer(PhaseEvent(task_id, phase, done, total, time.perf_counter()))

        return on_chunk

    async def run_blocking(self, progress: TaskProgress, fn: Callable[..., Any], *args: Any) -> Any:
        """Run the heavy part in a thread; load failures → ConfigurationError; free memory on failure."""
        progress.cleanup_grace_s = self.settings.cancel_grace_s
        return await self.guarded(progress.run_blocking(fn, *args))

    async def guarded(self, work: Awaitable[T]) -> T:
        """Await the model work; load failures → ConfigurationError; free device memory on failure."""
        from activities.media.models import ModelLoadError, UnsupportedPipelineError

        try:
            return await work
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
            await asyncio.to_thread(self.models.release_device_memory, collect=False)
            raise

    async def fetch_images(
        self, urls: Sequence[str], progress: TaskProgress, hashes: dict[str, str] | None = None
    ) -> list[Image]:
        """The images at `urls`; `hashes` (if given) gets each URL's content SHA-256 (provenance)."""
        progress.report(0.01, "fetching_inputs")
        fetched = await asyncio.gather(*(self._fetcher.fetch(url, accept=IMAGE_TYPES) for url in urls))
        limit = self.settings.max_input_pixels
        if hashes is not None:
            hashes.update({f.url: hashlib.sha256(f.data).hexdigest() for f in fetched})
        return [
            await asyncio.to_thread(decode_image, f.data, f"input URL {redact_url(f.url)}", max_pixels=limit)
            for f in fetched
        ]

    async def provenance_of(self, recipe: Recipe, output: Path) -> dict[str, Any]:
        """The output's provenance record (hashing the file off the event loop)."""
        return await asyncio.to_thread(self.provenance.record, recipe, output)

    async def publish(
        self, task: TaskActivityInput, file: ResultFile, alt: str, progress: TaskProgress
    ) -> PublishedMedia:
        progress.report(P_UPLOAD, "uploading")
        on_stored = functools.partial(progress.report, 0.98, "registering_media")
        return await self._publisher.publish(task, file, alt=alt, on_stored=on_stored)


@dataclass
class DenoiseJob:
    """What every diffusers run needs: whose task, which model, what to draw, how big, how long, which noise,
    and where the file goes."""

    task_id: str
    model_id: str
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    seed: int
    path: Path


def media_result(
    published: PublishedMedia,
    *,
    model_id: str,
    seed: int,
    size: tuple[int, int],
    steps: int,
    conditioning: str,
    duration: float | None = None,
    fps: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The result of a media task; `size`, `duration` and `fps` as read back from the written file."""
    width, height = size
    return published.result(
        {
            "duration": duration,
            "resolution": f"{width}x{height}",
            "fps": fps,
            "file_size": published.stored.size,
            "generation_model": model_id,
            "seed": seed,
            "steps": steps,
            "width": width,
            "height": height,
            **extra,
            "conditioning": conditioning,
            "storage_key": published.stored.key,
        }
    )


def parse_resolution(resolution: str) -> tuple[int, int]:
    """`WxH` → (width, height), each rounded to the nearest multiple of 8 (the VAE's downsampling)."""
    width, height = (int(v) for v in resolution.lower().split("x", 1))
    return max(8, round(width / 8) * 8), max(8, round(height / 8) * 8)


class workdir:
    """A per-attempt temp folder, removed however the attempt ends (success, error, cancel)."""

    def __init__(self, task: TaskActivityInput) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"media-{task.task_id}-", ignore_cleanup_errors=True)

    def __enter__(self) -> Path:
        return Path(self._tmp.name)

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()
