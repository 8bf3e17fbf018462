"""Micro-batching of image tasks: same-shape tasks that arrive together run as one pipeline call.

Tasks that share a pipeline (kind and model), resolution, step count and strength, and arrive within
IMAGE_BATCH_WINDOW_MS of the first, join one batch of at most IMAGE_MAX_BATCH; a batch keeps taking tasks
until it gets the device (`DeviceGate`), so tasks that arrive while another call runs wait for the next one
together. The call gets one prompt, negative prompt and `torch.Generator` per task, so each task's seed
draws the same noise it would draw alone and its image matches its unbatched twin to float rounding.

Each task reports its own `denoising i/N`. A task cancelled (or past its soft time limit) while in a batch
leaves it at the next step: its rows are cut from the latents, the prompt embeddings and the scheduler's
state (`_BatchRows`), and its activity ends while the others go on. Pipelines whose loop keeps batch-sized
tensors we do not know of finish its sample instead and throw it away. When the batched call fails, its
tasks run again one by one, so one bad task (or a batch too big for the GPU) cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from activities.media.device import prepare_call
from activities.media.tools import P_LOAD, P_WAITING
from activities.runtime import CLEANUP_GRACE_S, TaskInterrupted, TaskProgress
from taskservice.tracing import Context, current_context, spans_in

if TYPE_CHECKING:
    from PIL.Image import Image

    from activities.media.models import ModelCache

log = logging.getLogger("taskservice.media")

# Pipelines whose denoising loop holds no batch-sized tensor besides the step callback's inputs and the
# scheduler's state: a stopped task's rows can be cut out mid-loop (others: its sample is discarded).
_ROW_CUTTABLE = {
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionXLPipeline",
    "StableDiffusionXLImg2ImgPipeline",
}


@dataclass(frozen=True)
class BatchKey:
    """What tasks must share to be denoised together."""

    kind: Literal["text2image", "image2image"]
    model_id: str
    text_model_id: str | None  # img2img built from this text-to-image model's weights (see ModelCache)
    width: int
    height: int
    steps: int
    strength: float | None  # img2img only


@dataclass
class ImageRequest:
    """One task's part of a batch: its prompt, noise, init image, and where its progress goes."""

    task_id: str
    prompt: str
    negative_prompt: str | None
    seed: int
    init_image: Image | None
    progress: TaskProgress
    on_step: Callable[[int], bool]  # reports `denoising i/N`; True when the task must stop
    # Live previews (`RenderPreviews.offer`): the task's row of the latents after a step, and the pipeline.
    on_latents: Callable[[Any, Any], None] | None = None


@dataclass(frozen=True)
class RenderedImage:
    image: Image
    steps: int  # denoising steps run
    batch_size: int  # tasks in the pipeline call that produced it


@dataclass
class _Member:
    request: ImageRequest
    result: concurrent.futures.Future[RenderedImage] = field(default_factory=concurrent.futures.Future)
    # The task's trace context (its activity's span), for its span of the batched call.
    trace_context: Context = field(default_factory=current_context)

    @property
    def stopping(self) -> bool:
        return self.request.progress.should_stop

    def settle(self, value: RenderedImage | BaseException) -> None:
        """Hand the task its image or its error; only the first settlement counts."""
        if self.result.done():
            return
        if isinstance(value, BaseException):
            self.result.set_exception(value)
        else:
            self.result.set_result(value)


@dataclass
class _Batch:
    key: BatchKey
    deadline: float
    members: list[_Member] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)  # full, or nobody left to wait for


