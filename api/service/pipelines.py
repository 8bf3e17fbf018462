"""Every operation on pipelines, whatever the surface: admission, tenant scope, limits, the status body.

A pipeline of N steps costs N submit tokens. Retry and rerun start a new pipeline (`retry_of` names the old
one) whose completed steps outside what changed are reused as they are (no task runs again for them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from api.domain.caller import Caller
from api.domain.errors import InvalidState, PipelineNotFound, ServiceError, TaskNotFound, ValidationFailed
from api.domain.pipelines import StartPipeline, StepRequest
from api.service import submission
from api.service.pipeline_admission import AdmittedStep, admit_step, check_graph
from api.service.quotas import Quota, Quotas
from api.service.scope import scope_of
from api.service.starts import TaskStarts
from api.store.pipelines import PipelineStore, PipelineView, new_pipeline_id
from taskservice.contracts import TaskStatus
from taskservice.pipeline_contracts import (
    PipelineInput,
    PipelinePlanInput,
    PipelineRecord,
    PlannedLookup,
    RecordedStep,
    StepOutcome,
    StepPlan,
    StepStatus,
)
from taskservice.pipeline_graph import critical_path, downstream
from taskservice.priority import TaskPriority
from taskservice.render_cache import CacheMode
from taskservice.timefmt import now_z
from taskservice.visibility import TaskQuery

# What a step will do, said before anything runs.
REUSE = "reuse"  # taken from the pipeline it retries: no task runs
CACHE_HIT = "cache"  # answered from the render cache: its content key has an entry (looked up at submit)
RENDER = "render"  # renders: not cacheable, no entry, or an upstream step renders anew
# A pipeline stream reads the pipeline (and its running steps) this often.
WATCH_POLL_S = 0.5


@dataclass
class PlannedStep:
    step_id: str
    task_id: str
    task_type: str
    will: str
    estimated_duration_s: float


@dataclass
class PipelineSubmitted:
    pipeline_id: str | None
    steps: list[PlannedStep]
    estimated_duration_s: float
    retry_of: str | None = None


@dataclass
class StepView:
    step_id: str
    task_id: str
    task_type: str
    status: StepStatus
    progress: float = 0.0
    result: dict[str, Any] | None = None
    error: str | None = None
    cache_hit: bool = False
    reused: bool = False


@dataclass
class PipelineStatus:
    """A pipeline as every surface shows it."""

    pipeline_id: str
    project_id: str
    name: str | None
    status: StepStatus
    progress: float
    steps: list[StepView]
    created_at: datetime
    started_at: str | None
    completed_at: str | None
    retry_of: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class PipelineService:
    def __init__(self, starts: TaskStarts, store: PipelineStore, quotas: Quotas) -> None:
        self.starts = starts
        self.store = store
        self.quotas = quotas

    # --- starts ------------------------------------------------------------------------------------

    async def submit(self, command: StartPipeline) -> PipelineSubmitted:
        """Admit every step, then start the pipeline: N submit tokens for N steps."""
        check_graph(command)
        self.quotas.spend(command.caller, Quota.SUBMIT, cost=len(command.steps))
        return await self._start(command, {})

    async def quote(self, command: StartPipeline) -> PipelineSubmitted:
        """What `submit` would answer (every check, plan, estimate), starting no task: one read token."""
        self.quotas.spend(command.caller, Quota.READ)
        graph = check_graph(command)
        admitted = await self._admitted(command)
        return await self._planned(None, admitted, graph, {}, None)

    async def retry(self, caller: Caller, pipeline_id: str) -> PipelineSubmitted:
        """Run the steps that did not complete again (and theirs after them); the completed are reused."""
        return await self.rerun(caller, pipeline_id, {})

    async def rerun(
        self, caller: Caller, pipeline_id: str, changes: dict[str, dict[str, Any]]
    ) -> PipelineSubmitted:
        """A new pipeline with `changes` merged into the named steps' task_data: the changed steps and
        those after them run, completed steps elsewhere are reused."""
        view = await self._visible(caller, pipeline_id)
        if view.running:
            raise InvalidState(f"Pipeline '{pipeline_id}' is still running; cancel it or wait for it to end")
        started = await self.store.input(pipeline_id)
        command = _command_of(caller, started, changes)
        graph = check_graph(command)
        self.quotas.spend(caller, Quota.SUBMIT, cost=len(command.steps))
        redo = downstream(graph, set(changes))
        done = [s for s in view.state.steps if s.status == StepStatus.COMPLETED and s.step_id not in redo]
        await self._results_of(done)
        return await self._start(command, {s.step_id: replace(s, reused=True) for s in done})

    async def _start(self, command: StartPipeline, reuse: dict[str, StepOutcome]) -> PipelineSubmitted:
        graph = check_graph(command)
        admitted = await self._admitted(command)
        await self.starts.capacity.admit(command.tenant, command.project_id)
        pipeline_id = new_pipeline_id()
        answer = await self._planned(pipeline_id, admitted, graph, reuse, command.retry_of)
        record = PipelineRecord(
            project_id=command.project_id,
            created_at=now_z(),
            tenant=command.tenant,
            user=command.caller.subject,
            name=command.name,
            callback_url=command.callback_url,
            webhook_events=list(command.webhook_events or ["completed"]),
            metadata=command.metadata,
            on_failure=command.on_failure,
            retry_of=command.retry_of,
            steps=[
                RecordedStep(p.step_id, p.task_id, p.task_type, p.estimated_duration_s) for p in answer.steps
            ],
        )
        plans = []
        for step, planned in zip(admitted, answer.steps, strict=True):
            task_record = replace(
                step.record,
                pipeline_id=pipeline_id,
                step_id=planned.step_id,
                callback_url=command.callback_url if "step" in record.webhook_events else None,
                webhook_events=["completed"],
            )
            task = submission.workflow_input(planned.task_id, step.spec, task_record, self.starts.settings)
            plans.append(StepPlan(planned.step_id, task, graph[planned.step_id], reuse.get(planned.step_id)))
        await self.store.start(PipelineInput(pipeline_id, record, plans))
        return answer

    async def _admitted(self, command: StartPipeline) -> list[AdmittedStep]:
        if command.callback_url is not None:
            await self.starts.check_callback(command.callback_url)
        types = {step.step_id: step.task_type for step in command.steps}
        for step in command.steps:
            submission.task_spec(step.task_type, field=f"steps.{step.step_id}.task_type")
        return [await admit_step(self.starts, command, step, types) for step in command.steps]

    async def _planned(
        self,
        pipeline_id: str | None,
        admitted: list[AdmittedStep],
        graph: dict[str, list[str]],
        reuse: dict[str, StepOutcome],
        retry_of: str | None,
    ) -> PipelineSubmitted:
        """Each step's task, what it will do (the render cache looked up before anything starts), and its
        estimate; the critical path of those estimates."""
        hits = await self._cache_hits(admitted, graph, reuse, admitted[0].record.tenant)
        steps: list[PlannedStep] = []
        for step in admitted:
            step_id = step.request.step_id
            reused = reuse.get(step_id)
            if reused is not None:
                steps.append(PlannedStep(step_id, reused.task_id, step.spec.name, REUSE, 0.0))
                continue
            seconds = (await self.starts.estimates.duration(step.spec, step.typed_data)).p50_s
            will = CACHE_HIT if hits.get(step_id) else RENDER
            steps.append(PlannedStep(step_id, submission.new_task_id(), step.spec.name, will, seconds))
        total = critical_path(graph, {s.step_id: s.estimated_duration_s for s in steps})
        return PipelineSubmitted(pipeline_id, steps, round(total, 3), retry_of)

    async def _cache_hits(
        self,
        admitted: list[AdmittedStep],
        graph: dict[str, list[str]],
        reuse: dict[str, StepOutcome],
        tenant: str,
    ) -> dict[str, bool]:
        """Which steps the render cache answers (a reused step counts as one: its result is known)."""
        lookups = []
        for step in admitted:
            step_id = step.request.step_id
            if step_id in reuse:
                continue
            cache = submission.workflow_input("-", step.spec, step.record, self.starts.settings).cache
            looks_up = cache is not None and cache.lookup
            upstream = [u for u in graph[step_id] if u not in reuse]
            lookups.append(PlannedLookup(step_id, step.spec.name, step.record.task_data, looks_up, upstream))
        if not any(lookup.looks_up for lookup in lookups):
            return {}
        reused = {step_id: outcome.result or {} for step_id, outcome in reuse.items()}
        plan = await self.store.plan(PipelinePlanInput(tenant, lookups, reused))
        return plan.hits if plan is not None else {}

    # --- reads and steering -------------------------------------------------------------------------

    async def get(self, caller: Caller, pipeline_id: str) -> PipelineStatus:
        self.quotas.spend(caller, Quota.READ)
        return await self.status_of(await self._visible(caller, pipeline_id))

    async def wait(self, caller: Caller, pipeline_id: str, wait_s: float) -> PipelineStatus:
        """The pipeline once it has ended, or after `wait_s` seconds (one read token, a wait slot)."""
        self.quotas.spend(caller, Quota.READ)
        view = await self._visible(caller, pipeline_id)
        if wait_s <= 0 or not view.running:
            return await self.status_of(view)
        with self.quotas.waits.hold(caller):
            view = await self._ended_within(view, wait_s)
        return await self.status_of(view)

    async def _ended_within(self, view: PipelineView, wait_s: float) -> PipelineView:
        """The pipeline once it has ended or after `wait_s`. Without a webhook it closes as it ends: one
        long-poll on its close, then one read; with one, its state says so first (read every 0.25 s)."""
        if view.record.callback_url is None:
            await self.store.tasks.wait_closed(view.pipeline_id, wait_s)
            return await self.store.get(view.pipeline_id)
        loop = asyncio.get_running_loop()
        until = loop.time() + wait_s
        while not view.state.status.is_terminal and loop.time() < until:
            await asyncio.sleep(min(0.25, max(until - loop.time(), 0)))
            view = await self.store.get(view.pipeline_id)
        return view

    async def watch(self, caller: Caller, pipeline_id: str) -> AsyncIterator[PipelineStatus]:
        """The pipeline now and at every change (a step's status or progress), until it ends; holds one of
        the tenant's stream slots while open (PipelineNotFound before anything)."""
        first = await self.get(caller, pipeline_id)
        return self.quotas.stream(caller, self._changes(first))

    async def _changes(self, first: PipelineStatus) -> AsyncIterator[PipelineStatus]:
        status, last = first, _fingerprint(first)
        yield status
        while not status.status.is_terminal:
            await asyncio.sleep(WATCH_POLL_S)
            status = await self.status_of(await self.store.get(status.pipeline_id))
            if _fingerprint(status) != last:
                last = _fingerprint(status)
                yield status

    async def cancel(self, caller: Caller, pipeline_id: str) -> PipelineStatus:
        self.quotas.spend(caller, Quota.READ)
        view = await self._visible(caller, pipeline_id)
        if not view.running:
            if view.state.status == StepStatus.CANCELLED:
                return await self.status_of(view)
            raise InvalidState(f"Pipeline '{pipeline_id}' has already ended ({view.state.status.value})")
        return await self.status_of(await self.store.cancel(pipeline_id))

    async def list(
        self, caller: Caller, project_id: str, status: TaskStatus | None, *, page: int, limit: int
    ) -> tuple[list[PipelineStatus], int]:
        """The project's pipelines in the caller's scope, newest first (from the memo: no live progress)."""
        self.quotas.spend(caller, Quota.READ)
        query = scope_of(caller).narrow(TaskQuery(project_id=project_id, status=status))
        views, total = await self.store.page(query, page=page, limit=limit)
        return [_status(view, {}) for view in views], total

    async def status_of(self, view: PipelineView) -> PipelineStatus:
        """The status body, running steps' progress and status (and results too large for the pipeline's
        memo) read from their tasks."""
        live: dict[str, tuple[StepStatus, float]] = {}
        await self._results_of(view.state.steps)
        for step in view.state.steps:
            if step.status == StepStatus.PROCESSING:
                try:
                    task = await self.starts.store.get(step.task_id)
                except (TaskNotFound, ServiceError):
                    continue
                if not task.status.is_terminal:
                    live[step.step_id] = (StepStatus(task.status.value), task.progress)
        return _status(view, live)

    async def _results_of(self, steps: Sequence[StepOutcome]) -> None:
        """Fill in the results the pipeline's memo left with their tasks (too large for it)."""
        for step in steps:
            if step.result_in_task:
                step.result, step.result_in_task = (await self.starts.store.get(step.task_id)).result, False

    async def _visible(self, caller: Caller, pipeline_id: str) -> PipelineView:
        """The pipeline if the caller may see it; another tenant's reads exactly as a missing one."""
        view = await self.store.get(pipeline_id)
        if not scope_of(caller).owns(view.tenant, view.user):
            raise PipelineNotFound(pipeline_id)
        return view


def _fingerprint(status: PipelineStatus) -> tuple[Any, ...]:
    return (status.status, status.progress, tuple((s.status, s.progress) for s in status.steps))


def _status(view: PipelineView, live: dict[str, tuple[StepStatus, float]]) -> PipelineStatus:
    record, state = view.record, view.state
    recorded = {s.step_id: s for s in record.steps}
    outcomes = state.steps or [StepOutcome(s.step_id, s.task_id) for s in record.steps]
    steps = []
    for step in outcomes:
        status, progress = live.get(step.step_id, (step.status, 1.0 if step.status.is_terminal else 0.0))
        if step.status == StepStatus.PROCESSING and step.step_id not in live:
            status = StepStatus.QUEUED
        steps.append(
            StepView(
                step_id=step.step_id,
                task_id=step.task_id,
                task_type=recorded[step.step_id].task_type if step.step_id in recorded else "",
                status=status,
                progress=progress,
                result=step.result,
                error=step.error,
                cache_hit=step.cache_hit,
                reused=step.reused,
            )
        )
    weights = {
        s.step_id: max(recorded[s.step_id].estimate_s if s.step_id in recorded else 1.0, 0.001) for s in steps
    }
    total = sum(weights.values()) or 1.0
    progress = sum(weights[s.step_id] * s.progress for s in steps) / total
    if state.status == StepStatus.COMPLETED:
        progress = 1.0
    return PipelineStatus(
        pipeline_id=view.pipeline_id,
        project_id=record.project_id,
        name=record.name,
        status=state.status,
        progress=round(progress, 4),
        steps=steps,
        created_at=view.created_at,
        started_at=state.started_at,
        completed_at=state.completed_at,
        retry_of=record.retry_of,
        metadata=record.metadata,
    )


def _command_of(caller: Caller, started: PipelineInput, changes: dict[str, dict[str, Any]]) -> StartPipeline:
    """The command that started a pipeline, `changes` merged into its steps' task_data (a retry's)."""
    known = {plan.step_id for plan in started.steps}
    unknown = [step for step in changes if step not in known]
    if unknown:
        raise ValidationFailed(
            {f"changes.{unknown[0]}": f"unknown step '{unknown[0]}'; steps: {', '.join(sorted(known))}"}
        )
    record = started.record
    steps = tuple(
        StepRequest(
            step_id=plan.step_id,
            task_type=plan.task.task.task_type,
            task_data={**plan.task.task.task_data, **changes.get(plan.step_id, {})},
            after=tuple(plan.depends_on),
            priority=TaskPriority.parse(plan.task.task.priority),
            cache=CacheMode(plan.task.task.cache),
        )
        for plan in started.steps
    )
    return StartPipeline(
        caller=caller,
        project_id=record.project_id,
        steps=steps,
        name=record.name,
        callback_url=record.callback_url,
        webhook_events=tuple(record.webhook_events),
        metadata=record.metadata,
        on_failure=record.on_failure,
        retry_of=started.pipeline_id,
    )
