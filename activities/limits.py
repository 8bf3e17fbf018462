"""Keeps the concurrency limiter workflows running (see workflows/limiter.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from taskservice.contracts import LimiterState
from taskservice.queues import WORKFLOW_QUEUE, limiter_workflow_id
from workflows.limiter import ConcurrencyLimiterWorkflow


async def ensure_limiter_running(client: Client, group: str) -> None:
    """Start the group's limiter, or attach to the one already running."""
    await client.start_workflow(
        ConcurrencyLimiterWorkflow.run,
        LimiterState(group=group),
        id=limiter_workflow_id(group),
        task_queue=WORKFLOW_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


class LimiterActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [self.ensure_limiter]

    @activity.defn(name="ensure_limiter")
    async def ensure_limiter(self, group: str) -> None:
        await ensure_limiter_running(self._client, group)