class ImageBatcher:
    """Forms batches of image requests and runs each as one call on the process's device."""

    def __init__(self, models: ModelCache, *, max_batch: int, window_s: float) -> None:
        self._models = models
        self.max_batch = max(1, max_batch)
        self._window_s = max(0.0, window_s)
        self._lock = threading.Lock()
        self._open: dict[BatchKey, _Batch] = {}
        self._runs: set[asyncio.Future[None]] = set()
        self.batches = 0  # pipeline calls made (a batch of one counts)
        self.batched_tasks = 0  # tasks those calls held

    async def render(self, key: BatchKey, request: ImageRequest) -> RenderedImage:
        """The task's image, from whichever call it ends up in. On cancel (or the soft limit) the task asks
        to stop and waits, at most CLEANUP_GRACE_S, until its batch has let it go."""
        member = _Member(request)
        request.progress.report(P_WAITING, "waiting_for_device")
        self._join(key, member)
        waiting = asyncio.wrap_future(member.result)
        try:
            return await asyncio.shield(waiting)
        except BaseException:
            request.progress.request_stop("interrupted")
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(waiting), CLEANUP_GRACE_S)
            raise

    def _join(self, key: BatchKey, member: _Member) -> None:
        with self._lock:
            batch = self._open.get(key)
            if batch is None:
                batch = _Batch(key, time.monotonic() + self._window_s)
                self._open[key] = batch
                # The batch's model load is a span of the task that opened it (in that task's context).
                in_context = contextvars.copy_context().run
                run = asyncio.get_running_loop().run_in_executor(None, in_context, self._run, batch)
                self._runs.add(run)
                run.add_done_callback(self._runs.discard)
            batch.members.append(member)
            if len(batch.members) >= self.max_batch:
                del self._open[key]  # full: later arrivals start the next batch
                batch.ready.set()

    def _run(self, batch: _Batch) -> None:
        """Blocking, in a thread of its own: wait for the window, then the device, then render."""
        batch.ready.wait(max(0.0, batch.deadline - time.monotonic()))
        try:
            with self._models.gate.hold(lambda: not self._drop_stopped(batch)):
                members = self._close(batch)
                if members:
                    self._render(batch.key, members)
        except TaskInterrupted as stopped:
            for member in self._close(batch):
                member.settle(stopped)
        except BaseException as err:  # noqa: BLE001 - every member must learn how its batch ended
            for member in batch.members:
                member.settle(err)

    def _drop_stopped(self, batch: _Batch) -> bool:
        """Let go of the members that stopped while waiting; True while any member still waits. A batch
        left empty takes no one any more (a task arriving now starts the next batch)."""
        with self._lock:
            stopped = [m for m in batch.members if m.stopping]
            batch.members = [m for m in batch.members if not m.stopping]
            waiting = bool(batch.members)
            if not waiting and self._open.get(batch.key) is batch:
                del self._open[batch.key]
        for member in stopped:
            member.settle(TaskInterrupted(member.request.progress.stop_reason))
        return waiting

    def _close(self, batch: _Batch) -> list[_Member]:
        """Stop taking members; the ones still waiting run now."""
        with self._lock:
            if self._open.get(batch.key) is batch:
                del self._open[batch.key]
        self._drop_stopped(batch)
        with self._lock:
            return list(batch.members)

    def _render(self, key: BatchKey, members: list[_Member]) -> None:
        """Blocking, holding the device: one call for all members; one by one if that call fails."""
        for member in members:
            member.request.progress.report(P_LOAD, "loading_model")
        pipe = self._pipeline(key)
        if len(members) == 1:
            self._call(pipe, key, members)
            return
        try:
            self._call(pipe, key, members)
        except Exception as err:  # noqa: BLE001 - retried alone below; a lone failure reaches its task
            pending = [m for m in members if not m.result.done()]
            log.warning(
                "Batched image call failed; running its tasks one by one",
                extra={"batch_size": len(members), "error": f"{type(err).__name__}: {err}"},
            )
            # An out-of-memory batch leaves the allocator's blocks behind: give them back first.
            self._models.release_device_memory()
            for member in pending:
                try:
                    self._call(pipe, key, [member])
                except Exception as alone:  # noqa: BLE001 - this task's own failure
                    member.settle(alone)

    def _pipeline(self, key: BatchKey) -> Any:
        if key.kind == "image2image":
            return self._models.image_to_image(key.model_id, key.text_model_id)
        return self._models.text_to_image(key.model_id)

    def _call(self, pipe: Any, key: BatchKey, members: list[_Member]) -> None:
        """One pipeline call over `members`; each gets its image, or TaskInterrupted when it stopped."""
        import torch

        from activities.media.device import call_instance, run_denoising

        instance = call_instance(pipe)
        generators = [torch.Generator("cpu").manual_seed(m.request.seed) for m in members]
        kwargs: dict[str, Any] = {
            "prompt": [m.request.prompt for m in members],
            # diffusers encodes a missing negative prompt as "": the same embedding, alone or batched.
            "negative_prompt": [m.request.negative_prompt or "" for m in members],
            "num_inference_steps": key.steps,
            "generator": generators,
            "output_type": "pil",
        }
        if key.kind == "image2image":
            kwargs["image"] = [_init_image(m.request.init_image, key) for m in members]
            kwargs["strength"] = key.strength
        else:
            kwargs["height"], kwargs["width"] = key.height, key.width
        prepare_call(instance, self._models.options, images=len(members), width=key.width, height=key.height)
        rows = _BatchRows(instance, members, generators)
        shape = (len(members), key.height, key.width)
        on_step = self._models.compile_clock.watch(instance, shape, rows.on_step)
        with self._lock:
            self.batches += 1
            self.batched_tasks += len(members)
        contexts = [m.trace_context for m in members]
        with spans_in(contexts, "media.denoise", steps=key.steps, batch_size=len(members)):
            previews = rows.preview if any(m.request.on_latents for m in members) else None
            output = run_denoising(instance, on_step, tensors_hook=rows.cut, on_latents=previews, **kwargs)
        if output is None:  # every member stopped
            rows.release_all()
            return
        steps = _steps_run(key)
        for member, image in zip(rows.members, output.images, strict=True):
            if member is not None:
                member.settle(RenderedImage(image, steps, len(members)))


