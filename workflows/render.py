"""The task workflow's render-cache steps: look the key up before taking a slot, keep the result after.

Both run as activities on the workflow queue (`activities.io.cache`): no GPU queue, no model load. Histories
recorded before the cache existed replay unchanged: the steps run only behind `workflow.patched(CACHE_PATCH)`,
and only for tasks whose input carries a `CachePlan`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import CancelledError as TemporalCancelledError

with workflow.unsafe.imports_passed_through():
    from activities.io.cache import CacheActivities
    from taskservice.contracts import TaskWorkflowInput
    from taskservice.queues import WORKFLOW_QUEUE
    from taskservice.render_cache import (
        DETACH_SIGNAL,
        CacheLookup,
        CacheLookupInput,
        CacheStoreInput,
        cache_field,
        render_workflow_id,
    )
    from taskservice.render_contracts import JoinRender, RenderInput

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


def coalesces(task: TaskWorkflowInput, lookup: CacheLookup | None) -> bool:
    """Whether a missed task waits on its key's one render (`RenderWorkflow`) instead of rendering itself:
    any task that may be answered from the cache; `refresh` renders on its own."""
    return lookup is not None and lookup.key is not None and task.cache is not None and task.cache.lookup


async def join(task: TaskWorkflowInput, key: str) -> None:
    """Attach the task to the render of its key, starting the render if none runs."""
    record = task.task
    render_task = replace(
        task,
        task_id=render_workflow_id(record.tenant, key),
        # The render sends no webhooks of its own and is not cached again: its tasks do both.
        task=replace(record, callback_url=None, webhook_events=[], metadata={}, cache="off"),
        deadline_at=None,
        cache=None,
    )
    store = task.cache is not None and task.cache.store
    await workflow.execute_activity_method(
        CacheActivities.join_render,
        JoinRender(RenderInput(render_task, key, task.task_id, store), task.task_id),
        task_queue=WORKFLOW_QUEUE,
        start_to_close_timeout=STORE_TIMEOUT,
        retry_policy=_RETRY,
    )


async def detach(task: TaskWorkflowInput, key: str) -> None:
    """Tell the render this task no longer waits (the render stops when no task waits on it)."""
    handle = workflow.get_external_workflow_handle(render_workflow_id(task.task.tenant, key))
    try:
        await handle.signal(DETACH_SIGNAL, task.task_id)
    except (ApplicationError, FailureError):
        pass  # the render has ended already


async def keep(
    tenant: str, task_type: str, key: str, source_task_id: str, result: dict[str, Any], seconds: float
) -> None:
    """Keep a rendered result under its key (a failure to keep it only logs: the task still completes)."""
    try:
        await workflow.execute_activity_method(
            CacheActivities.store_cache,
            CacheStoreInput(
                task_id=source_task_id,
                tenant=tenant,
                task_type=task_type,
                key=key,
                result=result,
                processing_seconds=seconds,
            ),
            task_queue=WORKFLOW_QUEUE,
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=_RETRY,
        )
    except ActivityError as err:
        if isinstance(err.cause, TemporalCancelledError):
            raise
        workflow.logger.warning("Render cache store failed", extra={"error": str(err)})


async def remember(
    task: TaskWorkflowInput, lookup: CacheLookup, result: dict[str, Any], processing_seconds: float
) -> dict[str, Any]:
    """Keep a rendered result under its key (when the plan says so); the result says its key."""
    if lookup.key is None:
        return result
    if task.cache is not None and task.cache.store:
        record = task.task
        await keep(record.tenant, record.task_type, lookup.key, task.task_id, result, processing_seconds)
    return {**result, "cache": cache_field(lookup.key, None)}
