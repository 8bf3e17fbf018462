"""The device side of a media worker: one pipeline call at a time on its device, how a call is driven step
by step, and the speed options.

One denoising call at a time per process (`DeviceGate`): a batch of image tasks, or one video's clips. A
task holds the gate while it denoises and decodes and releases it before encoding its file and uploading it,
so the next call runs on the device while the previous one's PNG/MP4 is written and stored. Two calls at
once on one GPU would only interleave their kernels and double the activations in memory.

Speed options are configuration (`SpeedOptions`, from Settings), applied once when a pipeline is loaded
(placement, channels-last, attention, torch.compile) or before each call (VAE slicing and tiling, by the
size of what that call decodes). What each one costs is in the README.

torch and diffusers are imported inside functions, as everywhere in the media modules.
"""

from __future__ import annotations

import copy
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Literal

from activities.runtime import TaskInterrupted
from taskservice.settings import Settings

log = logging.getLogger("taskservice.media")

# How often a task waiting for the device checks whether it was cancelled.
GATE_POLL_S = 0.05


@dataclass(frozen=True)
class SpeedOptions:
    """TORCH_COMPILE, CHANNELS_LAST, ATTENTION_BACKEND, VAE_SLICING_ABOVE, VAE_TILING_ABOVE_PIXELS and
    MODEL_CPU_OFFLOAD."""

    torch_compile: bool = False
    channels_last: bool = False
    attention_backend: Literal["sdpa", "classic"] = "sdpa"
    vae_slicing_above: int = 8
    vae_tiling_above_pixels: int = 1024 * 1024
    model_cpu_offload: Literal["off", "model", "sequential"] = "off"

    @classmethod
    def from_settings(cls, settings: Settings) -> SpeedOptions:
        """The settings of the same names."""
        return cls(**{option.name: getattr(settings, option.name) for option in fields(cls)})


class DeviceGate:
    """One pipeline call at a time on this process's device. Waiting for it is cancellable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextmanager
    def hold(
        self, should_stop: Callable[[], bool], on_wait: Callable[[], None] | None = None
    ) -> Iterator[None]:
        """Blocking: hold the device for the block; TaskInterrupted if `should_stop()` while waiting."""
        if not self._lock.acquire(blocking=False):
            if on_wait is not None:
                on_wait()
            while not self._lock.acquire(timeout=GATE_POLL_S):
                if should_stop():
                    raise TaskInterrupted("stopped while waiting for the device")
        try:
            yield
        finally:
            self._lock.release()


def denoiser(pipe: Any) -> Any:
    """The pipeline's denoising network: a UNet, or a transformer in newer pipelines."""
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def place_pipeline(pipe: Any, device: str, options: SpeedOptions) -> Any:
    """Put a freshly loaded pipeline on `device` as the options say; returns the pipeline to cache."""
    import torch

    if options.model_cpu_offload != "off" and device.startswith("cuda"):
        # Weights stay in CPU memory; accelerate's hooks move each model (or layer) in when it runs.
        if options.model_cpu_offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_sequential_cpu_offload(device=device)
    else:
        if options.model_cpu_offload != "off":
            log.warning("MODEL_CPU_OFFLOAD needs a GPU; ignored", extra={"device": device})
        pipe = pipe.to(device)
    network = denoiser(pipe)
    if network is None:
        return pipe
    if options.channels_last:
        network.to(memory_format=torch.channels_last)
    if options.attention_backend == "classic" and hasattr(network, "set_attn_processor"):
        from diffusers.models.attention_processor import AttnProcessor

        network.set_attn_processor(AttnProcessor())
    if options.torch_compile:
        # Regional compilation (the repeated transformer blocks) compiles in a fraction of the time of the
        # whole network for nearly the same speed-up; networks that declare no repeated block compile whole.
        if getattr(network, "_repeated_blocks", None):
            network.compile_repeated_blocks()
        else:
            network.compile()
    return pipe


def prepare_call(pipe: Any, options: SpeedOptions, *, images: int, width: int, height: int) -> None:
    """Turn VAE slicing/tiling on or off for a call decoding `images` images (or frames) of this size.

    The VAE is shared by every pipeline built from the same weights: the caller holds the DeviceGate, so no
    other call of this process is decoding with it meanwhile.
    """
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return
    if hasattr(vae, "enable_slicing"):
        if images > options.vae_slicing_above:
            vae.enable_slicing()
        else:
            vae.disable_slicing()
    if hasattr(vae, "enable_tiling"):
        if width * height > options.vae_tiling_above_pixels:
            vae.enable_tiling()
        else:
            vae.disable_tiling()


