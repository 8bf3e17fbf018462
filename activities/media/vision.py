"""Image captioning on transformers: seed 004's run_image_to_text_inference (gpu_medium).

The model is configuration (CAPTION_MODEL: a hub id or local folder), loaded once per worker process with
`AutoModelForImageTextToText.from_pretrained` and its `AutoProcessor`, and kept warm. transformers 5 dropped
the `image-to-text` pipeline; its successor `image-text-to-text` insists on a text prompt, so the model runs
as processor + `generate` directly: captions with or without a prompt, and a per-token hook. That hook
(a `StoppingCriteria`) reports `generating i/N` and ends generation after the current token when the task is
cancelled or reaches its soft time limit. Decoding is greedy, so a retried task gets the same caption.

Models whose processor bundles image processor and tokenizer (BLIP, BLIP-2, GIT, ...) get the prompt through
the processor; VisionEncoderDecoder checkpoints (ViT-GPT2 captioners ship an image processor and a tokenizer
but no processor class) get it as the decoder's first tokens. Either way the caption continues the prompt,
and `text` is the whole caption, prompt included, as these models write it.

The image comes from `image_url` (fetched through the worker's `InputFetcher`, SSRF rules of all media
inputs) or from `image_base64`; its width and height in the result are read from the decoded input
(EXIF-rotated, as shown).
The caption model has its own warm slot: it is not counted in MODEL_CACHE_MAX_GB (captioners are small).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.io.fetch import IMAGE_TYPES, decode_image
from activities.model_loads import note_model_load
from activities.resources import WorkerResources
from activities.runtime import TaskActivities, TaskInterrupted, TaskProgress, permanent_error, run_task
from taskservice.contracts import TaskActivityInput, TaskAttemptResult
from taskservice.netguard import redact_url
from taskservice.task_data import RunImageToTextInferenceData

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger("taskservice.vision")

# Progress bands: input, model load, generation, decoding.
P_LOAD, P_GENERATE, P_DECODE = 0.05, 0.15, 0.95


class CaptionModelError(Exception):
    """CAPTION_MODEL cannot be loaded, or is not a captioning model (no image processor or tokenizer)."""

    def __init__(self, model_id: str, cause: BaseException | str) -> None:
        reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"CAPTION_MODEL={model_id!r} cannot be used for captioning: {reason}")


@dataclass
class CaptionModel:
    """One loaded captioner: the model and what turns an image (and prompt) into its inputs."""

    model_id: str
    model: Any
    processor: Any | None  # a ProcessorMixin (image processor + tokenizer), when the checkpoint has one
    image_processor: Any
    tokenizer: Any
    device: str
    # Fast tokenizers are not re-entrant (concurrent calls raise "Already borrowed"): one caller at a time.
    lock: threading.Lock

    def inputs(self, image: Image, prompt: str | None) -> dict[str, Any]:
        """Model inputs on the model's device; pixel values in the model's dtype."""
        import torch

        with self.lock:
            if self.processor is not None:
                encoded = dict(self.processor(images=image, text=prompt, return_tensors="pt"))
            else:
                encoded = dict(self.image_processor(images=image, return_tensors="pt"))
                if prompt:
                    start = self.model.config.decoder_start_token_id
                    ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
                    encoded["decoder_input_ids"] = torch.tensor([[start, *ids]])
        return {
            name: value.to(self.device, dtype=self.model.dtype)
            if torch.is_floating_point(value)
            else value.to(self.device)
            for name, value in encoded.items()
        }

    def decode(self, ids: Any) -> str:
        with self.lock:
            return str(self.tokenizer.decode(ids, skip_special_tokens=True)).strip()

    def max_new_tokens(self, requested: int, prefix: int) -> int:
        """`requested`, cut to what the text decoder's position table leaves after a `prefix`-token prompt."""
        text_config = self.model.config.get_text_config(decoder=True)
        positions = getattr(text_config, "max_position_embeddings", None)
        if not isinstance(positions, int):
            return requested
        if prefix >= positions:
            raise permanent_error(
                f"prompt is {prefix} tokens; {self.model_id} reads at most {positions - 1}", "InvalidInput"
            )
        return min(requested, positions - prefix)


