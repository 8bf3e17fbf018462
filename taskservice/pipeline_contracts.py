"""What a pipeline is and records, typed once for the workflow that runs it and the API that reads it.

A pipeline is a `PipelineWorkflow` whose workflow ID is the pipeline ID; each step is a child `TaskWorkflow`
whose ID is the step's task ID. The API freezes each step's whole task input at submit (`StepPlan.task`,
its `task_data` holding the step's references as `{"from", "path"}` objects); the workflow resolves them
from the upstream steps' outcomes and starts the step. Its memo:
- `pipeline`: the `PipelineRecord`, written by the API at the start;
- `state`: the `PipelineState`, written by the workflow at every change of a step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from taskservice.contracts import TaskWorkflowInput
from taskservice.payloads import decode

MAX_PIPELINE_STEPS = 50
# A step's result larger than this (encoded) is left out of the pipeline's memo (50 of them stay far below
# Temporal's memo limit); the status reads it from the step's task.
STEP_RESULT_MEMO_LIMIT = 8_000
# Pipeline IDs are `pl-` and a UUID: never a task ID, so a task route never reads a pipeline.
PIPELINE_ID_PREFIX = "pl-"
# The `task_type` of a pipeline's webhook (its `task_id` is the pipeline ID).
PIPELINE_WEBHOOK_TYPE = "pipeline"


class PipelineMemoKey(StrEnum):
    PIPELINE = "pipeline"
    STATE = "state"


class StepStatus(StrEnum):
    """A step's status: the task statuses, plus `skipped` (an upstream step did not complete)."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        return self not in (StepStatus.QUEUED, StepStatus.PROCESSING)


class OnFailure(StrEnum):
    # Independent branches finish; the failed step's dependents are skipped.
    CONTINUE = "continue"
    # Every running and pending step is cancelled.
    STOP = "stop"


@dataclass
class RecordedStep:
    step_id: str
    task_id: str
    task_type: str
    # Its estimated duration (seconds): its weight in the overall progress.
    estimate_s: float = 0.0


@dataclass
class PipelineRecord:
    """What the pipeline is, as submitted (the memo's `pipeline`)."""

    project_id: str
    created_at: str
    tenant: str = "default"
    user: str | None = None
    name: str | None = None
    callback_url: str | None = None
    # `completed` (the pipeline's end) and/or `step` (each step's end).
    webhook_events: list[str] = field(default_factory=lambda: ["completed"])
    metadata: dict[str, Any] = field(default_factory=dict)
    on_failure: OnFailure = OnFailure.CONTINUE
    # The pipeline this one retries or reruns.
    retry_of: str | None = None
    # The steps in submit order: what the status shows before the workflow has published its state.
    steps: list[RecordedStep] = field(default_factory=list)


@dataclass
class StepOutcome:
    """How a step ended (or that it has not): what the status body shows and references resolve against."""

    step_id: str
    task_id: str
    status: StepStatus = StepStatus.QUEUED
    result: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    # Taken from the pipeline it retries (no task ran again).
    reused: bool = False
    # The result was too large for the pipeline's memo (STEP_RESULT_MEMO_LIMIT): its task holds it.
    result_in_task: bool = False

    def body(self) -> dict[str, Any]:
        """The step's status body as references read it (`result.media_url`, `task_id`...)."""
        return {"task_id": self.task_id, "status": self.status.value, "result": self.result}

    @property
    def cache_hit(self) -> bool:
        cache = (self.result or {}).get("cache")
        return isinstance(cache, dict) and cache.get("hit") is True


@dataclass
class StepPlan:
    """One step as the workflow runs it: its task's input (references still in its task_data), the steps
    it waits for, and its outcome if it is reused from an earlier pipeline."""

    step_id: str
    task: TaskWorkflowInput
    depends_on: list[str] = field(default_factory=list)
    reused: StepOutcome | None = None


@dataclass
class PipelineInput:
    pipeline_id: str
    record: PipelineRecord
    steps: list[StepPlan]


@dataclass
class PipelineState:
    """The pipeline's state (the memo's `state`, the workflow's `state` query), steps in submit order."""

    status: StepStatus
    steps: list[StepOutcome]
    started_at: str | None = None
    completed_at: str | None = None


@dataclass
class PipelineMemo:
    pipeline: PipelineRecord
    state: PipelineState | None = None

    @classmethod
    def parse(cls, memo: Mapping[str, Any]) -> PipelineMemo | None:
        """The typed memo of a pipeline workflow; None for another workflow."""
        if PipelineMemoKey.PIPELINE not in memo:
            return None
        return decode(cls, memo)


def pipeline_workflow_id(pipeline_id: str) -> str:
    """The pipeline's workflow ID: the pipeline ID itself, as a task's is its task ID."""
    return pipeline_id


@dataclass
class PlannedLookup:
    """A step as the plan looks it up: its type, its validated task_data (references in place), whether the
    render cache may answer it, and the steps it waits for."""

    step_id: str
    task_type: str
    task_data: dict[str, Any]
    looks_up: bool
    depends_on: list[str] = field(default_factory=list)


@dataclass
class PipelinePlanInput:
    """What `PipelinePlanWorkflow` looks up before a pipeline starts: its steps in submit order."""

    tenant: str
    steps: list[PlannedLookup]
    # The results of the steps reused from the pipeline it retries (their downstream resolves from them).
    reused_results: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class PipelinePlan:
    """By step ID: True when the render cache answers the step (its inputs rendered before), else False."""

    hits: dict[str, bool]
