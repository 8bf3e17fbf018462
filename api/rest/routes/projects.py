"""The project resource: a project's tasks, newest first."""

from __future__ import annotations

import math

from fastapi import APIRouter

from api.domain.errors import ValidationFailed
from api.rest.deps import CallerDep, TaskServiceDep
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses
from api.rest.params import LimitQuery, PageQuery, ProjectIdPath, StatusQuery, TaskTypeQuery
from api.rest.render import project_item
from api.rest.schemas import Pagination, ProjectTasksResponse
from api.service.tasks import TaskFilter

router = APIRouter(prefix="/api/v1/projects", tags=["projects"], route_class=DocumentedRoute)


@router.get("/{project_id}/tasks", responses=error_responses(ValidationFailed, *AUTHENTICATED))
async def project_tasks(
    project_id: ProjectIdPath,
    caller: CallerDep,
    tasks: TaskServiceDep,
    status: StatusQuery = None,
    task_type: TaskTypeQuery = None,
    page: PageQuery = 1,
    limit: LimitQuery = 20,
) -> ProjectTasksResponse:
    """A project's tasks, newest first.

    Seed 001's listing, read from Temporal visibility (finished tasks stay for the retention).
    """
    selection = TaskFilter(project_id=project_id, task_type=task_type, status=status)
    views, total = await tasks.list_tasks(caller, selection, page=page, limit=limit)
    return ProjectTasksResponse(
        tasks=[project_item(v) for v in views],
        pagination=Pagination(
            page=page, limit=limit, total=total, total_pages=math.ceil(total / limit) if total else 0
        ),
    )
