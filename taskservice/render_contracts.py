"""What crosses Temporal's boundaries for a coalesced render (workflows/coalesce.py): its input, a task
joining it, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskservice.contracts import TaskWorkflowInput


@dataclass
class RenderInput:
    """A coalesced render (`RenderWorkflow`, one per tenant and content key): the task it runs as (its own ID,
    no callback, no cache), the key, and the task that started it (the source of the cached result)."""

    task: TaskWorkflowInput
    key: str
    first_task_id: str
    # Keep the result under the key once rendered (the tasks' CachePlan).
    store: bool = True


@dataclass
class JoinRender:
    """Input of the `join_render` activity: attach a task to its key's render, starting it if none runs."""

    render: RenderInput
    task_id: str


@dataclass
class RenderOutcome:
    """How a render ended, sent to every task that waited on it (`TaskWorkflow.render_finished`)."""

    source_task_id: str
    result: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    saved_seconds: float = 0.0
    # The render's attempt: when it started (each waiting task's processing time counts from there).
    started_at: str | None = None
    attempt: int = 0
