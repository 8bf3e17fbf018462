"""Operator endpoints (ADMIN_API_KEY)."""

from __future__ import annotations

from fastapi import APIRouter

from api.domain.errors import Forbidden, PayloadTooLarge, ValidationFailed
from api.rest.deps import AdminServiceDep, CallerDep
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses
from api.rest.schemas import CleanupRequest, CleanupResponse

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], route_class=DocumentedRoute)


@router.post(
    "/cleanup", responses=error_responses(ValidationFailed, Forbidden, PayloadTooLarge, *AUTHENTICATED)
)
async def admin_cleanup(body: CleanupRequest, caller: CallerDep, admin: AdminServiceDep) -> CleanupResponse:
    """Delete old finished tasks, cancel stale queued ones (ADMIN_API_KEY).

    Every tenant's tasks. Temporal deletes asynchronously; `dry_run` only lists what would go.
    """
    done = await admin.cleanup(
        caller,
        finished_older_than_h=body.finished_older_than_hours,
        queued_older_than_h=body.cancel_queued_older_than_hours,
        dry_run=body.dry_run,
    )
    return CleanupResponse(
        deleted=len(done.deleted),
        cancelled=len(done.cancelled),
        dry_run=body.dry_run,
        task_ids=done.deleted + done.cancelled,
    )