class _BatchRows:
    """Which task each row of the batch's tensors belongs to, and cutting out the rows of stopped tasks."""

    def __init__(self, pipe: Any, members: list[_Member], generators: list[Any]) -> None:
        self._pipe = pipe
        self.members: list[_Member | None] = list(members)  # None: a stopped task whose sample is discarded
        self._generators = generators
        self._stopped: list[int] = []
        self.cuttable = type(pipe).__name__ in _ROW_CUTTABLE and not _has_timestep_cond(pipe)

    def on_step(self, step: int) -> bool:
        """Report the step to every member; True (stop the call) when none of them goes on."""
        self._stopped = [i for i, m in enumerate(self.members) if m is not None and m.request.on_step(step)]
        live = [m for m in self.members if m is not None]
        return len(self._stopped) == len(live)

    def cut(self, tensors: dict[str, Any]) -> dict[str, Any]:
        """After a step: let the stopped members go, and cut their rows out where the pipeline allows it."""
        if not self._stopped:
            return tensors
        stopped, self._stopped = self._stopped, []
        for index in stopped:
            member = self.members[index]
            assert member is not None
            member.settle(TaskInterrupted(member.request.progress.stop_reason))
            self.members[index] = None
        if self.cuttable:
            keep = [i for i, m in enumerate(self.members) if m is not None]
            tensors = {name: _rows(value, keep, len(self.members)) for name, value in tensors.items()}
            _cut_scheduler_state(self._pipe.scheduler, keep, len(self.members), tensors["latents"])
            self._generators[:] = [self._generators[i] for i in keep]  # the scheduler's list, in place
            self.members = [self.members[i] for i in keep]
        return tensors

    def preview(self, latents: Any) -> None:
        """Offer each live member its row of the latents (rows follow `members`, cut or not)."""
        for index, member in enumerate(self.members):
            if member is not None and member.request.on_latents is not None:
                member.request.on_latents(latents[index : index + 1], self._pipe)

    def release_all(self) -> None:
        for member in self.members:
            if member is not None:
                member.settle(TaskInterrupted(member.request.progress.stop_reason))


def _rows(value: Any, keep: list[int], rows: int) -> Any:
    """`value` with only the kept rows: batch-sized tensors, and classifier-free guidance's doubled ones
    (unconditional rows, then conditional)."""
    import torch

    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        return value
    if value.shape[0] == 2 * rows:
        return value[keep + [rows + i for i in keep]]
    if value.shape[0] == rows:
        return value[keep]
    return value


def _cut_scheduler_state(scheduler: Any, keep: list[int], rows: int, latents: Any) -> None:
    """Multistep schedulers (PNDM, DPM-Solver, ...) keep earlier model outputs and samples: latent-shaped
    tensors, alone or in lists. Only those are cut; timesteps and sigmas are never latent-shaped."""
    import torch

    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.ndim == latents.ndim and value.shape[0] == rows:
            return value[keep] if value.shape[1:] == latents.shape[1:] else value
        if isinstance(value, list):
            return [cut(item) for item in value]
        return value

    for name, value in list(vars(scheduler).items()):
        if isinstance(value, torch.Tensor | list):
            setattr(scheduler, name, cut(value))


def _has_timestep_cond(pipe: Any) -> bool:
    """LCM-style UNets get a batch-sized guidance embedding computed once before the loop."""
    unet = getattr(pipe, "unet", None)
    return getattr(getattr(unet, "config", None), "time_cond_proj_dim", None) is not None


def _init_image(image: Image | None, key: BatchKey) -> Image:
    assert image is not None, "image2image batches hold init images"
    return image.resize((key.width, key.height))


def _steps_run(key: BatchKey) -> int:
    """img2img runs int(steps × strength) of the schedule's steps."""
    return key.steps if key.strength is None else int(key.steps * key.strength)
