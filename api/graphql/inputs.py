"""Seed 003's GraphQL inputs, and how each is parsed into the service's commands and arguments."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import strawberry
from strawberry.scalars import JSON

from api.domain.caller import Caller
from api.domain.commands import StartTask
from api.domain.errors import ValidationFailed
from api.graphql.types import AITaskPriority, AITaskStatus
from api.service.tasks import TaskFilter
from taskservice.priority import TaskPriority
from taskservice.render_cache import CacheMode

MAX_PAGE_SIZE = 100
DEFAULT_STATISTICS_WINDOW_H = 24.0


@strawberry.input(name="CreateAITaskInput")
class CreateAITaskInput:
    task_type: str
    project_id: str | None = strawberry.field(default=None, description="Required unless agentId is given.")
    agent_id: str | None = strawberry.field(default=None, description="Seed 003: used as the project.")
    input_data: JSON | None = strawberry.field(default=None, description="The task type's inputs.")
    task_data: JSON | None = strawberry.field(default=None, description="Same as inputData (seed 001).")
    priority: AITaskPriority = AITaskPriority.NORMAL
    callback_url: str | None = None
    metadata: JSON | None = None
    estimated_cost: float | None = strawberry.field(default=None, description="Kept in metadata.")
    workflow_step_id: str | None = strawberry.field(default=None, description="Kept in metadata.")
    cache: str | None = strawberry.field(
        default=None,
        description="Render cache mode: auto (default), reuse, refresh or off (as REST's `cache`).",
    )


@strawberry.input(name="AITaskFilter")
class AITaskFilter:
    project_id: str | None = None
    agent_id: str | None = strawberry.field(default=None, description="Same as projectId.")
    status: AITaskStatus | None = None
    task_type: str | None = None
    mine: bool = strawberry.field(default=False, description="Only tasks created with the caller's key.")


@strawberry.input(name="PaginationInput")
class PaginationInput:
    page: int = 1
    limit: int = 20


@strawberry.input(name="TaskStatisticsFilter")
class TaskStatisticsFilter:
    project_id: str | None = None
    agent_id: str | None = strawberry.field(default=None, description="Same as projectId.")
    task_type: str | None = None
    start_date: datetime | None = strawberry.field(default=None, description="Default: windowHours ago.")
    end_date: datetime | None = None
    window_hours: float | None = strawberry.field(default=None, description="Default 24.")


def start_task(caller: Caller, item: CreateAITaskInput, idempotency_key: str | None = None) -> StartTask:
    """Seed 003's input (agentId, inputData, estimatedCost, ...) as the task to start."""
    project_id = item.project_id or item.agent_id
    if not project_id:
        raise ValidationFailed({"projectId": "projectId (or agentId) is required"}, message="Invalid request")
    task_data: object = item.task_data if item.task_data is not None else item.input_data
    if task_data is None:
        task_data = {}
    if not isinstance(task_data, dict):
        raise ValidationFailed({"inputData": "inputData must be an object"}, message="Invalid request")
    metadata: object = item.metadata if item.metadata is not None else {}
    if not isinstance(metadata, dict):
        raise ValidationFailed({"metadata": "metadata must be an object"}, message="Invalid request")
    extra = {
        "agentId": item.agent_id,
        "estimatedCost": item.estimated_cost,
        "workflowStepId": item.workflow_step_id,
    }
    return StartTask(
        tenant=caller.tenant,
        user=caller.subject,
        caller=caller,
        project_id=project_id,
        task_type=item.task_type,
        task_data=task_data,
        priority=TaskPriority(item.priority.value),
        callback_url=item.callback_url,
        metadata={**metadata, **{k: v for k, v in extra.items() if v is not None}},
        idempotency_key=idempotency_key,
        cache=_cache_mode(item.cache),
    )


def task_filter(flt: AITaskFilter | None) -> TaskFilter:
    flt = flt or AITaskFilter()
    return TaskFilter(
        project_id=flt.project_id or flt.agent_id,
        task_type=flt.task_type,
        status=flt.status.to_status() if flt.status is not None else None,
        mine=flt.mine,
    )


def page_of(pagination: PaginationInput | None) -> PaginationInput:
    page = pagination or PaginationInput()
    if page.page < 1 or not 1 <= page.limit <= MAX_PAGE_SIZE:
        raise ValidationFailed(
            {"pagination": f"page must be ≥ 1 and limit between 1 and {MAX_PAGE_SIZE}"},
            message="Invalid arguments",
        )
    return page


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def statistics_window(flt: TaskStatisticsFilter, now: datetime) -> tuple[datetime, datetime | None]:
    """[since, until) of a statistics filter: startDate, else windowHours (default 24) back from now."""
    hours = flt.window_hours
    if hours is not None and (not math.isfinite(hours) or hours <= 0):
        raise ValidationFailed({"filter.windowHours": "must be greater than 0"}, message="Invalid arguments")
    if flt.start_date is not None:
        since = _utc(flt.start_date)
    else:
        since = now - timedelta(hours=hours or DEFAULT_STATISTICS_WINDOW_H)
    return since, _utc(flt.end_date) if flt.end_date is not None else None


def _cache_mode(value: str | None) -> CacheMode | None:
    """The `cache` argument as REST's field: one of the modes, or a 400 naming them."""
    if value is None:
        return None
    try:
        return CacheMode(value)
    except ValueError:
        modes = ", ".join(m.value for m in CacheMode)
        raise ValidationFailed(
            {"cache": f"cache must be one of: {modes}"}, message="Invalid request"
        ) from None