class CompileClock:
    """With TORCH_COMPILE, the first call of a pipeline at a new shape compiles its denoiser: time it.

    The time from the call's start to the end of its first denoising step is taken as the compile time
    (one step and the prompt encoding are a rounding error against it). Thread-safe.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.seconds = 0.0
        self._seen: set[tuple[int, tuple[int, ...]]] = set()
        self._lock = threading.Lock()

    def watch(
        self, pipe: Any, shape: tuple[int, ...], on_step: Callable[[int], bool]
    ) -> Callable[[int], bool]:
        """`on_step`, timing the first step when this (denoiser, shape) was not compiled yet."""
        network = denoiser(pipe)
        key = (id(network), shape)
        with self._lock:
            if not self.enabled or network is None or key in self._seen:
                return on_step
            self._seen.add(key)
        started = time.perf_counter()
        timed = False

        def timed_step(step: int) -> bool:
            nonlocal timed
            if not timed:
                timed = True
                seconds = time.perf_counter() - started
                with self._lock:
                    self.seconds += seconds
                log.info("Compiled denoiser", extra={"shape": list(shape), "compile_s": round(seconds, 2)})
            return on_step(step)

        return timed_step


def call_instance(pipe: Any) -> Any:
    """A per-call view of a cached pipeline: same modules, its own scheduler and interrupt flag.

    Schedulers keep per-run state (`set_timesteps`) and `_interrupt` lives on the pipeline object, so
    concurrent tasks on one cached pipeline must not share either.
    """
    # A shallow copy shares the modules (no cast, no re-registration: ~free) but has its own __dict__,
    # so `_interrupt`, `_guidance_scale`, `_num_timesteps` and the scheduler below are per call.
    instance = copy.copy(pipe)
    instance.scheduler = copy.deepcopy(pipe.scheduler)
    instance.set_progress_bar_config(disable=True)
    return instance


class DenoiseInterrupted(Exception):
    """Raised from a step callback to leave the pipeline call at once (no decode of unfinished latents)."""


def run_denoising(
    pipe: Any,
    on_step: Callable[[int], bool],
    *,
    tensors_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    on_latents: Callable[[Any], None] | None = None,
    **call_kwargs: Any,
) -> Any | None:
    """Call `pipe(**call_kwargs)`, invoking `on_step(step_index)` after every denoising step.

    When `on_step` returns True the run stops right after that step and None is returned. Pipelines with
    `callback_on_step_end` get `pipe._interrupt = True` (diffusers' own stop flag), and we then raise out of
    the callback as well: left to itself the pipeline would still VAE-decode the half-denoised latents,
    which for a video clip costs seconds of GPU time nobody will look at. Older pipelines
    (TextToVideoSDPipeline) only have `callback`, from which we raise the same way. `tensors_hook` (for
    `callback_on_step_end` pipelines) gets every tensor the pipeline lets a callback replace, after
    `on_step`, and returns them, changed or not. `on_latents` (live previews) gets the latents after every
    step that goes on.
    """
    parameters = inspect.signature(pipe.__call__).parameters

    def on_step_end(p: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if on_step(step):
            p._interrupt = True
            raise DenoiseInterrupted
        tensors = tensors if tensors_hook is None else tensors_hook(tensors)
        if on_latents is not None and "latents" in tensors:
            on_latents(tensors["latents"])
        return tensors

    def legacy_callback(step: int, timestep: Any, latents: Any) -> None:
        if on_step(step):
            raise DenoiseInterrupted
        if on_latents is not None:
            on_latents(latents)

    try:
        if "callback_on_step_end" in parameters:
            if tensors_hook is not None or on_latents is not None:
                call_kwargs["callback_on_step_end_tensor_inputs"] = list(pipe._callback_tensor_inputs)
            return pipe(**call_kwargs, callback_on_step_end=on_step_end)
        return pipe(**call_kwargs, callback=legacy_callback, callback_steps=1)
    except DenoiseInterrupted:
        return None
