"""Who gets a concurrency slot next: the best priority first, and within it the tenants in weighted turns.

Stride scheduling over a `LimiterState`: each tenant has a next turn in virtual time; the waiting tenant with
the earliest turn is served and its turn moves on by 1 / weight (a tenant of weight 2 is served twice for
another's once). A tenant that starts asking again joins at the current turn (`clock`), so nobody banks turns
while idle. Within a tenant, requests are served in arrival order.

The limiter keeps at most `WAITING_PER_TENANT` requests of one tenant in line (its best ones); the others are
told to ask again later (`SlotDeferred`): the state is bounded by the number of tenants, not by the backlog.
Pure functions of the state: deterministic, and carried through continue-as-new with it.
"""

from __future__ import annotations

import dataclasses

from taskservice.contracts import LimiterState, SlotRequest

WAITING_PER_TENANT = 20


def join(state: LimiterState, request: SlotRequest) -> None:
    """A tenant that asks takes its turns from now on, not from when it last asked."""
    state.turns[request.tenant] = max(state.turns.get(request.tenant, state.clock), state.clock)


def take_next(state: LimiterState) -> SlotRequest:
    """Remove and return the request served next (the state has one waiting)."""
    best = min(w.priority_key for w in state.waiting)
    heads: dict[str, SlotRequest] = {}
    for request in state.waiting:
        if request.priority_key == best and request.tenant not in heads:
            heads[request.tenant] = request
    # min() keeps the first of equals: ties go to the tenant whose head arrived first.
    tenant = min(heads, key=lambda t: state.turns.get(t, state.clock))
    request = heads[tenant]
    state.waiting.remove(request)
    turn = max(state.turns.get(tenant, state.clock), state.clock)
    state.clock = turn
    state.turns[tenant] = turn + 1.0 / max(request.weight, 0.001)
    state.holder_tenants[request.holder_id] = tenant
    return request


def overflow(state: LimiterState) -> list[SlotRequest]:
    """Remove and return the requests beyond each tenant's `WAITING_PER_TENANT` best (priority, then
    arrival): the ones to tell to ask again."""
    ranked = sorted(enumerate(state.waiting), key=lambda item: (item[1].priority_key, item[0]))
    kept: dict[str, int] = {}
    deferred: list[SlotRequest] = []
    for _, request in ranked:
        kept[request.tenant] = kept.get(request.tenant, 0) + 1
        if kept[request.tenant] > WAITING_PER_TENANT:
            deferred.append(request)
    if deferred:
        gone = {id(d) for d in deferred}
        state.waiting = [w for w in state.waiting if id(w) not in gone]
    return deferred


def forget_idle(state: LimiterState) -> None:
    """Drop the turns of tenants with nothing waiting and nothing held: they rejoin at the clock."""
    state.holder_tenants = {h: t for h, t in state.holder_tenants.items() if h in state.holders}
    active = {w.tenant for w in state.waiting} | set(state.holder_tenants.values())
    state.turns = {t: turn for t, turn in state.turns.items() if t in active}


def serving_order(state: LimiterState, at_most: int) -> list[SlotRequest]:
    """The first `at_most` waiting requests in the order `take_next` would serve them (state unchanged)."""
    trial = dataclasses.replace(
        state,
        waiting=list(state.waiting),
        turns=dict(state.turns),
        holder_tenants=dict(state.holder_tenants),
    )
    return [take_next(trial) for _ in range(min(at_most, len(trial.waiting)))]
