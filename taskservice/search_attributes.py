"""Custom search attributes (Keyword) that operators filter on in the Temporal UI and CLI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

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

ALL = (PROJECT_ID, TASK_TYPE, TASK_STATUS, OWNER, USER, SCOPE, WEBHOOK_STATUS)


def scope(tenant: str, project_id: str) -> str:
    """The `TaskScope` value of a tenant's project."""
    return f"{tenant}/{project_id}"
