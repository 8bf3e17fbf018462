"""Which activities a queue's worker registers: the catalog's entries for the queue, nothing hand-written.

Each entry names the class holding its activity ("module:Class", imported here only, so the API never
imports torch) and the activity's name, which is the name of that class's `@activity.defn` method. A worker
builds each named class once, on the process's shared resources, and refuses to start when an entry's
activity is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from activities.resources import WorkerResources
from activities.runtime import TaskActivities, WarmModels
from taskservice.catalog import TaskSpec


class MissingActivityError(RuntimeError):
    """A catalog entry of the worker's queue has no activity to run it: the worker must not start."""

    def __init__(self, spec: TaskSpec, reason: str) -> None:
        super().__init__(
            f"task type {spec.name!r} of queue {spec.queue.value!r} needs activity {spec.activity_name!r} "
            f"from {spec.activity_class}, but {reason}"
        )


@dataclass
class QueueActivities:
    """The activity classes built for one queue and the activity functions to register."""

    providers: list[TaskActivities]
    functions: list[Callable[..., Any]]

    def loaded_models(self) -> list[str]:
        return [model for provider in self.providers for model in provider.loaded_models()]

    def model_stats(self) -> dict[str, float]:
        """Each counter of `TaskActivities.model_stats`, summed over the queue's classes."""
        merged: dict[str, float] = {}
        for provider in self.providers:
            for name, value in provider.model_stats().items():
                merged[name] = merged.get(name, 0) + value
        return merged

    @property
    def warm_models(self) -> list[WarmModels]:
        return [p.warm_models for p in self.providers if p.warm_models is not None]

    @property
    def holds_models(self) -> bool:
        """Whether the queue's worker keeps models loaded between tasks (recycling it reloads them)."""
        return bool(self.warm_models)

    def model_churn(self) -> tuple[int, int]:
        """(generation, loads under way) of all warm models: see `WarmModels`."""
        models = self.warm_models
        return sum(m.generation for m in models), sum(m.loading for m in models)

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()


def build_queue_activities(resources: WorkerResources, specs: Sequence[TaskSpec]) -> QueueActivities:
    """Build each class the entries name and find each entry's activity on it.

    Raises:
        MissingActivityError: an entry's module has no such class, or the class no method of that name.
    """
    providers: dict[str, TaskActivities] = {}
    functions: dict[str, Callable[..., Any]] = {}
    for spec in specs:
        if spec.activity_class not in providers:
            providers[spec.activity_class] = _activity_class(spec)(resources)
        function = getattr(providers[spec.activity_class], spec.activity_name, None)
        if not callable(function):
            raise MissingActivityError(spec, f"that class has no method {spec.activity_name!r}")
        functions[spec.activity_name] = function
    return QueueActivities(list(providers.values()), list(functions.values()))


def _activity_class(spec: TaskSpec) -> type[TaskActivities]:
    module_name, _, class_name = spec.activity_class.partition(":")
    # An import error (a missing dependency) propagates as it is: the worker fails loudly at start.
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, TaskActivities)):
        raise MissingActivityError(spec, f"{module_name} defines no TaskActivities class {class_name!r}")
    return cls
