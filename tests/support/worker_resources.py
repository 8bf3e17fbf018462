"""Activity classes built as a worker process builds them: on `WorkerResources` of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from activities.resources import WorkerResources
from activities.runtime import TaskActivities
from taskservice.settings import Settings

A = TypeVar("A", bound=TaskActivities)


@asynccontextmanager
async def opened(activities_class: Callable[..., A], settings: Settings, **options: Any) -> AsyncIterator[A]:
    """An activity class on worker resources of its own, both closed after use, as a worker process does."""
    async with WorkerResources.open(settings) as resources:
        activities = activities_class(resources, **options)
        try:
            yield activities
        finally:
            await activities.aclose()
