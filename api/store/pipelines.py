"""Pipelines in Temporal, the only store: starts, cancels, reads of the memo, listings, the start input."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import WorkflowExecution, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from api.domain.errors import PipelineNotFound
from api.store.store import TaskStore
from taskservice import search_attributes as sa
from taskservice.contracts import TaskStatus
from taskservice.pipeline_contracts import (
    PIPELINE_ID_PREFIX,
    PipelineInput,
    PipelineMemo,
    PipelineMemoKey,
    PipelinePlan,
    PipelinePlanInput,
    PipelineRecord,
    PipelineState,
    StepStatus,
    pipeline_workflow_id,
)
from taskservice.queues import WORKFLOW_QUEUE
from taskservice.visibility import CLOSED_AS_STATUS, PIPELINE_WORKFLOW_TYPE, TaskQuery
from workflows.pipeline import PipelineWorkflow
from workflows.pipeline_plan import PipelinePlanWorkflow

# How long a cancel waits for the pipeline to close (its running steps cancel first).
CANCEL_WAIT_S = 15.0
# The render-cache lookups of a submit's plan (one per cacheable step, in dependency order) get this long.
PLAN_TIMEOUT_S = 20.0
log = logging.getLogger("taskservice.api")


@dataclass
class PipelineView:
    """A pipeline as recorded: what was submitted and its state (the steps' live progress is the tasks')."""

    pipeline_id: str
    record: PipelineRecord
    state: PipelineState
    created_at: datetime
    running: bool

    @property
    def tenant(self) -> str:
        return self.record.tenant

    @property
    def user(self) -> str | None:
        return self.record.user


def new_pipeline_id() -> str:
    return f"{PIPELINE_ID_PREFIX}{uuid.uuid4()}"


def is_pipeline_id(value: str) -> bool:
    if not value.startswith(PIPELINE_ID_PREFIX):
        return False
    try:
        uuid.UUID(value.removeprefix(PIPELINE_ID_PREFIX))
    except ValueError:
        return False
    return True


def _view(execution: WorkflowExecution, memo: PipelineMemo) -> PipelineView:
    state = memo.state or PipelineState(StepStatus.QUEUED, [])
    running = execution.status == WorkflowExecutionStatus.RUNNING
    if not running and not state.status.is_terminal:
        # Closed without recording its end (terminated, timed out): how it closed says.
        closed = CLOSED_AS_STATUS.get(execution.status or WorkflowExecutionStatus.TERMINATED)
        state.status = StepStatus(closed.value if closed else TaskStatus.CANCELLED.value)
    return PipelineView(execution.id, memo.pipeline, state, execution.start_time, running)


class PipelineStore:
    """Pipelines of one Temporal connection (listings through the task store's visibility paging)."""

    def __init__(self, tasks: TaskStore) -> None:
        self.tasks = tasks
        self.client = tasks.client

    async def start(self, pipeline: PipelineInput) -> None:
        record = pipeline.record
        attributes = [
            SearchAttributePair(sa.OWNER, record.tenant),
            SearchAttributePair(sa.PROJECT_ID, record.project_id),
            SearchAttributePair(sa.SCOPE, sa.scope(record.tenant, record.project_id)),
            SearchAttributePair(sa.TASK_STATUS, TaskStatus.QUEUED.value),
        ]
        if record.user:
            attributes.append(SearchAttributePair(sa.USER, record.user))
        await self.client.start_workflow(
            PipelineWorkflow.run,
            pipeline,
            id=pipeline_workflow_id(pipeline.pipeline_id),
            task_queue=WORKFLOW_QUEUE,
            memo={PipelineMemoKey.PIPELINE: record},
            search_attributes=TypedSearchAttributes(attributes),
            static_summary=f"pipeline · {record.project_id} · {record.tenant} · {len(pipeline.steps)} steps",
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )

    async def plan(self, plan: PipelinePlanInput) -> PipelinePlan | None:
        """Which steps the render cache answers, looked up before the pipeline starts; None when the lookups
        could not run in time (no workflow worker, Temporal busy): the caller then cannot say."""
        try:
            return await self.client.execute_workflow(
                PipelinePlanWorkflow.run,
                plan,
                id=f"pipeline-plan-{uuid.uuid4()}",
                task_queue=WORKFLOW_QUEUE,
                execution_timeout=timedelta(seconds=PLAN_TIMEOUT_S),
            )
        except (WorkflowFailureError, RPCError):
            log.warning("Pipeline plan lookups failed; answering without them", extra={"tenant": plan.tenant})
            return None

    async def get(self, pipeline_id: str) -> PipelineView:
        if not is_pipeline_id(pipeline_id):
            raise PipelineNotFound(pipeline_id)
        try:
            desc = await self.client.get_workflow_handle(pipeline_workflow_id(pipeline_id)).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise PipelineNotFound(pipeline_id) from None
            raise
        memo = PipelineMemo.parse(await desc.memo())
        if memo is None:
            raise PipelineNotFound(pipeline_id)
        return _view(desc, memo)

    async def input(self, pipeline_id: str) -> PipelineInput:
        """What the pipeline was started with (its first history event)."""
        handle = self.client.get_workflow_handle(pipeline_workflow_id(pipeline_id))
        async for event in handle.fetch_history_events():
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            converter = self.client.data_converter.payload_converter
            started: PipelineInput = converter.from_payloads(payloads, [PipelineInput])[0]
            return started
        raise PipelineNotFound(pipeline_id)

    async def cancel(self, pipeline_id: str) -> PipelineView:
        """Ask the pipeline to cancel and wait (a few seconds) for its steps to end; the pipeline after."""
        handle = self.client.get_workflow_handle(pipeline_workflow_id(pipeline_id))
        await handle.cancel()
        loop = asyncio.get_running_loop()
        asked_at = loop.time()
        while loop.time() - asked_at < CANCEL_WAIT_S:
            view = await self.get(pipeline_id)
            if not view.running:
                return view
            await asyncio.sleep(0.2)
        return await self.get(pipeline_id)

    async def page(self, query: TaskQuery, *, page: int, limit: int) -> tuple[list[PipelineView], int]:
        """Page `page` of the matching pipelines, newest first, and how many match in all."""
        executions, total = await self.tasks.executions_page(
            query.with_(workflow_type=PIPELINE_WORKFLOW_TYPE), page=page, limit=limit
        )
        views = []
        for execution in executions:
            memo = PipelineMemo.parse(await execution.memo())
            if memo is not None:
                views.append(_view(execution, memo))
        return views, total
