"""Custom search attributes (Keyword) that operators filter on in the Temporal UI and CLI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from taskservice.record import TaskRecord

PROJECT_ID = SearchAttributeKey.for_keyword("ProjectId")
TASK_TYPE = SearchAttributeKey.for_keyword("TaskType")
TASK_STATUS = SearchAttributeKey.for_keyword("TaskStatus")
# The tenant that owns the task (operators filter `TaskOwner = "acme"` in the Web UI).
OWNER = SearchAttributeKey.for_keyword("TaskOwner")
# The JWT user (`sub`) who created it, when a user did.
USER = SearchAttributeKey.for_keyword("TaskUser")

# The tenant's project, `tenant/project` (a project ID has no `/`, so the last one splits it): a listing of
# one project is one exact match, where `ProjectId` and `TaskOwner` together let a visibility store without
# statistics (the dev server's SQLite) walk every task of the tenant.
SCOPE = SearchAttributeKey.for_keyword("TaskScope")

# A recorded webhook delivery's state (`failed`, `retrying`, `delivered`), on WebhookRecordWorkflow only.
WEBHOOK_STATUS = SearchAttributeKey.for_keyword("WebhookStatus")

# A pipeline step's pipeline and its step ID (on the step's TaskWorkflow); pipelines themselves are
# PipelineWorkflows with the task attributes above (owner, user, scope, status).
PIPELINE_ID = SearchAttributeKey.for_keyword("PipelineId")
STEP_ID = SearchAttributeKey.for_keyword("PipelineStep")

ALL = (PROJECT_ID, TASK_TYPE, TASK_STATUS, OWNER, USER, SCOPE, WEBHOOK_STATUS, PIPELINE_ID, STEP_ID)


def scope(tenant: str, project_id: str) -> str:
    """The `TaskScope` value of a tenant's project."""
    return f"{tenant}/{project_id}"


def task_attributes(record: TaskRecord, status: str) -> TypedSearchAttributes:
    """A task workflow's search attributes at its start (a standalone task's, or a pipeline step's)."""
    pairs: list[SearchAttributePair[str]] = [
        SearchAttributePair(PROJECT_ID, record.project_id),
        SearchAttributePair(TASK_TYPE, record.task_type),
        SearchAttributePair(TASK_STATUS, status),
        SearchAttributePair(OWNER, record.tenant),
        SearchAttributePair(SCOPE, scope(record.tenant, record.project_id)),
    ]
    if record.user:
        pairs.append(SearchAttributePair(USER, record.user))
    if record.pipeline_id is not None and record.step_id is not None:
        pairs += [
            SearchAttributePair(PIPELINE_ID, record.pipeline_id),
            SearchAttributePair(STEP_ID, record.step_id),
        ]
    return TypedSearchAttributes(pairs)
