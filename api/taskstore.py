"""Task state, read from and written to Temporal (the only store): starts, describes, lists, cancels."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution as WorkflowExecution_
from temporalio.api.enums.v1 import PendingActivityState, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest, DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
)
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import InvalidState, TaskNotFound
from taskservice.catalog import CATALOG
from taskservice.contracts import (
    ConcurrencySlot,
    MetricsState,
    RetryRecorded,
    TaskOutcome,
    TaskStatus,
    TaskWorkflowInput,
    WorkerReport,
)
from taskservice.priority import TaskPriority
from taskservice.queues import METRICS_WORKFLOW_ID, WORKER_REGISTRY_WORKFLOW_ID, WORKFLOW_QUEUE, Queue
from taskservice.settings import Settings
from workflows import search_attributes as sa
from workflows.task import (
    CLOSED_AS_STATUS,
    MEMO_ATTEMPT,
    MEMO_OUTCOME,
    MEMO_STARTED_AT,
    MEMO_WAITING_FOR_SLOT,
    TaskWorkflow,
)

# A poller that has not polled for this long is gone (killed workers stay listed for minutes).
POLLER_FRESHNESS = timedelta(seconds=70)
# How long DELETE waits for the workflow to close before answering.
CANCEL_WAIT_S = 8.0
# With no workflow worker at all a cancel request cannot be processed; a never-started task is then
# terminated after this long so that it is still removed without running.
QUEUED_CANCEL_TERMINATE_AFTER_S = 3.0
# Every queued task's status names its queue's backlog and pollers; one DescribeTaskQueue per queue per
# this long serves them all (status polling of queued tasks was a third of the frontend's requests).
QUEUE_STATE_TTL_S = 1.0
# Listings read a start-time window holding at most 2 × page × limit + this many tasks, narrowed by up to
# this many rounds of this many parallel counts (each round cuts the window's time span eightfold).
WINDOW_SLACK = 20
NARROW_ROUNDS = 4
NARROW_PROBES = 7
# Deep pages: the first round counts from these moments back from now (and from the epoch, which is the
# total); each later round counts, in each bracket still too wide, where its cut's rank would fall and its
# middle.
RANK_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RANK_FIRST_PROBES_S = (60, 600, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
RANK_ROUNDS = 6


@dataclass
class TaskView:
    task_id: str
    project_id: str
    task_type: str
    status: TaskStatus
    task_data: dict[str, Any]
    metadata: dict[str, Any]
    priority: TaskPriority
    callback_url: str | None
    created_at: datetime
    updated_at: datetime
    progress: float = 0.0
    current_step: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    processing_time: float | None = None
    attempt: int = 0
    retry_of: str | None = None
    request_hash: str | None = None
    queue: str = ""
    deadline_s: float | None = None
    webhook_events: list[str] = field(default_factory=lambda: ["completed"])


@dataclass
class QueueState:
    name: str
    backlog: int
    pollers: list[str] = field(default_factory=list)


def new_task_id() -> str:
    return str(uuid.uuid4())


def is_task_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def started_since(moment: datetime) -> str:
    return f'StartTime >= "{_visibility_time(moment)}"'


def _started_before(moment: datetime) -> str:
    return f'StartTime < "{_visibility_time(moment)}"'


def _visibility_time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


Point = tuple[datetime | None, int]


def _rank_brackets(
    counted: dict[datetime, int], newer_than: int, at_least: int
) -> tuple[tuple[Point, Point], ...]:
    """Around the upper cut (the earliest counted start time with at most `newer_than` executions from it
    on) and the lower cut (the latest with at least `at_least`), each with its neighbour beyond it.
    `None` stands for "after every start time", where nothing is counted."""
    points: list[Point] = [*sorted(counted.items()), (None, 0)]
    upper = next(i for i, (_, n) in enumerate(points) if n <= newer_than)
    lower = max((i for i, (_, n) in enumerate(points) if n >= at_least), default=0)
    return (points[max(upper - 1, 0)], points[upper]), (points[lower], points[lower + 1])


def _bracket_probes(bracket: tuple[Point, Point], ranks: list[int], horizon: datetime) -> list[datetime]:
    """Start times to count inside a bracket: where each rank would fall if starts were spread evenly over
    it (often nearly so), and its middle (which halves it where they are not)."""
    (start, n_start), (end, n_end) = bracket
    assert start is not None
    stop = end if end is not None else max(horizon, start + timedelta(seconds=1))
    span = stop - start
    if span <= timedelta(microseconds=2):
        return []
    probes = {start + span / 2}
    for rank in ranks:
        share = (n_start - rank) / (n_start - n_end) if n_start != n_end else 0.5
        probes.add(start + span * min(max(share, 0.0), 1.0))
    return sorted(t for t in probes if start < t < stop)


def _quote(value: str) -> str:
    """A visibility-query string literal (values are validated upstream; escape defensively anyway)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TaskStore:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._queue_states: dict[str, tuple[float, asyncio.Future[QueueState]]] = {}

    @property
    def client(self) -> Client:
        return self._client

    # --- writes ------------------------------------------------------------------------------------

    async def start(
        self,
        *,
        task_id: str,
        owner: str,
        project_id: str,
        task_type: str,
        task_data: dict[str, Any],
        priority: TaskPriority,
        callback_url: str | None,
        metadata: dict[str, Any],
        retry_of: str | None = None,
        request_hash: str | None = None,
        deadline_s: float | None = None,
        webhook_events: list[str] | None = None,
    ) -> tuple[TaskView, bool]:
        """Start the task's workflow; if the ID exists (idempotent replay) return that task instead."""
        spec = CATALOG[task_type]
        created_at = datetime.now(UTC)
        task = TaskWorkflowInput(
            task_id=task_id,
            project_id=project_id,
            task_type=task_type,
            task_data=task_data,
            plan=spec.plan(self._settings.task_retry_initial_interval),
            created_at=created_at.isoformat(),
            priority=priority.value,
            callback_url=callback_url,
            metadata=metadata,
            retry_of=retry_of,
            deadline_at=(created_at + timedelta(seconds=deadline_s)).isoformat() if deadline_s else None,
            webhook_events=list(webhook_events or ["completed"]),
            concurrency=[
                ConcurrencySlot(group, limit)
                for group, limit in self._settings.concurrency_limits(spec.concurrency_group)
            ],
        )
        memo = {
            "task": {
                "project_id": project_id,
                "task_type": task_type,
                "task_data": task_data,
                "metadata": metadata,
                "priority": priority.value,
                "callback_url": callback_url,
                "created_at": task.created_at,
                "retry_of": retry_of,
                "queue": spec.queue.value,
                "deadline_s": deadline_s,
                "webhook_events": task.webhook_events,
            },
            "request_hash": request_hash,
        }
        try:
            await self._client.start_workflow(
                TaskWorkflow.run,
                task,
                id=task_id,
                task_queue=WORKFLOW_QUEUE,
                memo=memo,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.PROJECT_ID, project_id),
                        SearchAttributePair(sa.TASK_TYPE, task_type),
                        SearchAttributePair(sa.TASK_STATUS, TaskStatus.QUEUED.value),
                        SearchAttributePair(sa.OWNER, owner),
                    ]
                ),
                priority=Priority(priority_key=priority.temporal_key),
                # One task per ID for the whole retention window, even after it closed.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            )
        except WorkflowAlreadyStartedError:
            return await self.get(task_id), False
        view = TaskView(
            task_id=task_id,
            project_id=project_id,
            task_type=task_type,
            status=TaskStatus.QUEUED,
            task_data=task_data,
            metadata=metadata,
            priority=priority,
            callback_url=callback_url,
            created_at=created_at,
            updated_at=created_at,
            current_step="queued",
            retry_of=retry_of,
            request_hash=request_hash,
            queue=spec.queue.value,
        )
        return view, True

    async def record_retry(self, original_task_id: str, new_task_id: str) -> None:
        try:
            await self._client.get_workflow_handle(METRICS_WORKFLOW_ID).signal(
                "record_retry", RetryRecorded(original_task_id=original_task_id, new_task_id=new_task_id)
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    async def cancel(self, task_id: str) -> tuple[TaskView, TaskView]:
        """Cancel per the seed's state table; returns the task before and after."""
        before = await self.get(task_id)
        if before.status == TaskStatus.COMPLETED:
            raise InvalidState("Task has already completed successfully and cannot be cancelled")
        if before.status == TaskStatus.FAILED:
            raise InvalidState("Task has already failed and cannot be cancelled")
        if before.status == TaskStatus.CANCELLED:
            return before, before
        handle = self._client.get_workflow_handle(task_id)
        await handle.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_WAIT_S
        asked_at = loop.time()
        while True:
            desc = await handle.describe()
            if desc.status != WorkflowExecutionStatus.RUNNING:
                break
            after = await self._view(desc)
            if after.status.is_terminal:
                break
            if (
                after.status == TaskStatus.QUEUED
                and loop.time() - asked_at > QUEUED_CANCEL_TERMINATE_AFTER_S
                and not await self._has_workflow_worker()
            ):
                await handle.terminate(reason="cancelled while queued (no workflow worker was running)")
                continue
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.1)
        after = await self.get(task_id)
        if after.status == TaskStatus.COMPLETED:
            raise InvalidState("Task completed before the cancellation took effect")
        return before, after

    # --- reads -------------------------------------------------------------------------------------

    async def get(self, task_id: str) -> TaskView:
        if not is_task_id(task_id):
            raise TaskNotFound(task_id)
        handle = self._client.get_workflow_handle(task_id)
        try:
            desc = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise TaskNotFound(task_id) from None
            raise
        view = await self._view(desc)
        if view.status == TaskStatus.COMPLETED and view.result is None:
            memo = await desc.memo()
            if memo.get("result_in_history"):
                typed = self._client.get_workflow_handle(task_id, result_type=TaskOutcome)
                outcome = await typed.result()
                view.result = outcome.result
        return view

    async def _view(self, desc: WorkflowExecutionDescription) -> TaskView:
        memo = await desc.memo()
        if "task" not in memo:
            raise TaskNotFound(desc.id)
        view = self._base_view(desc, memo)
        if view.status.is_terminal:
            return view
        pending = [
            p for p in desc.raw_description.pending_activities if p.activity_type.name == view.task_type
        ]
        activity = pending[0] if pending else None
        if activity is not None:
            started = activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            view.attempt = max(view.attempt, activity.attempt)
            if started or activity.attempt > 1:
                view.status = TaskStatus.PROCESSING
            if started and activity.HasField("heartbeat_details"):
                details = self._client.data_converter.payload_converter.from_payloads(
                    list(activity.heartbeat_details.payloads)
                )
                beat = details[0] if details and isinstance(details[0], dict) else {}
                view.progress = float(beat.get("progress", 0.0))
                view.current_step = str(beat.get("step", "processing"))
                view.updated_at = activity.last_heartbeat_time.ToDatetime(tzinfo=UTC)
            elif started:
                view.current_step = "starting"
            else:
                failure = activity.last_failure.message if activity.HasField("last_failure") else "error"
                when = (
                    activity.scheduled_time.ToDatetime(tzinfo=UTC)
                    if activity.HasField("scheduled_time")
                    else None
                )
                view.current_step = (
                    f"retrying: attempt {activity.attempt} of {activity.maximum_attempts or '∞'}"
                    + (f" at {when.isoformat()}" if when else "")
                    + f" after error: {failure}"
                )
            if view.started_at is None and activity.HasField("last_started_time") and started:
                view.started_at = activity.last_started_time.ToDatetime(tzinfo=UTC)
        elif view.status == TaskStatus.PROCESSING:
            # The activity is done and the workflow is recording the outcome (milliseconds).
            view.progress, view.current_step = 1.0, "finishing"
        if view.status == TaskStatus.QUEUED:
            waiting_for = memo.get(MEMO_WAITING_FOR_SLOT)
            view.current_step = (
                f"waiting_for_slot: the '{waiting_for}' concurrency limit is reached"
                if waiting_for
                else await self._queued_step(view.queue)
            )
        if view.started_at is not None:
            view.processing_time = round((datetime.now(UTC) - view.started_at).total_seconds(), 3)
        return view

    def _base_view(self, execution: WorkflowExecution, memo: Mapping[str, Any]) -> TaskView:
        """What memo, search attributes and execution status say, without pending-activity detail."""
        info: dict[str, Any] = memo["task"]
        outcome = memo.get(MEMO_OUTCOME)
        sa_status = execution.typed_search_attributes.get(sa.TASK_STATUS)
        created_at = _dt(info.get("created_at")) or execution.start_time
        view = TaskView(
            task_id=execution.id,
            project_id=info["project_id"],
            task_type=info["task_type"],
            status=TaskStatus.QUEUED,
            task_data=info.get("task_data") or {},
            metadata=info.get("metadata") or {},
            priority=TaskPriority.parse(info.get("priority") or "NORMAL"),
            callback_url=info.get("callback_url"),
            created_at=created_at,
            updated_at=execution.close_time or created_at,
            started_at=_dt(memo.get(MEMO_STARTED_AT)),
            attempt=int(memo.get(MEMO_ATTEMPT) or 0),
            retry_of=info.get("retry_of"),
            request_hash=memo.get("request_hash"),
            queue=info.get("queue") or CATALOG[info["task_type"]].queue.value,
            deadline_s=info.get("deadline_s"),
            webhook_events=info.get("webhook_events") or ["completed"],
        )
        if outcome:
            view.status = TaskStatus(outcome["status"])
            view.result = outcome.get("result")
            view.error = outcome.get("error")
            view.completed_at = _dt(outcome.get("completed_at"))
            view.processing_time = outcome.get("processing_time")
            view.updated_at = view.completed_at or view.updated_at
        elif execution.status in CLOSED_AS_STATUS:
            view.status = CLOSED_AS_STATUS[execution.status]
            view.completed_at = execution.close_time
            if execution.status == WorkflowExecutionStatus.TERMINATED:
                view.error = "Task was terminated by an operator"
            elif execution.status == WorkflowExecutionStatus.TIMED_OUT:
                view.error = "Task timed out"
            elif view.status == TaskStatus.CANCELLED:
                view.error = "Task was cancelled"
        elif sa_status == TaskStatus.PROCESSING.value:
            view.status = TaskStatus.PROCESSING
        if view.status == TaskStatus.COMPLETED:
            view.progress = 1.0
        if view.status.is_terminal:
            view.current_step = view.status.value
        elif view.status == TaskStatus.PROCESSING:
            view.current_step = "processing"
        return view

    async def list_tasks(self, query: str, *, page: int, limit: int) -> tuple[list[TaskView], int]:
        """Page `page` of the matching tasks, newest first, and how many match in all."""
        if page > 1:
            executions, matching = await self._ranked(query, (page - 1) * limit, limit)
            return await self._views(executions), matching
        total = asyncio.create_task(self.count(query))
        try:
            views = await self.latest(query, limit)
        finally:
            matching = await total
        return views, matching

    async def latest(self, query: str, count: int) -> list[TaskView]:
        """The `count` matching tasks created last, newest first."""
        return await self._views(await self.newest(query, count))

    async def _views(self, executions: list[WorkflowExecution]) -> list[TaskView]:
        views = []
        for execution in executions:
            memo = await execution.memo()
            if "task" in memo:
                views.append(self._base_view(execution, memo))
        return views

    async def newest(self, query: str, count: int) -> list[WorkflowExecution]:
        """The `count` matching executions started last, newest first, reading little more than that.

        SQL visibility cannot sort by start time. Its own order (Elasticsearch's too) is open executions
        first, newest start first, then closed ones by close time, latest first. The first `count` in that
        order all started at or after the earliest of them, so the `count` newest do too: they are all in
        the window from that start time on. Where tasks ran in the order they were created, that window is
        small; where it is not (priorities, retries, long runs), counts, which are cheap, move its floor up
        while it still holds `count`. Only the window's rows are read, then sorted.
        """
        if count <= 0:
            return []
        first: list[WorkflowExecution] = []
        async for execution in self._client.list_workflows(query, page_size=min(count, 1000)):
            first.append(execution)
            if len(first) == count:
                break
        floor = min((e.start_time for e in first), default=None)
        last_closed = first[-1].close_time if first else None
        # Fewer than asked for: that is all of them. And where even the last one read closed before the
        # earliest of them started, no unread execution (closed earlier still) can have started later.
        if len(first) < count or (floor is not None and last_closed is not None and last_closed <= floor):
            window = first
        else:
            assert floor is not None
            since = await self._narrow_floor(query, count, floor - timedelta(milliseconds=1))
            window = [
                e
                async for e in self._client.list_workflows(
                    f"({query}) AND {started_since(since)}", page_size=1000
                )
            ]
        window.sort(key=lambda e: (e.start_time, e.id), reverse=True)
        return window[:count]

    async def _narrow_floor(self, query: str, count: int, floor: datetime) -> datetime:
        """A later start time from which at least `count` executions still match, found by counting."""
        enough = 2 * count + WINDOW_SLACK
        ceiling = datetime.now(UTC) + timedelta(seconds=1)
        counted: dict[datetime, int] = {}
        await self._count_since(query, [floor], counted)
        held = counted[floor]
        for _ in range(NARROW_ROUNDS):
            if held <= enough:
                break
            step = (ceiling - floor) / (NARROW_PROBES + 1)
            probes = [floor + step * (i + 1) for i in range(NARROW_PROBES)]
            await self._count_since(query, probes, counted)
            for probe in probes:
                matched = counted[probe]
                if matched >= count:
                    floor, held = probe, matched
                else:
                    ceiling = probe
                    break
        return floor

    async def _ranked(self, query: str, skip: int, limit: int) -> tuple[list[WorkflowExecution], int]:
        """Executions ranked `skip` to `skip + limit - 1` by start time (newest first), and how many match.

        A deep page read through `newest` would read every row before it (~0.5 ms a row on SQL visibility).
        Counts of `StartTime >= t` are cheap, so they first bracket the page between two start times: an
        upper cut with at most `skip` executions from it on, a lower cut with at least `skip + limit`. Only
        the rows between the cuts are read; the upper cut's count says where the page starts among them.
        """
        now = datetime.now(UTC)
        counted: dict[datetime, int] = {}
        await self._count_since(
            query, [RANK_EPOCH, *(now - timedelta(seconds=s) for s in RANK_FIRST_PROBES_S)], counted
        )
        total = counted[RANK_EPOCH]
        if total <= skip:
            return [], total
        horizon = now + timedelta(seconds=1)
        for _ in range(RANK_ROUNDS):
            upper, lower = _rank_brackets(counted, skip, skip + limit)
            # Aim a little beyond each cut's rank, so that a good guess lands on the page's side of it.
            aims: dict[tuple[Point, Point], list[int]] = {}
            if skip - upper[1][1] > WINDOW_SLACK // 2:
                aims.setdefault(upper, []).append(skip - WINDOW_SLACK // 4)
            if lower[0][1] - (skip + limit) > WINDOW_SLACK // 2:
                aims.setdefault(lower, []).append(skip + limit + WINDOW_SLACK // 4)
            probes = [t for bracket, ranks in aims.items() for t in _bracket_probes(bracket, ranks, horizon)]
            probes = [t for t in probes if t not in counted]
            if not probes:
                break
            await self._count_since(query, probes, counted)
        (_, (cut_from, newer)), ((cut_to, _), _) = _rank_brackets(counted, skip, skip + limit)
        assert cut_to is not None  # a counted moment: the epoch at the earliest
        window_query = f"({query}) AND {started_since(cut_to)}"
        if cut_from is not None:
            window_query += f" AND {_started_before(cut_from)}"
        window = [e async for e in self._client.list_workflows(window_query, page_size=1000)]
        window.sort(key=lambda e: (e.start_time, e.id), reverse=True)
        offset = max(skip - newer, 0)
        return window[offset : offset + limit], total

    async def _count_since(self, query: str, moments: list[datetime], counted: dict[datetime, int]) -> None:
        counts = await asyncio.gather(*(self.count(f"({query}) AND {started_since(t)}") for t in moments))
        counted.update(zip(moments, counts, strict=True))

    async def task_ids(self, query: str, limit: int = 10_000) -> list[str]:
        ids = []
        async for execution in self._client.list_workflows(query, page_size=1000):
            ids.append(execution.id)
            if len(ids) >= limit:
                break
        return ids

    async def delete(self, task_id: str) -> None:
        """Remove a finished task from Temporal (history and visibility)."""
        await self._client.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=self._client.namespace, workflow_execution=WorkflowExecution_(workflow_id=task_id)
            )
        )

    async def count(self, query: str) -> int:
        return (await self._client.count_workflows(query)).count

    # --- queues, workers, metrics ------------------------------------------------------------------

    async def queue_state(self, queue: str) -> QueueState:
        """At most QUEUE_STATE_TTL_S old; concurrent readers share one in-flight request."""
        now = asyncio.get_running_loop().time()
        cached = self._queue_states.get(queue)
        if (
            cached is None
            or now - cached[0] > QUEUE_STATE_TTL_S
            or (cached[1].done() and cached[1].exception() is not None)
        ):
            cached = (now, asyncio.ensure_future(self._describe_queue(queue)))
            self._queue_states[queue] = cached
        return await asyncio.shield(cached[1])

    async def _describe_queue(self, queue: str) -> QueueState:
        response = await self._client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self._client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                report_stats=True,
            )
        )
        fresh_after = datetime.now(UTC) - POLLER_FRESHNESS
        pollers = [
            p.identity for p in response.pollers if p.last_access_time.ToDatetime(tzinfo=UTC) > fresh_after
        ]
        return QueueState(name=queue, backlog=int(response.stats.approximate_backlog_count), pollers=pollers)

    async def _queued_step(self, queue: str) -> str:
        state = await self.queue_state(queue)
        if not state.pollers:
            return f"waiting_for_worker: no worker is polling queue '{queue}'"
        return f"queued: {state.backlog} task(s) waiting on '{queue}', {len(state.pollers)} worker(s) polling"

    async def _has_workflow_worker(self) -> bool:
        response = await self._client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self._client.namespace,
                task_queue=TaskQueue(name=WORKFLOW_QUEUE),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        fresh_after = datetime.now(UTC) - POLLER_FRESHNESS
        return any(p.last_access_time.ToDatetime(tzinfo=UTC) > fresh_after for p in response.pollers)

    async def all_queue_states(self) -> dict[str, QueueState]:
        states = await asyncio.gather(*(self.queue_state(q.value) for q in Queue))
        return {s.name: s for s in states}

    async def metrics_state(self) -> MetricsState:
        memo = await self._bookkeeping_memo(METRICS_WORKFLOW_ID)
        raw = memo.get("metrics")
        return MetricsState(**raw) if raw else MetricsState()

    async def worker_reports(self) -> list[WorkerReport]:
        memo = await self._bookkeeping_memo(WORKER_REGISTRY_WORKFLOW_ID)
        return [WorkerReport(**w) for w in (memo.get("workers") or {}).values()]

    async def _bookkeeping_memo(self, workflow_id: str) -> Mapping[str, Any]:
        try:
            desc = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return {}
            raise
        return await desc.memo()


