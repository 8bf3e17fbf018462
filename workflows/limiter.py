"""Cluster-wide concurrency caps (seed 002: image 3, video 2, total N) as one limiter workflow per group.

Temporal bounds concurrency per worker, not per activity type across the cluster, so a task of a capped
group asks its group's limiter for a slot (`acquire` signal) and starts its activity only once the limiter
answers with `SLOT_GRANTED_SIGNAL`; until then it stays `queued`. It releases the slot when it finishes,
fails or is cancelled. Waiting tasks are served by priority, then tenant by tenant in weighted turns (see
workflows/fair_slots.py; histories begun before the `fair-slots` patch keep arrival order). A holder that
vanished without releasing (terminated by an operator) loses its slot when its lease, the longest the task
could run, ends.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from taskservice.contracts import (
        SLOT_DEFERRED_SIGNAL,
        SLOT_GRANTED_SIGNAL,
        LimiterState,
        SlotDeferred,
        SlotRequest,
    )
    from workflows import console, fair_slots
    from workflows.history import history_is_long, history_is_long_mid_step

# The memo lists at most this many holders (the counts are always exact).
MEMO_HOLDERS = 50
# Tenants take turns within a priority, and each keeps a bounded line here (before: arrival order, unbounded).
FAIR_SLOTS_PATCH = "fair-slots"


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
            # Holders, the (bounded) waiting lines and the tenants' turns are carried over whole.
            if history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)
            self._dirty = False
            try:
                await workflow.wait_condition(
                    lambda: self._dirty, timeout=self._next_expiry(), timeout_summary="the next lease expiry"
                )
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
        fair_slots.join(s, request)
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
        fair = workflow.patched(FAIR_SLOTS_PATCH)
        while True:
            # Under a steady stream of releases this loop never ends: it stops for the continue-as-new too.
            while s.waiting and len(s.holders) < s.limit and not history_is_long_mid_step():
                if fair:
                    request = fair_slots.take_next(s)
                else:
                    # min() keeps the first of equals: arrival order within a priority.
                    request = min(s.waiting, key=lambda w: w.priority_key)
                    s.waiting.remove(request)
                until = workflow.now() + timedelta(seconds=request.lease_s)
                s.holders[request.holder_id] = until.isoformat()
                if not await self._tell(request.holder_id, SLOT_GRANTED_SIGNAL, s.group):
                    # The task closed while it waited (its release is on the way or was lost): free the slot.
                    s.holders.pop(request.holder_id, None)
            if history_is_long_mid_step():
                break  # the next run serves and defers the rest: its line is carried over
            # Signals handled while the deferrals were sent are served before the line is published.
            deferred = fair_slots.overflow(s) if fair else []
            if not deferred:
                break
            # Sent together: one workflow task for a whole batch's overflow.
            await asyncio.gather(
                *(self._tell(r.holder_id, SLOT_DEFERRED_SIGNAL, SlotDeferred(s.group)) for r in deferred)
            )
        if fair:
            fair_slots.forget_idle(s)

    async def _tell(self, task_id: str, signal: str, payload: object) -> bool:
        """Signal a waiting task; False when it has closed."""
        try:
            await workflow.get_external_workflow_handle(task_id).signal(signal, payload)
        except (ApplicationError, FailureError):
            return False
        return True

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
        # The order _grant serves them in (only the first ten are shown); display only, so no patch check.
        line = fair_slots.serving_order(s, 10)
        workflow.set_current_details(
            console.limiter_state(s.group, s.limit, list(s.holders), line, len(s.waiting))
        )
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
