"""The seconds a task attempt spent waiting for a cold model: loading it, or waiting on another task's load.

A task's measured run time teaches the learned durations (taskservice.durations) how long its type takes on
a warm worker; a cold load is a cost of the worker, not of the task's size, so the attempt reports it apart
(`metadata.model_load_s`) and the bookkeeping takes it out of the sample. The model caches call
`note_model_load` on their cold path; the attempt's runner counts them with `counting_model_loads`. A
context variable carries the count into the threads that load (`asyncio.to_thread` and the image batcher
copy the context, so they share the attempt's counter).
"""

from __future__ import annotations

import contextvars
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from taskservice.scoped import bound


@dataclass
class ModelLoads:
    """Seconds the attempt waited for cold models (several loads add up)."""

    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds


_CURRENT: contextvars.ContextVar[ModelLoads | None] = contextvars.ContextVar("model_loads", default=None)


def counting_model_loads() -> AbstractContextManager[ModelLoads]:
    """Count the cold-model waits of the code run inside (one task attempt)."""
    return bound(_CURRENT, ModelLoads())


def note_model_load(seconds: float) -> None:
    """A cold model was loaded (or waited for) for the current attempt, if one is counting."""
    loads = _CURRENT.get()
    if loads is not None:
        loads.add(seconds)
