"""The task workflow's render-cache steps: look the key up before taking a slot, keep the result after.

Both run as activities on the workflow queue (`activities.io.cache`): no GPU queue, no model load. Histories
recorded before the cache existed replay unchanged: the steps run only behind `workflow.patched(CACHE_PATCH)`,
and only for tasks whose input carries a `CachePlan`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.exceptions import CancelledError as TemporalCancelledError

with workflow.unsafe.imports_passed_through():
    from activities.io.cache import CacheActivities
    from taskservice.contracts import TaskWorkflowInput
    from taskservice.queues import WORKFLOW_QUEUE
    from taskservice.render_cache import (
        CacheLookup,
        CacheLookupInput,
        CacheStoreInput,
        cache_field,
    )

CACHE_PATCH = "render-cache"
# Fetching input URLs to hash them is the longest part of a lookup (FETCH_TIMEOUT_S each).
LOOKUP_TIMEOUT = timedelta(seconds=120)
STORE_TIMEOUT = timedelta(seconds=30)
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=0.5), maximum_attempts=3)


async def look_up(task: TaskWorkflowInput) -> CacheLookup | None:
    """The task's key and the entry answering it, if any; None when the cache is not involved (or not
    reachable: the task then runs as if uncached)."""
    if task.cache is None or not workflow.patched(CACHE_PATCH):
        return None
    record = task.task
    try:
        return await workflow.execute_activity_method(
            CacheActivities.lookup_cache,
            CacheLookupInput(
                task_id=task.task_id,
                tenant=record.tenant,
                task_type=record.task_type,
                task_data=record.task_data,
                lookup=task.cache.lookup,
            ),
            task_queue=WORKFLOW_QUEUE,
            start_to_close_timeout=LOOKUP_TIMEOUT,
            retry_policy=_RETRY,
        )
    except ActivityError as err:
        if isinstance(err.cause, TemporalCancelledError):
            raise
        workflow.logger.warning("Render cache lookup failed; running uncached", extra={"error": str(err)})
        return None


def hit_result(lookup: CacheLookup) -> dict[str, Any] | None:
    """The result of a task answered from the cache; None when the lookup found no entry."""
    if lookup.hit is None or lookup.key is None:
        return None
    return {**lookup.hit.result, "cache": cache_field(lookup.key, lookup.hit)}


async def remember(
    task: TaskWorkflowInput, lookup: CacheLookup, result: dict[str, Any], processing_seconds: float
) -> dict[str, Any]:
    """Keep a rendered result under its key (when the plan says so); the result says its key."""
    if lookup.key is None:
        return result
    if task.cache is not None and task.cache.store:
        try:
            await workflow.execute_activity_method(
                CacheActivities.store_cache,
                CacheStoreInput(
                    task_id=task.task_id,
                    tenant=task.task.tenant,
                    task_type=task.task.task_type,
                    key=lookup.key,
                    result=result,
                    processing_seconds=processing_seconds,
                ),
                task_queue=WORKFLOW_QUEUE,
                start_to_close_timeout=STORE_TIMEOUT,
                retry_policy=_RETRY,
            )
        except ActivityError as err:
            if isinstance(err.cause, TemporalCancelledError):
                raise
            workflow.logger.warning("Render cache store failed", extra={"error": str(err)})
    return {**result, "cache": cache_field(lookup.key, None)}
