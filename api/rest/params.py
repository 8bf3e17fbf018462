"""Path and query parameters that several routes share, each with its one-line description."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from api.domain.commands import PROJECT_ID_PATTERN
from taskservice.catalog import CATALOG
from taskservice.contracts import TaskStatus

TaskIdPath = Annotated[str, Path(description="The task's ID (`task_id` of the submit answer).")]
ProjectIdPath = Annotated[
    str, Path(pattern=PROJECT_ID_PATTERN, description="The project (a name within the caller's tenant).")
]
StatusQuery = Annotated[TaskStatus | None, Query(description="Only tasks in this status.")]
TaskTypeQuery = Annotated[str | None, Query(description=f"Only tasks of this type ({', '.join(CATALOG)}).")]
PageQuery = Annotated[int, Query(ge=1, le=100_000, description="Page number, from 1.")]
LimitQuery = Annotated[int, Query(ge=1, le=100, description="Tasks per page, 1-100.")]
