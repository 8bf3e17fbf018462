"""The one builder of visibility queries over task workflows: no query string is written elsewhere."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from temporalio.client import WorkflowExecutionStatus

from taskservice import search_attributes as sa
from taskservice.contracts import TaskStatus
from taskservice.timefmt import iso_z

TASK_WORKFLOW_TYPE = "TaskWorkflow"
# Pipelines carry the task attributes (owner, user, scope, status) on a workflow type of their own.
PIPELINE_WORKFLOW_TYPE = "PipelineWorkflow"

# A task workflow that closed without recording an outcome (terminated, timed out) reads by how it closed;
# the status clauses below select by the same rule.
CLOSED_AS_STATUS = {
    WorkflowExecutionStatus.COMPLETED: TaskStatus.COMPLETED,
    WorkflowExecutionStatus.FAILED: TaskStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT: TaskStatus.FAILED,
    WorkflowExecutionStatus.CANCELED: TaskStatus.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: TaskStatus.CANCELLED,
}

# Closed without the workflow recording an outcome (terminated, timed out): the execution status decides.
_UNFINISHED = 'TaskStatus IN ("queued", "processing")'
_STATUS_CLAUSES = {
    TaskStatus.QUEUED: 'TaskStatus = "queued" AND ExecutionStatus = "Running"',
    TaskStatus.PROCESSING: 'TaskStatus = "processing" AND ExecutionStatus = "Running"',
    TaskStatus.COMPLETED: 'TaskStatus = "completed"',
    TaskStatus.FAILED: (
        f'(TaskStatus = "failed" OR (ExecutionStatus IN ("Failed", "TimedOut") AND {_UNFINISHED}))'
    ),
    TaskStatus.CANCELLED: (
        f'(TaskStatus = "cancelled" OR (ExecutionStatus IN ("Canceled", "Terminated") AND {_UNFINISHED}))'
    ),
}


def quote(value: str) -> str:
    """A visibility-query string literal (values are validated upstream; escape defensively anyway)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _in(name: str, values: Iterable[str]) -> str:
    listed = list(values)
    if len(listed) == 1:
        return f"{name} = {quote(listed[0])}"
    return f"{name} IN ({', '.join(quote(v) for v in listed)})"


@dataclass(frozen=True)
class TaskQuery:
    """Task workflows matching every field that is set; `str(query)` is the visibility query.

    `status` follows how task views derive a status (a workflow closed without an outcome reads by how it
    closed); `running` is the execution's own state (True: open, False: closed); `unfinished` is an open
    task that has not recorded an outcome yet.
    """

    tenant: str | None = None
    user: str | None = None
    project_id: str | None = None
    task_types: tuple[str, ...] = ()
    status: TaskStatus | None = None
    running: bool | None = None
    unfinished: bool = False
    started_since: datetime | None = None
    started_before: datetime | None = None
    closed_since: datetime | None = None
    closed_before: datetime | None = None
    # Open executions and those closed since this moment (live streams of a project).
    open_or_closed_since: datetime | None = None
    # Pipelines are listed by the same builder (PIPELINE_WORKFLOW_TYPE).
    workflow_type: str = TASK_WORKFLOW_TYPE

    def with_(self, **changes: object) -> TaskQuery:
        return replace(self, **changes)  # type: ignore[arg-type]

    def started_between(self, since: datetime | None, before: datetime | None = None) -> TaskQuery:
        """The same query within a start-time window, intersected with its own."""
        if since is not None and self.started_since is not None:
            since = max(since, self.started_since)
        if before is not None and self.started_before is not None:
            before = min(before, self.started_before)
        return replace(
            self, started_since=since or self.started_since, started_before=before or self.started_before
        )

    def __str__(self) -> str:
        clauses = [f"WorkflowType = {quote(self.workflow_type)}"]
        if self.project_id is not None and self.tenant is not None:
            clauses.append(f"{sa.SCOPE.name} = {quote(sa.scope(self.tenant, self.project_id))}")
        elif self.project_id is not None:
            clauses.append(f"{sa.PROJECT_ID.name} = {quote(self.project_id)}")
        elif self.tenant is not None:
            clauses.append(f"{sa.OWNER.name} = {quote(self.tenant)}")
        if self.task_types:
            clauses.append(_in(sa.TASK_TYPE.name, self.task_types))
        if self.user is not None:
            clauses.append(f"{sa.USER.name} = {quote(self.user)}")
        if self.status is not None:
            clauses.append(_STATUS_CLAUSES[self.status])
        if self.running is not None:
            clauses.append(f'ExecutionStatus {"=" if self.running else "!="} "Running"')
        if self.unfinished:
            clauses.append(f'ExecutionStatus = "Running" AND {_UNFINISHED}')
        for name, op, moment in (
            ("StartTime", ">=", self.started_since),
            ("StartTime", "<", self.started_before),
            ("CloseTime", ">=", self.closed_since),
            ("CloseTime", "<", self.closed_before),
        ):
            if moment is not None:
                clauses.append(f'{name} {op} "{iso_z(moment)}"')
        if self.open_or_closed_since is not None:
            clauses.append(
                f'(ExecutionStatus = "Running" OR CloseTime >= "{iso_z(self.open_or_closed_since)}")'
            )
        return " AND ".join(clauses)
