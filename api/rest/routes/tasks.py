"""The task resource: submit, status, cancel, retry (seed 001); the task and the caller's list (seed 002)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Response

from api.domain.commands import PROJECT_ID_PATTERN
from api.domain.errors import (
    DeadlineUnreachable,
    IdempotencyConflict,
    InvalidState,
    PayloadTooLarge,
    TaskNotFound,
    ValidationFailed,
)
from api.rest.commands import start_task
from api.rest.deps import CallerDep, TaskServiceDep
from api.rest.headers import entity_tags, matches, preferred_wait, prefers_strict
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses, submit_examples
from api.rest.params import LimitQuery, PageQuery, StatusQuery, TaskIdPath, TaskTypeQuery
from api.rest.render import (
    finished_submit_response,
    status_etag,
    status_response,
    submit_response,
    task_detail,
)
from api.rest.routes import task_paths  # noqa: F401 - registers the {task_id:task_id} convertor
from api.rest.schemas import (
    CancelTaskResponse,
    FinishedSubmitResponse,
    RetryTaskResponse,
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskDetail,
    TaskStatusResponse,
)
from api.service.tasks import TaskFilter
from api.service.waiting import MAX_WAIT_S
from api.store.projection import TaskView
from taskservice.contracts import TaskStatus

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"], route_class=DocumentedRoute)
STATUS_ETAG = {
    "description": "The status's version: send it back as `If-None-Match` to wait for the next change.",
    "schema": {"type": "string"},
}
REPLAYED = {
    "description": "`true` when an `Idempotency-Key` repeat returned the existing task.",
    "schema": {"type": "string"},
}
PAGE_HEADERS = {
    "X-Total-Count": {"description": "Tasks matching, on all pages.", "schema": {"type": "integer"}},
    "X-Page": {"description": "This page's number.", "schema": {"type": "integer"}},
    "X-Limit": {"description": "Tasks per page.", "schema": {"type": "integer"}},
    "Link": {
        "description": '`<?page=N&limit=L>; rel="next"` while there are more.',
        "schema": {"type": "string"},
    },
}

SubmitPrefer = Annotated[
    str | None,
    Header(
        alias="Prefer",
        max_length=200,
        description="`wait=N` (N <= 60): answer with the finished task if it ends within N seconds; "
        "`handling=strict`: refuse a `deadline_s` the task is not predicted to meet (422).",
    ),
]


@router.post(
    "/submit",
    responses={
        200: {"headers": {"Idempotent-Replayed": REPLAYED}},
        **error_responses(
            ValidationFailed, PayloadTooLarge, IdempotencyConflict, DeadlineUnreachable, *AUTHENTICATED
        ),
    },
)
async def submit_task(
    body: Annotated[SubmitTaskRequest, Body(openapi_examples=submit_examples())],
    caller: CallerDep,
    tasks: TaskServiceDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="A repeat of this request returns the same task (per tenant, for the retention).",
        ),
    ] = None,
    cancel_after: Annotated[
        str | None,
        Header(
            alias="Cancel-After",
            max_length=32,
            description="Deadline from now (`90`, `90s`, `5m`, `1h30m`); wins over `deadline_s`.",
        ),
    ] = None,
    prefer: SubmitPrefer = None,
) -> FinishedSubmitResponse | SubmitTaskResponse:
    """Submit a task.

    Validates `task_data` against the `task_type`'s schema and starts the task's durable workflow (its ID
    is the `task_id`). With `Idempotency-Key`, a repeat of the same body returns the same task
    (`Idempotent-Replayed: true`).
    """
    wait_s = preferred_wait(prefer)
    command = start_task(
        caller,
        body,
        idempotency_key=idempotency_key,
        cancel_after=cancel_after,
        strict=prefers_strict(prefer),
    )
    if wait_s:
        submitted = await tasks.submit_and_wait(caller, command, wait_s)
    else:
        submitted = await tasks.submit(caller, command)
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if submitted.waited:
        response.headers["Preference-Applied"] = f"wait={wait_s:.0f}"
    if submitted.finished is not None:
        return finished_submit_response(submitted, submitted.finished)
    return submit_response(submitted)


@router.get(
    "", responses={200: {"headers": PAGE_HEADERS}, **error_responses(ValidationFailed, *AUTHENTICATED)}
)
async def list_my_tasks(
    caller: CallerDep,
    tasks: TaskServiceDep,
    response: Response,
    status: StatusQuery = None,
    task_type: TaskTypeQuery = None,
    project_id: Annotated[
        str | None, Query(pattern=PROJECT_ID_PATTERN, description="Only tasks of this project.")
    ] = None,
    page: PageQuery = 1,
    limit: LimitQuery = 20,
) -> list[TaskDetail]:
    """The caller's tasks (seed 002), newest first.

    A JSON array as seed 002 answers it; pagination in `X-Total-Count`, `X-Page`, `X-Limit` and `Link`
    headers. An API key sees its tenant's tasks, a user token the tasks its `sub` created.
    """
    selection = TaskFilter(project_id=project_id, task_type=task_type, status=status, mine=True)
    views, total = await tasks.list_tasks(caller, selection, page=page, limit=limit)
    response.headers["X-Total-Count"] = str(total)
    response.headers["X-Page"] = str(page)
    response.headers["X-Limit"] = str(limit)
    if page * limit < total:
        response.headers["Link"] = f'<?page={page + 1}&limit={limit}>; rel="next"'
    return [task_detail(v) for v in views]


@router.get("/{task_id:task_id}", responses=error_responses(TaskNotFound, *AUTHENTICATED))
async def get_task(task_id: TaskIdPath, caller: CallerDep, tasks: TaskServiceDep) -> TaskDetail:
    """A task as seed 002 shows it.

    Progress 0-100, `message`, and `error` as `{type, message}`.
    """
    view = await tasks.get(caller, task_id)
    return task_detail(view, await tasks.estimate(view))


@router.get(
    "/{task_id:task_id}/status",
    response_model=TaskStatusResponse,
    responses={
        200: {"headers": {"ETag": STATUS_ETAG}},
        304: {
            "description": "Still as in `If-None-Match` (after `wait`, if given).",
            "headers": {"ETag": STATUS_ETAG},
        },
        **error_responses(ValidationFailed, TaskNotFound, *AUTHENTICATED),
    },
)
async def task_status(
    task_id: TaskIdPath,
    caller: CallerDep,
    tasks: TaskServiceDep,
    response: Response,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for a change.")] = 0,
    since_status: Annotated[TaskStatus | None, Query(description="The status the client last saw.")] = None,
    if_none_match: Annotated[
        str | None,
        Header(
            alias="If-None-Match",
            max_length=1000,
            description="`ETag`s of answers already seen: 304 while the status still matches one.",
        ),
    ] = None,
) -> TaskStatusResponse | Response:
    """Status, progress and result.

    Seed 001's status: `progress` 0-1 from the task's own heartbeats, `current_step`, `result` once
    completed, `error` once failed. With `wait=N` and `since_status` or `If-None-Match` (the `ETag` of a
    previous answer), the answer comes as soon as the task differs from that, or after N seconds (304 if it
    still matches `If-None-Match`); a finished task answers at once.
    """
    tags = entity_tags(if_none_match)

    def changed(view: TaskView) -> bool:
        if since_status is not None and view.status != since_status:
            return True
        return tags is not None and not matches(status_etag(view), tags)

    if wait and (since_status is not None or tags is not None):
        view = await tasks.wait_for_change(caller, task_id, changed, wait)
    else:
        view = await tasks.get(caller, task_id)
    etag = status_etag(view)
    if tags is not None and matches(etag, tags):
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return status_response(view, await tasks.estimate(view))


@router.delete("/{task_id:task_id}", responses=error_responses(InvalidState, TaskNotFound, *AUTHENTICATED))
async def cancel_task(task_id: TaskIdPath, caller: CallerDep, tasks: TaskServiceDep) -> CancelTaskResponse:
    """Cancel a queued or running task.

    Queued: removed without running. Running: the activity is cancelled at its next heartbeat and gets up
    to 30 s to clean up. Already cancelled: 200 again. Completed or failed: 400.
    """
    cancelled = await tasks.cancel(caller, task_id)
    return CancelTaskResponse(
        task_id=task_id,
        status=TaskStatus.CANCELLED,
        message=cancelled.message,
        previous_state=cancelled.before.status,
        cancelled_at=cancelled.after.completed_at or datetime.now(UTC),
    )


@router.post(
    "/{task_id:task_id}/retry",
    responses=error_responses(InvalidState, ValidationFailed, TaskNotFound, *AUTHENTICATED),
)
async def retry_task(task_id: TaskIdPath, caller: CallerDep, tasks: TaskServiceDep) -> RetryTaskResponse:
    """Run a finished task again.

    A new task with the same inputs (`retry_of` names the original); a task still queued or running answers
    400, and so do inputs above the media work budget in force now (`validation_error`).
    """
    view = await tasks.retry(caller, task_id)
    return RetryTaskResponse(
        new_task_id=view.task_id,
        original_task_id=task_id,
        status=view.status,
        message="Task retry submitted successfully",
    )
