"""What every task activity shares: progress heartbeats, cancellation, the soft time limit.

`run_task` runs one attempt and returns what its workflow reads (`TaskAttemptResult`: the result and the
attempt's start, also announced to the workflow: `activities.attempt`). Long work reports `progress`/`step`
through `TaskProgress`; a background loop heartbeats the latest value (`TaskProgressUpdate`; Temporal
throttles what is sent), which is also how cancellation reaches the activity. Blocking work runs
in a thread via `TaskProgress.run_blocking`, and checks `TaskProgress.should_stop` at safe points (a
denoising step, a sentence) so a cancel or the soft time limit stops it promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.converter import value_to_type
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.attempt import AttemptAnnouncement, workflow_handle
from activities.model_loads import counting_model_loads
from taskservice.contracts import (
    ClipCheckpoint,
    TaskActivityInput,
    TaskAttemptResult,
    TaskPreview,
    TaskProgressUpdate,
)
from taskservice.work_units import MODEL_LOAD_SECONDS, device_seconds_key
from workflows.task import TaskWorkflow

if TYPE_CHECKING:
    from activities.resources import WorkerResources

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

HEARTBEAT_EVERY_S = 0.5
# Progress webhooks go out each time progress has moved this much (0.1 = every 10 %).
PROGRESS_EVENT_STEP = 0.1
CLEANUP_GRACE_S = 30.0


class TaskInterrupted(Exception):
    """Raised inside blocking work when the task was cancelled or hit its soft time limit."""


class TaskProgress:
    """Thread-safe progress of one activity attempt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress = 0.0
        self._step = "starting"
        self._stop = threading.Event()
        self._stop_reason = ""
        self.cleanup_grace_s = CLEANUP_GRACE_S
        self._clips: ClipCheckpoint | None = None
        self._preview: TaskPreview | None = None
        # What the previous attempt of this task last heartbeated (a retry's starting point), if anything.
        self.previous: TaskProgressUpdate | None = None

    def report(self, progress: float, step: str) -> None:
        """Record progress (0..1, never moving backwards) and a human-readable step."""
        with self._lock:
            self._progress = max(self._progress, min(1.0, max(0.0, progress)))
            self._step = step

    def snapshot(self) -> TaskProgressUpdate:
        """The progress as the attempt heartbeats it."""
        with self._lock:
            return TaskProgressUpdate(
                progress=round(self._progress, 4), step=self._step, clips=self._clips, preview=self._preview
            )

    def keep_clips(self, clips: ClipCheckpoint) -> None:
        """Record the finished clips of a render (heartbeated: what a retry resumes from)."""
        with self._lock:
            self._clips = dataclasses.replace(clips, keys=list(clips.keys))

    def show_preview(self, preview: TaskPreview) -> None:
        """Record the render's latest live preview (heartbeated: what /status and the streams show)."""
        with self._lock:
            self._preview = preview

    @property
    def should_stop(self) -> bool:
        return self._stop.is_set()

    @property
    def stop_reason(self) -> str:
        return self._stop_reason

    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    def raise_if_stopped(self) -> None:
        if self._stop.is_set():
            raise TaskInterrupted(self._stop_reason)

    async def run_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` in a thread; on cancel or soft timeout ask it to stop and wait for its cleanup, at most
        `cleanup_grace_s`: work that has not stopped by then is left running (`abandoned_work`; its worker
        is replaced, see `workers.lifecycle`) and the task ends as it was asked to."""
        # In a copy of the caller's context: the thread's spans and log lines belong to this task.
        work = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        thread, future = _start_daemon(work)
        try:
            return await asyncio.shield(future)
        except BaseException:
            self.request_stop("interrupted")
            # The thread owns the GPU/CPU until it returns: give it the documented cleanup window.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(future), self.cleanup_grace_s)
            if thread.is_alive():
                abandoned_work.add(thread)
            raise


def _start_daemon(work: Callable[[], T]) -> tuple[threading.Thread, asyncio.Future[T]]:
    """`work` in a daemon thread of its own (not the loop's executor, which the interpreter waits for at
    exit: a thread that never returns must not keep a replaced worker alive), and the future of its end."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    # Its outcome is read even when nobody waits any more (the task ended past the grace period).
    future.add_done_callback(lambda done: done.cancelled() or done.exception())

    def settle(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(lambda: None if future.done() else outcome())

    def target() -> None:
        try:
            result = work()
        except BaseException as err:
            failure = err
            settle(lambda: future.set_exception(failure))
        else:
            settle(lambda: future.set_result(result))

    thread = threading.Thread(target=target, name="task-work", daemon=True)
    thread.start()
    return thread, future


class AbandonedWork:
    """Blocking work that did not stop within its grace period after its task ended: it still holds the
    process's device and memory, so the worker process is replaced (one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def add(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads.append(thread)

    def running(self) -> int:
        """How many abandoned threads are still running (one that ended after all no longer counts)."""
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            return len(self._threads)


abandoned_work = AbandonedWork()


def parse_task_data(model: type[M], task: TaskActivityInput) -> M:
    """The task's inputs as the catalog's model; inputs that do not fit fail the task at once."""
    try:
        return model.model_validate(task.task_data)
    except ValidationError as err:
        raise permanent_error(f"invalid task_data for {task.task_type}: {err}", "InvalidInput") from None


def permanent_error(message: str, error_type: str = "InvalidInput") -> ApplicationError:
    """A failure that retrying cannot fix (bad input, 4xx upstream): the task fails at once."""
    return ApplicationError(message, type=error_type, non_retryable=True)


def out_of_memory(err: BaseException) -> bool:
    """Whether `err` is running out of memory: MemoryError (numpy's allocations among them), or torch's
    OutOfMemoryError (CUDA, MPS) when this process has loaded torch. A CPU tensor that cannot be allocated is
    a plain RuntimeError in torch: not told apart (and Linux's OOM killer usually ends the process first)."""
    if isinstance(err, MemoryError):
        return True
    torch = sys.modules.get("torch")
    torch_oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return isinstance(torch_oom, type) and isinstance(err, torch_oom)


def out_of_memory_error(task: TaskActivityInput, err: BaseException) -> ApplicationError:
    """The failure of an attempt that ran out of memory: retrying the same request would too."""
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    return permanent_error(
        f"{task.task_type} ran out of memory on its worker ({reason}); ask for less (resolution, duration, "
        "fps, steps or inputs)",
        "OutOfMemory",
    )


def _previous_heartbeat() -> TaskProgressUpdate | None:
    """The last heartbeat of the previous attempt (decoded without type hints by the SDK); None if none or
    not one of ours."""
    details = activity.info().heartbeat_details
    if not details:
        return None
    last = details[-1]
    if isinstance(last, TaskProgressUpdate):
        return last
    try:
        update: TaskProgressUpdate = value_to_type(TaskProgressUpdate, last)
    except (TypeError, ValueError):
        return None
    return update


async def _heartbeat_forever(progress: TaskProgress, task: TaskActivityInput) -> None:
    announced = -1.0
    while True:
        snapshot = progress.snapshot()
        activity.heartbeat(snapshot)
        if task.progress_updates and snapshot.progress - announced >= PROGRESS_EVENT_STEP:
            announced = snapshot.progress
            # The workflow needs how far and what (its progress webhook), not the kept clips or the preview.
            await _announce_progress(dataclasses.replace(snapshot, clips=None, preview=None))
        await asyncio.sleep(HEARTBEAT_EVERY_S)


async def _announce_progress(update: TaskProgressUpdate) -> None:
    """Tell the workflow (which sends the `progress` webhook); never let it break the task."""
    handle = workflow_handle()
    if handle is None:
        return
    try:
        await handle.signal(TaskWorkflow.task_progress, update)
    except RPCError as err:
        activity.logger.warning("Progress update not delivered", extra={"error": str(err)})


async def announce_preview(preview: TaskPreview) -> None:
    """Tell the workflow of a new preview (its `preview` webhook); never let it break the task."""
    handle = workflow_handle()
    if handle is None:
        return
    try:
        await handle.signal(TaskWorkflow.task_preview, preview)
    except RPCError as err:
        activity.logger.warning("Preview update not delivered", extra={"error": str(err)})


async def run_task(
    task: TaskActivityInput,
    model: type[M],
    work: Callable[[M, TaskProgress], Awaitable[dict[str, Any]]],
    *,
    device: str | None = None,
) -> TaskAttemptResult:
    """Run one task attempt, announced to its workflow: its inputs parsed as `model`, `work` under heartbeats
    and the soft time limit. An attempt that fails is announced before it ends (its start is recorded with
    its failure). With `device` (a media task's torch device), the result's metadata tells the seconds the
    attempt held it (`gpu_seconds` or `cpu_seconds`: taskservice.work_units.device_seconds_key), and
    `model_load_s` the part of them it waited for a cold model (activities.model_loads)."""
    announcement = await AttemptAnnouncement.begin(task)
    started = time.perf_counter()
    try:
        with counting_model_loads() as loads:
            result = await _run_work(task, model, work)
        metadata = result.get("metadata")
        if device is not None and isinstance(metadata, dict):
            metadata[device_seconds_key(device)] = round(time.perf_counter() - started, 3)
            if loads.seconds > 0:
                metadata[MODEL_LOAD_SECONDS] = round(loads.seconds, 3)
        return announcement.result(result)
    except asyncio.CancelledError:
        raise
    except BaseException:
        await announcement.now()
        raise
    finally:
        announcement.drop()


async def _run_work(
    task: TaskActivityInput, model: type[M], work: Callable[[M, TaskProgress], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    data = parse_task_data(model, task)
    progress = TaskProgress()
    progress.previous = _previous_heartbeat()
    heartbeats = asyncio.create_task(_heartbeat_forever(progress, task))
    try:
        async with asyncio.timeout(task.soft_timeout_s):
            result = await work(data, progress)
        progress.report(1.0, "done")
        activity.heartbeat(progress.snapshot())
        return result
    except TimeoutError:
        progress.request_stop("soft_timeout")
        activity.logger.warning("Soft time limit exceeded", extra={"task_id": task.task_id})
        raise ApplicationError(
            f"Soft time limit of {task.soft_timeout_s:.0f}s exceeded", type="SoftTimeLimitExceeded"
        ) from None
    except Exception as err:
        if not out_of_memory(err):
            raise
        activity.logger.error("Out of memory", extra={"task_id": task.task_id, "task_type": task.task_type})
        raise out_of_memory_error(task, err) from None
    except asyncio.CancelledError:
        progress.request_stop("cancelled")
        raise
    finally:
        heartbeats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeats


class WarmModels(Protocol):
    """A process's cache of loaded models (diffusers pipelines, captioners): what the worker reports of it."""

    hits: int  # requests answered by an already loaded model
    loads: int
    load_seconds: float  # time those loads took
    evictions: int  # models dropped to make room for others
    # Bumped whenever a load starts or ends or a model is dropped, and the loads under way: the worker
    # measures memory growth (a leak) only against a baseline taken while neither moves.
    generation: int
    loading: int

    @property
    def device(self) -> str: ...

    def loaded_models(self) -> list[str]: ...

    def resident_bytes(self) -> int: ...

    def clear(self) -> None: ...


class TaskActivities:
    """Base of the classes that hold task activities; the worker builds one per class the catalog names.

    A subclass defines one `@activity.defn` method per activity name of the catalog (the method's name is
    the activity's), takes what it needs from the worker's resources, and sets `warm_models` where it keeps
    models loaded between tasks.
    """

    warm_models: WarmModels | None = None

    def __init__(self, resources: WorkerResources) -> None:
        """Build nothing that does I/O: the worker builds every class of its queue before connecting."""

    def loaded_models(self) -> list[str]:
        return self.warm_models.loaded_models() if self.warm_models is not None else []

    def model_stats(self) -> dict[str, float]:
        """Counters of the warm models since the process started (`hits`, `misses` = loads, `load_seconds`,
        `evictions`), and whatever else the class counts about its model runs; empty without models."""
        if self.warm_models is None:
            return {}
        models = self.warm_models
        return {
            "hits": models.hits,
            "misses": models.loads,
            "load_seconds": models.load_seconds,
            "evictions": models.evictions,
        }

    async def aclose(self) -> None:
        """Drop the models this class keeps; the shared clients are the worker's to close."""
        if self.warm_models is not None:
            await asyncio.to_thread(self.warm_models.clear)
