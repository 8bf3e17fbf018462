"""Many tasks at once: batch submit, bulk cancel and retry by filter."""

from __future__ import annotations

from fastapi import APIRouter

from api.domain.errors import PayloadTooLarge, ValidationFailed, error_body
from api.rest.commands import batch_item
from api.rest.deps import BulkServiceDep, CallerDep
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses
from api.rest.render import submit_response
from api.rest.schemas import (
    BatchItemResult,
    BatchSubmitRequest,
    BatchSubmitResponse,
    BulkFilter,
    BulkResponse,
    ErrorResponse,
)
from api.service.bulk import BatchItem, BulkResult
from api.service.tasks import TaskFilter

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"], route_class=DocumentedRoute)


@router.post("/batch", responses=error_responses(ValidationFailed, PayloadTooLarge, *AUTHENTICATED))
async def submit_batch(
    body: BatchSubmitRequest, caller: CallerDep, bulk: BulkServiceDep
) -> BatchSubmitResponse:
    """Submit up to 100 tasks; each item succeeds or fails on its own.

    Each item is a submit body, validated and started on its own: `results[i]` holds its task or its error,
    and one bad item does not sink the rest. The batch costs one submission per item.
    """
    commands = [batch_item(caller, item) for item in body.tasks]
    results = [_item_result(item) for item in await bulk.submit_batch(caller, commands)]
    created = sum(r.success for r in results)
    return BatchSubmitResponse(created=created, failed=len(results) - created, results=results)


def _item_result(item: BatchItem) -> BatchItemResult:
    if item.submitted is not None:
        return BatchItemResult(index=item.index, success=True, task=submit_response(item.submitted))
    assert item.error is not None
    return BatchItemResult(index=item.index, success=False, error=ErrorResponse(**error_body(item.error)))


def _selection(flt: BulkFilter) -> TaskFilter:
    return TaskFilter(project_id=flt.project_id, task_type=flt.task_type, status=flt.status)


def _bulk_response(result: BulkResult) -> BulkResponse:
    return BulkResponse(
        matched=result.matched, affected=len(result.task_ids), task_ids=result.task_ids, errors=result.errors
    )


@router.post("/bulk/cancel", responses=error_responses(ValidationFailed, PayloadTooLarge, *AUTHENTICATED))
async def bulk_cancel(flt: BulkFilter, caller: CallerDep, bulk: BulkServiceDep) -> BulkResponse:
    """Cancel the unfinished tasks a filter selects.

    Give at least one of `project_id`, `task_type`, `status`; a task that cannot be cancelled is named in
    `errors`.
    """
    return _bulk_response(await bulk.cancel(caller, _selection(flt)))


@router.post("/bulk/retry", responses=error_responses(ValidationFailed, PayloadTooLarge, *AUTHENTICATED))
async def bulk_retry(flt: BulkFilter, caller: CallerDep, bulk: BulkServiceDep) -> BulkResponse:
    """Retry the failed and cancelled tasks a filter selects.

    Each retry is a submission (rate and per-project limits apply to each; what they refuse is named in
    `errors`).
    """
    return _bulk_response(await bulk.retry(caller, _selection(flt)))
