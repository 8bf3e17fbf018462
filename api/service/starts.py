"""The one start path: every task (a submit, an item of a batch, a retry, one of a bulk retry) starts here,
through every admission rule, once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.domain.caller import Role
from api.domain.commands import StartTask
from api.domain.errors import (
    DeadlineUnreachable,
    Forbidden,
    IdempotencyConflict,
    TaskNotFound,
    ValidationFailed,
)
from api.service import submission
from api.service.capacity import ProjectCapacity
from api.service.estimates import TaskEstimate, TaskEstimates
from api.service.scope import scope_of
from api.store.projection import TaskView
from api.store.store import TaskStore
from taskservice.catalog import TaskSpec
from taskservice.contracts import RetryRecorded
from taskservice.netguard import UnsafeURLError, check_outbound_url
from taskservice.priority import allowed
from taskservice.record import TaskRecord
from taskservice.render_cache import CacheMode
from taskservice.settings import Settings
from taskservice.telemetry import ApiMetrics
from taskservice.timefmt import iso_z, now_z


@dataclass
class Submitted:
    view: TaskView
    spec: TaskSpec
    queue_position: int
    replayed: bool = False
    # Asked to wait: whether it did (a free wait slot), and the task if it finished meanwhile.
    waited: bool = False
    finished: TaskView | None = None
    # Its outcome is recorded as its workflow closes (TaskWorkflowInput.closes_with_outcome).
    closes_with_outcome: bool = False
    # When it should start and finish (none for a replay: its status read tells).
    estimate: TaskEstimate | None = None


@dataclass(frozen=True)
class Quote:
    """What a submit would start and when it would finish, without starting it."""

    spec: TaskSpec
    estimate: TaskEstimate


class TaskStarts:
    """Starts tasks for one API replica; its capacity estimates (tenants', projects') live as long as it does.

    Admission, in order: a known task type, well-formed fields, a priority the tenant may ask for
    (TENANT_MAX_PRIORITY), the type's valid input, a callback URL that is safe to call, the size limits, the
    idempotency key's replay (within the caller's scope), the tenant's and the project's caps on unfinished
    tasks. What a request costs in submit tokens its operation charges (a batch of N costs N at once, before
    its items start).
    """

    def __init__(self, store: TaskStore, settings: Settings, metrics: ApiMetrics | None = None) -> None:
        self.store = store
        self.settings = settings
        self.capacity = ProjectCapacity(
            store, settings.max_concurrent_per_project, tenant_limit=settings.max_unfinished_per_tenant
        )
        self._metrics = metrics
        self.estimates = TaskEstimates(store, settings)
        self._idempotency_secret = submission.idempotency_secret(settings)

    async def start(self, command: StartTask) -> Submitted:
        spec, record = await self._admitted(command)
        task_id = self._task_id(command)
        if command.idempotency_key:
            existing = await self._find(task_id)
            if existing is not None:
                return _replay(command, existing, record, spec)
        estimate = None
        if command.strict_deadline:
            estimate = await self.estimates.for_new(spec, record.task_data, priority=command.priority)
            _check_deadline(command, estimate)
        await self.capacity.admit(record.tenant, record.project_id)
        # Estimated once admitted: a submit refused at a cap costs no count of its queue.
        estimate = estimate or await self.estimates.for_new(spec, record.task_data, priority=command.priority)
        task_input = submission.workflow_input(task_id, spec, record, self.settings)
        view, created = await self.store.start(task_input)
        if not created:
            return _replay(command, view, record, spec)
        self.estimates.note_started(spec.queue.value, task_id, command.priority, estimate.duration)
        if command.retry_of is not None:
            await self.store.record_retry(RetryRecorded(command.retry_of, task_id, tenant=record.tenant))
        if self._metrics is not None:
            self._metrics.tasks_submitted.labels(record.task_type).inc()
        position = await self._queue_position(spec)
        return Submitted(
            view, spec, position, closes_with_outcome=task_input.closes_with_outcome, estimate=estimate
        )

    async def quote(self, command: StartTask) -> Quote:
        """What `start` would admit (its every check) and its estimate, starting nothing; a strict deadline
        that cannot be met is refused as `start` would refuse it."""
        spec, record = await self._admitted(command)
        estimate = await self.estimates.for_new(spec, record.task_data, priority=command.priority)
        if command.strict_deadline:
            _check_deadline(command, estimate)
        return Quote(spec, estimate)

    async def admit(self, command: StartTask) -> tuple[TaskSpec, TaskRecord]:
        """Every admission check of `start` that needs no Temporal call (a pipeline's steps pass them all
        before the pipeline starts): the type's entry and the task's record."""
        return await self._admitted(command)

    async def check_callback(self, url: str) -> None:
        """A callback URL the service may call (public, well-formed; WEBHOOK_ALLOW_PRIVATE)."""
        await _check_callback(url, self.settings)

    def _task_id(self, command: StartTask) -> str:
        caller = command.caller
        if not command.idempotency_key or caller is None:
            return submission.new_task_id()
        user = (caller.subject or "") if caller.role == Role.USER else ""
        return submission.idempotent_task_id(
            self._idempotency_secret, caller.tenant, user, command.idempotency_key
        )

    async def _admitted(self, command: StartTask) -> tuple[TaskSpec, TaskRecord]:
        """The task's catalog entry and its record, once its fields, priority, input and callback pass."""
        spec = submission.task_spec(command.task_type)
        submission.check_fields(command)
        highest = self.settings.max_priority(command.tenant)
        if not allowed(command.priority, highest):
            raise Forbidden(
                f"Priority {command.priority.value} is above what tenant {command.tenant} may ask for "
                f"({highest.value}; TENANT_MAX_PRIORITY)"
            )
        task_data = submission.validate_task_data(spec, command.task_data, self.settings.media_budget())
        submission.check_llm_options(command.task_type, task_data, self.settings)
        if command.callback_url is not None:
            await _check_callback(command.callback_url, self.settings)
        record = TaskRecord(
            project_id=command.project_id,
            task_type=command.task_type,
            task_data=task_data,
            queue=spec.queue.value,
            created_at=now_z(),
            priority=command.priority.value,
            callback_url=command.callback_url,
            metadata=command.metadata,
            retry_of=command.retry_of,
            deadline_s=command.deadline_s,
            webhook_events=list(command.webhook_events or ["completed"]),
            request_hash=command.request_hash(),
            tenant=command.tenant,
            user=command.user,
            cache=(command.cache or CacheMode.AUTO).value,
        )
        submission.check_sizes(record)
        return spec, record

    async def _find(self, task_id: str) -> TaskView | None:
        try:
            return await self.store.get(task_id)
        except TaskNotFound:
            return None

    async def _queue_position(self, spec: TaskSpec) -> int:
        """An estimate of where the task stands: the tasks waiting on its queue, then itself.

        From Temporal's backlog of the queue, read at most once a second for every submit of the replica
        (a visibility count per submit cost as much as the start itself)."""
        return (await self.store.queues.get(spec.queue.value)).backlog + 1


