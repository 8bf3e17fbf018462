"""Pipeline commands: what a surface asks of the pipeline service, in its own terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.domain.caller import Caller
from taskservice.pipeline_contracts import OnFailure
from taskservice.priority import TaskPriority
from taskservice.render_cache import CacheMode

# A step ID: a short name (it is part of field paths in errors and of the step's search attribute).
STEP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


@dataclass(frozen=True)
class StepRequest:
    """One step: a task (type and input, references allowed anywhere in `task_data`), and the steps it
    runs after without taking their data."""

    step_id: str
    task_type: str
    task_data: dict[str, Any]
    after: tuple[str, ...] = ()
    # None: the pipeline's.
    priority: TaskPriority | None = None
    cache: CacheMode | None = None


@dataclass(frozen=True)
class StartPipeline:
    """Start one pipeline (a submit, or a retry/rerun of `retry_of`)."""

    caller: Caller
    project_id: str
    steps: tuple[StepRequest, ...]
    name: str | None = None
    callback_url: str | None = None
    # `completed` (the pipeline's end), `step` (each step's own task webhook); None: `completed`.
    webhook_events: tuple[str, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    priority: TaskPriority = TaskPriority.NORMAL
    cache: CacheMode | None = None
    on_failure: OnFailure = OnFailure.CONTINUE
    retry_of: str | None = None

    @property
    def tenant(self) -> str:
        return self.caller.tenant