class CaptionModels:
    """The caption models of this process, loaded on first use. Thread-safe and blocking."""

    def __init__(self, *, device: str) -> None:
        self._device_setting = device
        self._device: str | None = None
        self._models: dict[str, CaptionModel] = {}
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self.loads = 0
        self.hits = 0
        self.load_seconds = 0.0
        self.evictions = 0  # never: every caption model asked for stays loaded
        self.generation = 0
        self.loading = 0

    @property
    def device(self) -> str:
        if self._device is None:
            from activities.media.models import resolve_device

            self._device = resolve_device(self._device_setting)
        return self._device

    def get(self, model_id: str) -> CaptionModel:
        with self._lock:
            if model_id in self._models:
                self.hits += 1
                return self._models[model_id]
        cold = time.perf_counter()
        try:
            return self._get_cold(model_id)
        finally:
            note_model_load(time.perf_counter() - cold)

    def _get_cold(self, model_id: str) -> CaptionModel:
        with self._load_lock:  # two tasks asking for a cold model wait for one load
            with self._lock:
                if model_id in self._models:
                    return self._models[model_id]
                self.loading += 1
                self.generation += 1
            started = time.perf_counter()
            try:
                loaded = self._load(model_id)
            finally:
                with self._lock:
                    self.loading -= 1
                    self.generation += 1
            load_s = time.perf_counter() - started
            with self._lock:
                self._models[model_id] = loaded
                self.loads += 1
                self.load_seconds += load_s
        log.info(
            "Loaded model",
            extra={"kind": "caption", "model": model_id, "device": self.device, "load_s": round(load_s, 2)},
        )
        return loaded

    def _load(self, model_id: str) -> CaptionModel:
        import torch

        transformers = _transformers()
        # fp16 halves memory and doubles throughput on GPUs; CPUs lack fast fp16 kernels.
        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        try:
            model = transformers.AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype)
            processor: Any = transformers.AutoProcessor.from_pretrained(model_id)
            if isinstance(processor, transformers.ProcessorMixin):
                image_processor = getattr(processor, "image_processor", None)
                tokenizer = getattr(processor, "tokenizer", None)
            else:  # VisionEncoderDecoder checkpoints: an image processor and a tokenizer, no processor class
                processor = None
                image_processor = transformers.AutoImageProcessor.from_pretrained(model_id)
                tokenizer = transformers.AutoTokenizer.from_pretrained(model_id)
        except (OSError, ValueError, TypeError, KeyError) as err:
            # A missing folder or unknown id is an OSError; a model of another kind a ValueError.
            raise CaptionModelError(model_id, err) from err
        if image_processor is None or tokenizer is None:
            raise CaptionModelError(model_id, "its processor lacks an image processor or a tokenizer")
        return CaptionModel(
            model_id=model_id,
            model=model.to(self.device).eval(),
            processor=processor,
            image_processor=image_processor,
            tokenizer=tokenizer,
            device=self.device,
            lock=threading.Lock(),
        )

    def loaded_models(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def resident_bytes(self) -> int:
        with self._lock:
            models = [m.model for m in self._models.values()]
        return sum(p.numel() * p.element_size() for model in models for p in model.parameters())

    def release_device_memory(self) -> None:
        """Hand the CUDA caching allocator's free blocks back (the GPU is shared with other workers)."""
        if self._device is None or not self._device.startswith("cuda"):
            return
        import torch

        torch.cuda.empty_cache()

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
        self.release_device_memory()


@dataclass
class _Caption:
    text: str
    generated_tokens: int
    max_new_tokens: int


class VisionActivities(TaskActivities):
    """The captioning activity, on the worker's input fetcher and this process's caption models."""

    def __init__(self, resources: WorkerResources) -> None:
        self._settings = resources.settings
        self._fetcher = resources.fetcher
        self.models = CaptionModels(device=resources.settings.torch_device)
        self.warm_models = self.models

    @activity.defn
    async def run_image_to_text_inference(self, task: TaskActivityInput) -> TaskAttemptResult:
        caption = functools.partial(self._caption_task, task)
        device = self._settings.torch_device
        return await run_task(task, RunImageToTextInferenceData, caption, device=device)

    async def _caption_task(
        self, task: TaskActivityInput, data: RunImageToTextInferenceData, progress: TaskProgress
    ) -> dict[str, Any]:
        model_id = self._settings.caption_model
        if not model_id:
            raise permanent_error(
                "no model configured: set CAPTION_MODEL to a transformers image captioning model id or "
                "local folder",
                "ConfigurationError",
            )
        progress.report(0.01, "fetching_input")
        if data.image_url is not None:
            fetched = await self._fetcher.fetch(data.image_url, accept=IMAGE_TYPES)
            raw, source = fetched.data, f"input URL {redact_url(data.image_url)}"
        else:
            raw, source = base64.b64decode(data.image_base64 or ""), "image_base64"
        image = await asyncio.to_thread(
            decode_image, raw, source, max_pixels=self._settings.max_input_pixels, upright=True
        )
        progress.raise_if_stopped()
        try:
            caption = await progress.run_blocking(
                self._caption, model_id, image, data.prompt, data.max_new_tokens, progress
            )
        except CaptionModelError as err:
            raise permanent_error(str(err), "ConfigurationError") from None
        except BaseException:
            await asyncio.to_thread(self.models.release_device_memory)
            raise
        log.info(
            "Caption generated",
            extra={"task_id": task.task_id, "project_id": task.project_id, "task_type": task.task_type,
                   "model": model_id, "generated_tokens": caption.generated_tokens},
        )  # fmt: skip
        return {
            "text": caption.text,
            "prompt": data.prompt,
            "model": model_id,
            "image_width": image.width,
            "image_height": image.height,
            "image_source": "url" if data.image_url is not None else "base64",
            "generated_tokens": caption.generated_tokens,
            "max_new_tokens": caption.max_new_tokens,
        }

    def _caption(
        self, model_id: str, image: Image, prompt: str | None, requested: int, progress: TaskProgress
    ) -> _Caption:
        """Blocking: load (or reuse) the model, generate greedily with a per-token hook, decode."""
        import torch

        progress.report(P_LOAD, "loading_model")
        captioner = self.models.get(model_id)
        progress.raise_if_stopped()
        try:
            inputs = captioner.inputs(image, prompt or None)
        except (ValueError, TypeError, KeyError) as err:
            raise CaptionModelError(model_id, err) from err
        prefix = inputs.get("input_ids", inputs.get("decoder_input_ids"))
        limit = captioner.max_new_tokens(requested, 0 if prefix is None else int(prefix.shape[-1]))
        steps = [0]

        def on_token() -> bool:
            steps[0] += 1
            done = min(steps[0], limit)
            progress.report(P_GENERATE + (P_DECODE - P_GENERATE) * done / limit, f"generating {done}/{limit}")
            return progress.should_stop

        with torch.inference_mode():
            output = captioner.model.generate(
                **inputs,
                max_new_tokens=limit,
                do_sample=False,
                num_beams=1,
                stopping_criteria=_stopping_criteria(on_token),
            )
        if progress.should_stop:
            raise TaskInterrupted(progress.stop_reason)
        progress.report(P_DECODE, "decoding")
        return _Caption(text=captioner.decode(output[0]), generated_tokens=steps[0], max_new_tokens=limit)


def _transformers() -> Any:
    """The transformers module, typed Any (its Auto* loaders are untyped); loading progress bars off."""
    import transformers

    quiet: Any = transformers.utils.logging
    quiet.disable_progress_bar()  # console noise in a worker's structured logs
    return transformers


def _stopping_criteria(on_token: Callable[[], bool]) -> Any:
    """A `StoppingCriteriaList` calling `on_token()` after every generated token; True ends generation."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _EachToken(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            stop = on_token()
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_EachToken()])
