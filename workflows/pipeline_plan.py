"""What a pipeline will render, found before it starts: each step's content key looked up in the render cache,
in dependency order, references resolved from the hits of the steps before (a step after one that renders
renders too: its inputs are new). Run by the API for a submit; its answer says which steps are hits.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.io.cache import CacheActivities
    from taskservice.pipeline_contracts import PipelinePlan, PipelinePlanInput, PlannedLookup
    from taskservice.pipeline_graph import UnresolvedReference, resolve
    from taskservice.queues import WORKFLOW_QUEUE
    from taskservice.render_cache import CacheLookup, CacheLookupInput

# A lookup fetches the step's input URLs to hash them (the frame a video starts from): seconds at most.
LOOKUP_TIMEOUT = timedelta(seconds=60)


@workflow.defn(name="PipelinePlanWorkflow", sandboxed=False)
class PipelinePlanWorkflow:
    @workflow.run
    async def run(self, plan: PipelinePlanInput) -> PipelinePlan:
        # What references resolve against: the results of reused steps, then of the hits found here.
        bodies: dict[str, dict[str, Any]] = {k: {"result": v} for k, v in plan.reused_results.items()}
        answer: dict[str, bool] = {}
        for step in plan.steps:
            upstream_hit = all(answer.get(up) for up in step.depends_on)
            found = await _look_up(plan.tenant, step, bodies) if step.looks_up and upstream_hit else None
            answer[step.step_id] = found is not None
            if found is not None and found.hit is not None:
                bodies[step.step_id] = {"result": found.hit.result}
        return PipelinePlan(answer)


async def _look_up(tenant: str, step: PlannedLookup, bodies: dict[str, dict[str, Any]]) -> CacheLookup | None:
    """The step's live entry, its references resolved from the results before it; None: a miss."""
    try:
        task_data = resolve(step.task_data, bodies)
        found: CacheLookup = await workflow.execute_activity_method(
            CacheActivities.lookup_cache,
            CacheLookupInput(
                task_id=f"plan-{step.step_id}",
                tenant=tenant,
                task_type=step.task_type,
                task_data=task_data,
                lookup=True,
            ),
            task_queue=WORKFLOW_QUEUE,
            start_to_close_timeout=LOOKUP_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=2),
        )
    except (UnresolvedReference, KeyError, ActivityError):
        return None
    return found if found.hit is not None else None
