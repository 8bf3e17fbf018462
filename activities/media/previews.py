"""Live previews of a render in progress (issue 29).

While a task denoises, its step callback offers the current latents to the task's `RenderPreviews`; at most
every PREVIEW_INTERVAL_S one offer is taken: the latents (shrunk to what a 256 px image needs) are decoded
on the denoising thread by the preview decoder (PREVIEW_DECODER `tiny`: an AutoencoderTiny of the model's
latent space, PREVIEW_MODEL_IMAGE / PREVIEW_MODEL_VIDEO; `vae`: the pipeline's own VAE) into a small image
(a video's first, middle and last frames side by side), and the WebP encoding and the upload run on the
event loop, off the denoising thread. An offer made while the previous preview is still being stored is
skipped, so previews never queue up behind a slow store. The stored preview (beside the task's media,
overwritten each time) goes out in the attempt's heartbeat (`TaskPreview`: /status, the streams) and, for a
task that asked for `preview` webhooks, to its workflow. A preview that fails is logged and skipped: it
never fails the render. With PREVIEW_DECODER=off nothing here runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from activities.io.storage import MediaStorage, media_key
from activities.runtime import TaskProgress, announce_preview
from taskservice.contracts import TaskActivityInput
from taskservice.previews import PREVIEW_CONTENT_TYPE, PREVIEW_EXT, PREVIEW_MAX_SIDE, TaskPreview
from taskservice.settings import Settings
from taskservice.timefmt import now_z

if TYPE_CHECKING:
    from PIL.Image import Image

    from activities.media.models import ModelCache

log = logging.getLogger("taskservice.media")

PreviewKind = Literal["image", "video"]
# Frames of a video preview: first, middle and last, side by side.
VIDEO_PREVIEW_FRAMES = 3
WEBP_QUALITY = 70


class PreviewDecoders:
    """The process's preview decoders: tiny autoencoders loaded once each with `from_pretrained`."""

    def __init__(self, settings: Settings, models: ModelCache) -> None:
        self.mode = settings.preview_decoder
        self.interval_s = settings.preview_interval_s
        self._model_ids: dict[PreviewKind, str | None] = {
            "image": settings.preview_model_image,
            "video": settings.preview_model_video,
        }
        self._models = models
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()
        # Previews decoded by this process, and the time their decodes took on the denoising threads.
        self.decoded = 0
        self.decode_seconds = 0.0

    def enabled(self, kind: PreviewKind) -> bool:
        """Whether renders of this kind get previews (`tiny` needs its model configured)."""
        if self.mode == "off":
            return False
        return self.mode == "vae" or self._model_ids[kind] is not None

    def decoder(self, kind: PreviewKind, pipe: Any) -> Any:
        """Blocking: the decoder of this kind's previews (loaded on first use) or the pipeline's VAE."""
        model_id = self._model_ids[kind]
        if self.mode == "vae" or model_id is None:
            return pipe.vae
        with self._lock:
            if model_id not in self._loaded:
                from diffusers import AutoencoderTiny

                started = time.perf_counter()
                decoder = AutoencoderTiny.from_pretrained(  # type: ignore[no-untyped-call]
                    model_id, torch_dtype=self._models.dtype
                )
                self._loaded[model_id] = decoder.to(self._models.device).eval()
                seconds = round(time.perf_counter() - started, 3)
                log.info("Loaded preview decoder", extra={"model": model_id, "load_s": seconds})
            return self._loaded[model_id]

    def count(self, seconds: float) -> None:
        with self._lock:
            self.decoded += 1
            self.decode_seconds += seconds


