"""Cluster-wide concurrency caps (seed 002: image 3, video 2, total N) as one limiter workflow per group.

Temporal bounds concurrency per worker, not per activity type across the cluster, so a task of a capped
group asks its group's limiter for a slot (`acquire` signal) and starts its activity only once the limiter
answers with `slot_granted`; until then it stays `queued`. It releases the slot when it finishes, fails or
is cancelled. Waiting tasks are served by priority, then in arrival order. A holder that vanished without
releasing (terminated by an operator) loses its slot when its lease, the longest the task could run, ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from taskservice.contracts import LimiterState, SlotRequest
    from workflows.bookkeeping import history_is_long, history_is_long_mid_step

# The memo lists at most this many holders (the counts are always exact).
MEMO_HOLDERS = 50


@workflow.defn(name="ConcurrencyLimiterWorkflow")
class ConcurrencyLimiterWorkflow:
    @workflow.init
    def __init__(self, state: LimiterState) -> None:
        # The carried-over state is taken before any signal is handled: a run used to take it in `run`, after
        # the signals of its first activation (slot requests sent while the previous run continued as new)
        # had been applied to an empty state and were lost, leaving their tasks queued for good.
        self._state_at_init = workflow.patched("limiter-state-at-init")
        self._state = state if self._state_at_init else LimiterState(group="")
        self._dirty = True
        self._published: dict[str, object] | None = None

    @workflow.run
    async def run(self, state: LimiterState) -> None:
        if not self._state_at_init:
            self._state = state
        while True:
            self._expire_leases()
            await self._grant()
            self._publish()
            # Holders and the waiting line are carried over whole.
            if history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)
            self._dirty = False
            try:
                await workflow.wait_condition(lambda: self._dirty, timeout=self._next_expiry())
            except TimeoutError:
                pass

    @workflow.signal
    def acquire(self, request: SlotRequest) -> None:
        s = self._state
        s.limit = request.limit
        if request.holder_id in s.holders:
            # Asked again (its earlier grant may have been lost to a continue-as-new): grant again.
            s.holders.pop(request.holder_id)
        s.waiting = [w for w in s.waiting if w.holder_id != request.holder_id]
        s.waiting.append(request)
        self._dirty = True

    @workflow.signal
    def release(self, holder_id: str) -> None:
        s = self._state
        s.holders.pop(holder_id, None)
        s.waiting = [w for w in s.waiting if w.holder_id != holder_id]
        self._dirty = True

    @workflow.query
    def state(self) -> LimiterState:
        return self._state

    async def _grant(self) -> None:
        s = self._state
        # Under a steady stream of releases this loop never ends: it stops for the continue-as-new too.
        while s.waiting and len(s.holders) < s.limit and not history_is_long_mid_step():
            # min() keeps the first of equals: arrival order within a priority.
            request = min(s.waiting, key=lambda w: w.priority_key)
            s.waiting.remove(request)
            until = workflow.now() + timedelta(seconds=request.lease_s)
            s.holders[request.holder_id] = until.isoformat()
            try:
                await workflow.get_external_workflow_handle(request.holder_id).signal("slot_granted", s.group)
            except (ApplicationError, FailureError):
                # The task closed while it waited (its release is on the way or was lost): free the slot.
                s.holders.pop(request.holder_id, None)

    def _expire_leases(self) -> None:
        now = workflow.now()
        s = self._state
        for holder, until in list(s.holders.items()):
            if datetime.fromisoformat(until) <= now:
                workflow.logger.warning(
                    "Concurrency slot lease expired", extra={"group": s.group, "task_id": holder}
                )
                del s.holders[holder]

    def _next_expiry(self) -> float | None:
        if not self._state.holders:
            return None
        soonest = min(datetime.fromisoformat(u) for u in self._state.holders.values())
        return max((soonest - workflow.now()).total_seconds(), 0.001)

    def _publish(self) -> None:
        s = self._state
        summary: dict[str, object] = {
            "group": s.group,
            "limit": s.limit,
            "running": len(s.holders),
            "waiting": len(s.waiting),
            "holders": sorted(s.holders)[:MEMO_HOLDERS],
        }
        if summary != self._published:
            workflow.upsert_memo({"limiter": summary})
            self._published = summary
