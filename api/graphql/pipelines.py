"""GraphQL's pipelines: `pipeline(id)` and `createPipeline`, over the same service as REST."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from api.domain.errors import ValidationFailed
from api.domain.pipelines import StartPipeline, StepRequest
from api.graphql.resolvers import Info, caller_of, service_errors
from api.service.pipelines import PipelineStatus, PipelineSubmitted
from taskservice.pipeline_contracts import OnFailure


@strawberry.input(name="PipelineStepInput")
class PipelineStepInput:
    id: str
    task_type: str
    task_data: JSON = strawberry.field(
        description='The type\'s input; any value may be a reference {"from": "<step>", "path": "result.…"}.'
    )
    after: list[str] = strawberry.field(default_factory=list, description="Steps to wait for without data.")


@strawberry.input(name="CreatePipelineInput")
class CreatePipelineInput:
    project_id: str
    steps: list[PipelineStepInput]
    name: str | None = None
    callback_url: str | None = None
    metadata: JSON | None = None
    on_failure: str = strawberry.field(default="continue", description="`continue` or `stop`.")


@strawberry.type(name="PipelineStep", description="One step of a pipeline: a task.")
class PipelineStepType:
    id: str
    task_id: str
    task_type: str
    status: str = strawberry.field(description="A task status, or `skipped`.")
    progress: float
    result: JSON | None
    error: str | None
    cache_hit: bool
    reused: bool


@strawberry.type(name="Pipeline", description="A pipeline (one PipelineWorkflow, each step a child task).")
class PipelineType:
    id: strawberry.ID
    project_id: str
    name: str | None
    status: str
    progress: float
    steps: list[PipelineStepType]
    started_at: str | None
    completed_at: str | None
    retry_of: str | None


@strawberry.type(name="PlannedStep")
class PlannedStepType:
    id: str
    task_id: str
    task_type: str
    will: str = strawberry.field(description="`render`, `cache` (a render-cache hit) or `reuse`.")
    estimated_duration_s: float


@strawberry.type(name="CreatedPipeline")
class CreatedPipelineType:
    id: strawberry.ID
    steps: list[PlannedStepType]
    estimated_duration_s: float


def pipeline_type(status: PipelineStatus) -> PipelineType:
    steps = [
        PipelineStepType(
            id=s.step_id,
            task_id=s.task_id,
            task_type=s.task_type,
            status=s.status.value,
            progress=s.progress,
            result=JSON(s.result) if s.result is not None else None,
            error=s.error,
            cache_hit=s.cache_hit,
            reused=s.reused,
        )
        for s in status.steps
    ]
    return PipelineType(
        id=strawberry.ID(status.pipeline_id),
        project_id=status.project_id,
        name=status.name,
        status=status.status.value,
        progress=status.progress,
        steps=steps,
        started_at=status.started_at,
        completed_at=status.completed_at,
        retry_of=status.retry_of,
    )


def created_type(submitted: PipelineSubmitted) -> CreatedPipelineType:
    planned = [
        PlannedStepType(
            id=s.step_id,
            task_id=s.task_id,
            task_type=s.task_type,
            will=s.will,
            estimated_duration_s=s.estimated_duration_s,
        )
        for s in submitted.steps
    ]
    return CreatedPipelineType(
        id=strawberry.ID(submitted.pipeline_id or ""),
        steps=planned,
        estimated_duration_s=submitted.estimated_duration_s,
    )


async def resolve_pipeline(
    info: Info, pipeline_id: Annotated[strawberry.ID, strawberry.argument(name="id")]
) -> PipelineType:
    caller = caller_of(info)
    with service_errors():
        return pipeline_type(await info.context.services.pipelines().get(caller, pipeline_id))


async def resolve_create_pipeline(info: Info, input: CreatePipelineInput) -> CreatedPipelineType:
    caller = caller_of(info)
    with service_errors():
        steps = []
        for step in input.steps:
            if not isinstance(step.task_data, dict):
                raise ValidationFailed({f"steps.{step.id}.taskData": "taskData must be an object"})
            steps.append(StepRequest(step.id, step.task_type, step.task_data, tuple(step.after)))
        if input.on_failure not in set(OnFailure):
            raise ValidationFailed({"onFailure": "onFailure is `continue` or `stop`"})
        metadata: dict[str, Any] = input.metadata if isinstance(input.metadata, dict) else {}
        command = StartPipeline(
            caller=caller,
            project_id=input.project_id,
            steps=tuple(steps),
            name=input.name,
            callback_url=input.callback_url,
            metadata=metadata,
            on_failure=OnFailure(input.on_failure),
        )
        return created_type(await info.context.services.pipelines().submit(command))