class RenderPreviews:
    """One task attempt's previews: throttled, decoded on the denoising thread, stored off it."""

    def __init__(
        self,
        decoders: PreviewDecoders,
        storage: MediaStorage,
        task: TaskActivityInput,
        progress: TaskProgress,
        kind: PreviewKind,
    ) -> None:
        self._decoders = decoders
        self._storage = storage
        self._task = task
        self._progress = progress
        self._kind = kind
        self._loop = asyncio.get_running_loop()
        # The activity's context (its client, logger, trace): the store runs as a task of the loop in it.
        self._context = contextvars.copy_context()
        self._stores: set[asyncio.Task[None]] = set()
        self._key = media_key(task.project_id, task.task_type, task.output_name, PREVIEW_EXT)
        self._next_at: float | None = None  # the first offer starts the clock
        self._storing = threading.Event()
        self.enabled = decoders.enabled(kind)

    def offer(self, latents: Any, pipe: Any) -> None:
        """Blocking, on the denoising thread: the current latents of this task (batch of one; video latents
        (1, C, F, h, w)); decoded and handed to the loop if a preview is due."""
        now = time.monotonic()
        if not self.enabled or self._storing.is_set():
            return
        if self._next_at is None:
            self._next_at = now + self._decoders.interval_s
        if now < self._next_at:
            return
        self._next_at = now + self._decoders.interval_s
        try:
            image = preview_image(self._decoders.decoder(self._kind, pipe), latents)
        except Exception as err:  # noqa: BLE001 - a preview never fails its render
            self.enabled = False
            failure = {"task_id": self._task.task_id, "error": f"{type(err).__name__}: {err}"}
            log.warning("Preview failed; no more previews of this render", extra=failure)
            return
        finally:
            self._decoders.count(time.monotonic() - now)
        self._storing.set()
        try:
            self._loop.call_soon_threadsafe(self._start_store, image)
        except RuntimeError:  # the loop is closed: the attempt has ended
            self._storing.clear()

    def _start_store(self, image: Image) -> None:
        store = self._loop.create_task(self._store(image), context=self._context.copy())
        self._stores.add(store)
        store.add_done_callback(self._stores.discard)

    async def _store(self, image: Image) -> None:
        try:
            data = await asyncio.to_thread(_webp_bytes, image)
            await self._storage.put_bytes(self._key, data, PREVIEW_CONTENT_TYPE)
            preview = TaskPreview(url=self._storage.url_for(self._key), at=now_z())
            self._progress.show_preview(preview)
            if self._task.preview_updates:
                await announce_preview(preview)
        except Exception as err:  # noqa: BLE001 - a preview never fails its render
            failure = {"task_id": self._task.task_id, "error": f"{type(err).__name__}: {err}"}
            log.warning("Preview not stored", extra=failure)
        finally:
            self._storing.clear()


def preview_image(decoder: Any, latents: Any) -> Image:
    """Blocking: latents of one image (1, C, h, w) or one video (1, C, F, h, w) → an RGB image at most
    PREVIEW_MAX_SIDE px on its long side (a video's first, middle and last frames side by side)."""
    import numpy as np
    import torch
    from PIL import Image as PILImage

    with torch.inference_mode():
        if latents.ndim == 5:
            count = latents.shape[2]
            picks = sorted({0, count // 2, count - 1})[:VIDEO_PREVIEW_FRAMES]
            flat = latents[0, :, picks].permute(1, 0, 2, 3)
        else:
            flat = latents[:1]
        flat = _shrink(flat, _upscale(decoder), PREVIEW_MAX_SIDE // flat.shape[0])
        flat = flat.to(device=decoder.device, dtype=decoder.dtype)
        images = decoder.decode(flat / decoder.config.scaling_factor).sample.float()
        pixels = ((images / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    image = PILImage.fromarray(np.concatenate(list(pixels.numpy()), axis=1))
    image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    return image


def _upscale(decoder: Any) -> int:
    """How many pixels one latent spans on each side, for this decoder (AutoencoderTiny or AutoencoderKL)."""
    config = decoder.config
    if hasattr(config, "decoder_block_out_channels"):
        return int(config.upsampling_scaling_factor ** (len(config.decoder_block_out_channels) - 1))
    return int(2 ** (len(config.block_out_channels) - 1))


def _shrink(latents: Any, upscale: int, side: int) -> Any:
    """Latents averaged down so that their decode is at most twice `side` px on its long side (a preview
    is small: decoding more would only cost time)."""
    import torch

    height, width = latents.shape[-2:]
    limit = max(1, (2 * side) // upscale)
    if max(height, width) <= limit:
        return latents
    scale = limit / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return torch.nn.functional.interpolate(latents.float(), size=size, mode="area").to(latents.dtype)


def _webp_bytes(image: Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=WEBP_QUALITY)
    return out.getvalue()