def _replay(command: StartTask, existing: TaskView, record: TaskRecord, spec: TaskSpec) -> Submitted:
    """The task an idempotency key already named, if the caller may read it and the request is the same
    (a task out of the caller's scope is refused as another request would be, without naming it)."""
    message = "This Idempotency-Key was already used with a different request body"
    if command.caller is None or not scope_of(command.caller).allows(existing):
        raise IdempotencyConflict(message)
    if existing.request_hash != record.request_hash:
        raise IdempotencyConflict(message, task_id=existing.task_id)
    return Submitted(existing, spec, 0, replayed=True)


def _check_deadline(command: StartTask, estimate: TaskEstimate) -> None:
    """A strict deadline is refused when the p90 completion is after it, or when no worker can take it."""
    if command.deadline_s is None:
        return
    predicted = {
        "deadline_s": command.deadline_s,
        "estimated_start_at": _iso(estimate.start_at),
        "estimated_completion_at": _iso(estimate.completion_at),
        "completion_p90_at": _iso(estimate.completion_p90_at),
        "duration_p90_s": estimate.duration.p90_s,
    }
    if estimate.completion_p90_at is None:
        raise DeadlineUnreachable(
            f"The deadline of {command.deadline_s:g} s cannot be promised: {estimate.reason}", **predicted
        )
    deadline = datetime.now(UTC) + timedelta(seconds=command.deadline_s)
    if estimate.completion_p90_at > deadline:
        raise DeadlineUnreachable(
            f"The task would finish after its deadline of {command.deadline_s:g} s (90 % of tasks like it "
            f"finish by {predicted['completion_p90_at']})",
            **predicted,
        )


def _iso(moment: datetime | None) -> str | None:
    return iso_z(moment) if moment is not None else None


async def _check_callback(url: str, settings: Settings) -> None:
    try:
        await check_outbound_url(url, allow_private=settings.webhook_allow_private)
    except UnsafeURLError as err:
        raise ValidationFailed({"callback_url": f"callback_url {err}"}) from None
