"""The warm model cache of a media worker process.

Pipelines are loaded once per process with `from_pretrained(model_id_or_path)` and reused by every task; the
image-to-image and video-to-video variants are built with `from_pipe` from the loaded text-to-X pipeline,
so they share its weights instead of loading them again. The cache is bounded by MODEL_CACHE_MAX_GB:
after a load, least-recently-used pipelines are dropped until the resident total fits (a single pipeline
larger than the budget is still kept: the task needs it). Loads run under a per-model lock, so two tasks
asking for the same cold model wait for one load instead of doing two.

torch and diffusers are imported inside functions: importing this module (and
`activities.media.activities`) is cheap, and only a worker that runs a media task pays for torch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from activities.media.device import CompileClock, DeviceGate, SpeedOptions, place_pipeline
from activities.model_loads import note_model_load
from taskservice.tracing import span

log = logging.getLogger("taskservice.media")

PipelineKind = Literal["text2image", "image2image", "text2video", "video2video", "animation", "animation_v2v"]

# Video-to-video companions of text-to-video pipelines, built with `from_pipe` (same weights).
_VIDEO_TO_VIDEO = {
    "TextToVideoSDPipeline": "VideoToVideoSDPipeline",
    "AnimateDiffPipeline": "AnimateDiffVideoToVideoPipeline",
}
# ANIMATION_MODEL may name a full AnimateDiff pipeline, or `base|motion_adapter` to combine an SD-1.5
# checkpoint with a motion adapter at load time (how most AnimateDiff adapters are published).
ANIMATION_ADAPTER_SEPARATOR = "|"


class ModelLoadError(Exception):
    """`from_pretrained` could not load the configured model (missing path, unknown id, bad files)."""

    def __init__(self, kind: PipelineKind, model_id: str, cause: BaseException) -> None:
        super().__init__(f"cannot load {kind} model {model_id!r}: {type(cause).__name__}: {cause}")
        self.kind = kind
        self.model_id = model_id


class UnsupportedPipelineError(Exception):
    """The configured pipeline class has no video-to-video companion we know how to build."""


def resolve_device(setting: str) -> str:
    """`auto` → cuda when a GPU is visible, else cpu; anything else is taken as given (without importing
    torch: a task refused before its model loads must not cost the worker torch's memory)."""
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class _Entry:
    kind: PipelineKind
    model_id: str
    pipe: Any
    size_bytes: int
    parent: tuple[PipelineKind, str] | None
    last_used: float = field(default_factory=time.monotonic)


class ModelCache:
    """Pipelines of this process keyed by (kind, model id). All methods are thread-safe and blocking."""

    def __init__(self, *, device: str, max_gb: float, options: SpeedOptions | None = None) -> None:
        self._device_setting = device
        self._device: str | None = None
        self._max_bytes = int(max_gb * 2**30)
        self.options = options or SpeedOptions()
        self._entries: dict[tuple[PipelineKind, str], _Entry] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[PipelineKind, str], threading.Lock] = {}
        self.loads = 0  # how many from_pretrained/from_pipe builds this process did (tests check reuse)
        self.hits = 0  # requests answered by an already loaded pipeline
        self.evictions = 0  # pipelines dropped to fit MODEL_CACHE_MAX_GB
        self.load_seconds = 0.0  # time spent in those builds
        # Bumped when a load starts or ends and at each eviction; `loading`: loads under way (see WarmModels).
        self.generation = 0
        self.loading = 0
        # The device's one-call-at-a-time gate, and the compile time of TORCH_COMPILE.
        self.gate = DeviceGate()
        self.compile_clock = CompileClock(self.options.torch_compile)

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = resolve_device(self._device_setting)
        return self._device

    @property
    def dtype(self) -> Any:
        import torch

        # fp16 halves memory and doubles throughput on GPUs; CPUs lack fast fp16 kernels.
        return torch.float16 if self.device.startswith("cuda") else torch.float32

    def loaded_models(self) -> list[str]:
        with self._lock:
            return sorted({e.model_id for e in self._entries.values()})

    def resident_bytes(self) -> int:
        with self._lock:
            return sum(e.size_bytes for e in self._entries.values())

    @property
    def compile_seconds(self) -> float:
        return self.compile_clock.seconds

    # -- the pipelines tasks ask for ---------------------------------------------------------------

    def text_to_image(self, model_id: str) -> Any:
        def load() -> Any:
            return _diffusers().AutoPipelineForText2Image.from_pretrained(model_id, dtype=self.dtype)

        return self._get("text2image", model_id, load)

    def image_to_image(self, model_id: str, text_model_id: str | None) -> Any:
        """Img2img for `model_id`; shares the text-to-image pipeline's weights when it is the same model."""
        auto_img2img = _diffusers().AutoPipelineForImage2Image
        if text_model_id is None or text_model_id == model_id:
            base = self.text_to_image(model_id)
            return self._get(
                "image2image",
                model_id,
                lambda: auto_img2img.from_pipe(base),
                parent=("text2image", model_id),
            )
        return self._get(
            "image2image",
            model_id,
            lambda: auto_img2img.from_pretrained(model_id, dtype=self.dtype),
        )

    def text_to_video(self, model_id: str) -> Any:
        def load() -> Any:
            return _diffusers().DiffusionPipeline.from_pretrained(model_id, dtype=self.dtype)

        return self._get("text2video", model_id, load)

    def video_to_video(self, model_id: str) -> Any:
        """The video-to-video companion of the text-to-video pipeline (shared weights)."""
        base = self.text_to_video(model_id)
        return self._get(
            "video2video", model_id, lambda: _companion(base, self.dtype), parent=("text2video", model_id)
        )

    def animation(self, model_id: str) -> Any:
        def load() -> Any:
            diffusers = _diffusers()
            if ANIMATION_ADAPTER_SEPARATOR in model_id:
                base_id, adapter_id = (p.strip() for p in model_id.split(ANIMATION_ADAPTER_SEPARATOR, 1))
                adapter = diffusers.MotionAdapter.from_pretrained(adapter_id, dtype=self.dtype)
                return diffusers.AnimateDiffPipeline.from_pretrained(
                    base_id, motion_adapter=adapter, dtype=self.dtype
                )
            return diffusers.DiffusionPipeline.from_pretrained(model_id, dtype=self.dtype)

        return self._get("animation", model_id, load)

    def animation_from_video(self, model_id: str) -> Any:
        base = self.animation(model_id)
        return self._get(
            "animation_v2v", model_id, lambda: _companion(base, self.dtype), parent=("animation", model_id)
        )

    # -- cache mechanics ---------------------------------------------------------------------------

    def _get(
        self,
        kind: PipelineKind,
        model_id: str,
        load: Callable[[], Any],
        parent: tuple[PipelineKind, str] | None = None,
    ) -> Any:
        key = (kind, model_id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.last_used = time.monotonic()
                self.hits += 1
                return entry.pipe
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        cold = time.perf_counter()
        try:
            return self._get_cold(key, load_lock, load, parent)
        finally:
            note_model_load(time.perf_counter() - cold)

    def _get_cold(
        self,
        key: tuple[PipelineKind, str],
        load_lock: threading.Lock,
        load: Callable[[], Any],
        parent: tuple[PipelineKind, str] | None,
    ) -> Any:
        """Load the model, or wait for the task already loading it."""
        kind, model_id = key
        with load_lock:
            with self._lock:  # a concurrent task may have loaded it while we waited
                entry = self._entries.get(key)
                if entry is not None:
                    entry.last_used = time.monotonic()
                    return entry.pipe
                self.loading += 1
                self.generation += 1
            try:
                with span("media.model_load", model_kind=kind, model_id=model_id):
                    return self._load(key, load, parent)
            finally:
                with self._lock:
                    self.loading -= 1
                    self.generation += 1

    def _load(
        self, key: tuple[PipelineKind, str], load: Callable[[], Any], parent: tuple[PipelineKind, str] | None
    ) -> Any:
        kind, model_id = key
        started = time.perf_counter()
        hint = local_model_bytes(model_id) if parent is None else None
        if hint:
            # Make room before loading, so a GPU never holds the old and the new model at once.
            with self._lock:
                evicted_first = self._evict_over_budget(protected=_with_parent(key, parent), incoming=hint)
            if evicted_first:
                self.release_device_memory()
        try:
            pipe = load()
        except (OSError, ValueError, TypeError, KeyError) as err:
            # diffusers reports a missing/unknown model as OSError or ValueError; a wrong folder as
            # TypeError/KeyError: all mean "the configured model cannot be used".
            raise ModelLoadError(kind, model_id, err) from err
        if parent is None:
            # from_pipe companions share their parent's modules: already placed (and compiled).
            pipe = place_pipeline(pipe, self.device, self.options)
        pipe.set_progress_bar_config(disable=True)
        # from_pipe companions share every module with their parent: they cost no extra memory.
        size = 0 if parent is not None else pipeline_bytes(pipe)
        load_s = time.perf_counter() - started
        with self._lock:
            self._entries[key] = _Entry(kind, model_id, pipe, size, parent)
            self.loads += 1
            self.load_seconds += load_s
            evicted = self._evict_over_budget(protected=_with_parent(key, parent))
        log.info(
            "Loaded model",
            extra={
                "kind": kind,
                "model": model_id,
                "device": self.device,
                "size_mb": round(size / 2**20, 1),
                "load_s": round(load_s, 2),
                "evicted": [f"{k}:{m}" for k, m in evicted],
            },
        )
        if evicted:
            self.release_device_memory()
        return pipe

    def _evict_over_budget(
        self, protected: set[tuple[PipelineKind, str]], incoming: int = 0
    ) -> list[tuple[PipelineKind, str]]:
        """Drop LRU entries (with their from_pipe companions) until the total plus `incoming` fits.

        The caller holds `_lock`. A pipeline in use by a running task stays alive (the task holds a
        reference) and its memory returns when the task ends.
        """
        evicted: list[tuple[PipelineKind, str]] = []
        while sum(e.size_bytes for e in self._entries.values()) + incoming > self._max_bytes:
            candidates = [k for k, e in self._entries.items() if k not in protected and e.parent is None]
            if not candidates:
                break
            victim = min(candidates, key=lambda k: self._entries[k].last_used)
            for k in [victim, *[k for k, e in self._entries.items() if e.parent == victim]]:
                del self._entries[k]
                evicted.append(k)
            self.evictions += 1
            self.generation += 1
        return evicted

    def release_device_memory(self, *, collect: bool = True) -> None:
        """Return the CUDA caching allocator's free blocks to the driver (other processes share the GPU).

        `collect` first runs the garbage collector (after an eviction, pipelines can sit in reference
        cycles); it costs ~0.1-0.3 s, so the cancel path skips it: an interrupted run's tensors are freed by
        reference counting as soon as its frames unwind. Nothing to do on CPU, where freed tensors go
        straight back to the heap.
        """
        if self._device is None or not self._device.startswith("cuda"):
            return
        import torch

        if collect:
            import gc

            gc.collect()
        torch.cuda.empty_cache()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        self.release_device_memory()


def _with_parent(
    key: tuple[PipelineKind, str], parent: tuple[PipelineKind, str] | None
) -> set[tuple[PipelineKind, str]]:
    return {key} if parent is None else {key, parent}


def _diffusers() -> Any:
    """The diffusers module, typed Any: it ships no type information for its pipelines."""
    import diffusers
    import transformers

    quiet: Any = (diffusers.utils.logging, transformers.utils.logging)
    # Download/loading progress bars are console noise in a worker's structured logs.
    for logging_module in quiet:
        logging_module.disable_progress_bar()
    return diffusers


def _companion(pipe: Any, dtype: Any) -> Any:
    name = _VIDEO_TO_VIDEO.get(type(pipe).__name__)
    if name is None:
        raise UnsupportedPipelineError(
            f"{type(pipe).__name__} has no video-to-video companion; image conditioning is not supported"
        )
    # from_pipe casts the (shared!) modules to `dtype`, float32 when not given: always pass the cache's.
    return getattr(_diffusers(), name).from_pipe(pipe, dtype=dtype)


def pipeline_bytes(pipe: Any) -> int:
    """Bytes of the unique parameters and buffers of a pipeline's torch modules."""
    import torch

    seen: set[int] = set()
    total = 0
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in [*component.parameters(), *component.buffers()]:
            ptr = tensor.data_ptr()
            if ptr in seen:
                continue
            seen.add(ptr)
            total += tensor.numel() * tensor.element_size()
    return total


def local_model_bytes(model_id: str) -> int | None:
    """On-disk size of a local model folder's weights (None for a hub id); a cheap hint for capacity."""
    path = Path(model_id)
    if not path.is_dir():
        return None
    return sum(p.stat().st_size for p in path.rglob("*") if p.suffix in (".safetensors", ".bin"))
