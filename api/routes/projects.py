"""Project resource: a project's tasks, newest first, from Temporal visibility."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ReadCaller, StoreDep
from api.errors import ValidationFailed
from api.schemas import PROJECT_ID_PATTERN, Pagination, ProjectTaskItem, ProjectTasksResponse
from api.taskstore import filter_query, status_query
from taskservice.catalog import CATALOG
from taskservice.contracts import TaskStatus

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])


@router.get("/{project_id}/tasks", response_model=ProjectTasksResponse, summary="A project's tasks")
async def project_tasks(
    project_id: Annotated[str, Path(pattern=PROJECT_ID_PATTERN)],
    caller: ReadCaller,
    store: StoreDep,
    status: TaskStatus | None = None,
    task_type: str | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ProjectTasksResponse:
    if task_type is not None and task_type not in CATALOG:
        raise ValidationFailed(
            {"task_type": f"Unknown task type '{task_type}'; expected one of: {', '.join(CATALOG)}"},
            message="Invalid query parameters",
        )
    clauses = [filter_query(project_id=project_id, task_type=task_type)]
    if status is not None:
        clauses.append(status_query(status))
    views, total = await store.list_tasks(" AND ".join(clauses), page=page, limit=limit)
    return ProjectTasksResponse(
        tasks=[
            ProjectTaskItem(
                task_id=v.task_id,
                project_id=v.project_id,
                task_type=v.task_type,
                status=v.status,
                task_data=v.task_data,
                result=v.result,
                error=v.error,
                metadata=v.metadata,
                created_at=v.created_at,
                updated_at=v.updated_at,
                completed_at=v.completed_at,
            )
            for v in views
        ],
        pagination=Pagination(
            page=page, limit=limit, total=total, total_pages=math.ceil(total / limit) if total else 0
        ),
    )
