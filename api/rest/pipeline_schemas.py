"""The pipeline resource's request and response bodies (OpenAPI documents them from here)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api.domain.commands import MAX_CALLBACK_URL_LENGTH, PROJECT_ID_PATTERN
from api.domain.pipelines import STEP_ID_PATTERN
from taskservice.pipeline_contracts import MAX_PIPELINE_STEPS, OnFailure, StepStatus
from taskservice.priority import TaskPriority
from taskservice.render_cache import CacheMode

# A priority as every submit takes it, seed 001's numbers (1-3) or the names: TaskPriority.parse decides.
Priority = Annotated[TaskPriority, BeforeValidator(TaskPriority.parse)]
REFERENCE = (
    'Any value inside `task_data` may be a reference to an earlier step\'s output: `{"from": "<step id>", '
    '"path": "result.media_url"}` (a dotted path into that step\'s status body: `task_id`, or `result.` '
    "and a field its task type returns)."
)


class StepOf(BaseModel):
    """A task's pipeline and step, when it is a pipeline's step (task listings and details)."""

    pipeline_id: str | None = Field(None, description="The pipeline this task is a step of, if any.")
    step_id: str | None = Field(None, description="Its step's ID in that pipeline.")


class PipelineStepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=STEP_ID_PATTERN, description="The step's ID within the pipeline.")
    task_type: str = Field(description="A task type of the catalog.")
    task_data: dict[str, Any] = Field(description="The type's input. " + REFERENCE)
    after: list[str] = Field(default_factory=list, description="Steps to wait for without taking their data.")
    priority: Priority | None = Field(None, description="Default: the pipeline's (1-3 or a name).")
    cache: CacheMode | None = Field(None, description="Default: the pipeline's.")


class SubmitPipelineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: str = Field(pattern=PROJECT_ID_PATTERN)
    name: str | None = Field(None, max_length=200)
    steps: list[PipelineStepRequest] = Field(
        description=f"1 to {MAX_PIPELINE_STEPS} steps (MAX_PIPELINE_STEPS), in any order consistent with "
        "their references."
    )
    callback_url: str | None = Field(None, max_length=MAX_CALLBACK_URL_LENGTH)
    webhook_events_filter: list[Literal["completed", "step"]] | None = Field(
        None, description="`completed`: the pipeline's end (default); `step`: each step's own task webhook."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = Field(TaskPriority.NORMAL, description="Every step's, unless it gives its own.")
    cache: CacheMode | None = None
    on_failure: OnFailure = Field(
        OnFailure.CONTINUE,
        description="`continue`: a failed step's dependents are skipped, other branches finish; `stop`: "
        "every running and pending step is cancelled.",
    )


class RerunPipelineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    changes: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="By step ID: task_data fields replaced in that step."
    )


class PlannedStepResponse(BaseModel):
    id: str
    task_id: str
    task_type: str
    will: Literal["render", "cache", "reuse"] = Field(
        description="Found before anything starts: `cache`: answered from the render cache (its content "
        "key has an entry); `render`: renders; `reuse`: taken from the pipeline it reruns."
    )
    estimated_duration_s: float


class SubmitPipelineResponse(BaseModel):
    pipeline_id: str | None = Field(description="None in a quote.")
    steps: list[PlannedStepResponse]
    estimated_duration_s: float = Field(description="The critical path of the steps' estimates.")
    retry_of: str | None = None


class PipelineStepStatus(BaseModel):
    id: str
    task_id: str
    task_type: str
    status: StepStatus
    progress: float
    result: dict[str, Any] | None
    error: str | None
    cache_hit: bool
    reused: bool


class PipelineStatusResponse(BaseModel):
    pipeline_id: str
    project_id: str
    name: str | None
    status: Literal["queued", "processing", "completed", "failed", "cancelled"]
    progress: float = Field(description="0-1, each step weighted by its estimated duration.")
    steps: list[PipelineStepStatus] = Field(description="In submit order.")
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    retry_of: str | None
    metadata: dict[str, Any]


class PipelineListResponse(BaseModel):
    pipelines: list[PipelineStatusResponse]
    total: int
    page: int
    limit: int
