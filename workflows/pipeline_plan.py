"""What a pipeline will render, found before it starts: each step's content key looked up in the render cache,
in dependency order, references resolved from the hits of the steps before (a step after one that renders
renders too: its inputs are new). Run by the API for a submit; its answer says which steps are hits.
"""

from __future__ import annotations

import asyncio
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
        pending = list(plan.steps)
        while pending:
            # Every step whose upstream steps are decided is looked up at once (a level of the graph).
            level = [s for s in pending if all(up in answer for up in s.depends_on)]
            if not level:
                break  # unreachable for an acyclic graph (the API refused cycles)
            found = await asyncio.gather(*(self._decide(plan.tenant, s, answer, bodies) for s in level))
            for step, hit in zip(level, found, strict=True):
                answer[step.step_id] = hit is not None
                if hit is not None and hit.hit is not None:
                    bodies[step.step_id] = {"result": hit.hit.result}
            pending = [s for s in pending if s.step_id not in answer]
        return PipelinePlan(answer)

    async def _decide(
        self, tenant: str, step: PlannedLookup, answer: dict[str, bool], bodies: dict[str, dict[str, Any]]
    ) -> CacheLookup | None:
        """The step's hit, if the cache may answer it and every step it waits for is a hit too."""
        if not step.looks_up or not all(answer[up] for up in step.depends_on):
            return None
        return await _look_up(tenant, step, bodies)


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