# Closed without the workflow recording an outcome (terminated, timed out): the execution status decides.
_UNFINISHED = 'TaskStatus IN ("queued", "processing")'


def status_query(status: TaskStatus) -> str:
    """Visibility filter for a status, consistent with how views derive it from Temporal."""
    return {
        TaskStatus.QUEUED: 'TaskStatus = "queued" AND ExecutionStatus = "Running"',
        TaskStatus.PROCESSING: 'TaskStatus = "processing" AND ExecutionStatus = "Running"',
        TaskStatus.COMPLETED: 'TaskStatus = "completed"',
        TaskStatus.FAILED: (
            f'(TaskStatus = "failed" OR (ExecutionStatus IN ("Failed", "TimedOut") AND {_UNFINISHED}))'
        ),
        TaskStatus.CANCELLED: (
            f'(TaskStatus = "cancelled" OR (ExecutionStatus IN ("Canceled", "Terminated") AND {_UNFINISHED}))'
        ),
    }[status]


def filter_query(**equals: str | None) -> str:
    names = {"project_id": "ProjectId", "task_type": "TaskType", "owner": "TaskOwner"}
    return " AND ".join(f"{names[k]} = {_quote(v)}" for k, v in equals.items() if v is not None)


def to_dict(view: TaskView) -> dict[str, Any]:
    return asdict(view)
