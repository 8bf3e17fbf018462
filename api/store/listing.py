"""Newest-first pages of task workflows from SQL visibility, which cannot sort by start time.

Visibility's own order (Elasticsearch's too) is open executions first, newest start first, then closed ones by
close time, latest first. Counts are cheap and listings cost ~0.5 ms a row, so pages are found by counting
(`StartTime >= t`) and reading only the start-time window that holds the page.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

from temporalio.client import WorkflowExecution

from taskservice.visibility import TaskQuery

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
LIST_PAGE_SIZE = 1000

Point = tuple[datetime | None, int]


class Visibility(Protocol):
    """What listing needs of Temporal: counts and listings of a query (the Temporal client's own calls)."""

    async def count(self, query: TaskQuery) -> int: ...

    def executions(self, query: TaskQuery, page_size: int) -> AsyncIterator[WorkflowExecution]: ...


def rank_brackets(
    counted: dict[datetime, int], newer_than: int, at_least: int
) -> tuple[tuple[Point, Point], ...]:
    """Around the upper cut (the earliest counted start time with at most `newer_than` executions from it
    on) and the lower cut (the latest with at least `at_least`), each with its neighbour beyond it.
    `None` stands for "after every start time", where nothing is counted."""
    points: list[Point] = [*sorted(counted.items()), (None, 0)]
    upper = next(i for i, (_, n) in enumerate(points) if n <= newer_than)
    lower = max((i for i, (_, n) in enumerate(points) if n >= at_least), default=0)
    return (points[max(upper - 1, 0)], points[upper]), (points[lower], points[lower + 1])


def bracket_probes(bracket: tuple[Point, Point], ranks: list[int], horizon: datetime) -> list[datetime]:
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


def newest_first(executions: list[WorkflowExecution]) -> list[WorkflowExecution]:
    return sorted(executions, key=lambda e: (e.start_time, e.id), reverse=True)


class TaskListing:
    """Pages of matching task workflows, newest first by start time, reading little more than the page."""

    def __init__(self, visibility: Visibility) -> None:
        self._visibility = visibility

    async def page(self, query: TaskQuery, *, page: int, limit: int) -> tuple[list[WorkflowExecution], int]:
        """Page `page` (from 1) of `limit` executions, and how many match in all."""
        if page > 1:
            return await self._ranked(query, (page - 1) * limit, limit)
        total = asyncio.create_task(self._visibility.count(query))
        try:
            executions = await self.newest(query, limit)
        finally:
            matching = await total
        return executions, matching

    async def newest(self, query: TaskQuery, count: int) -> list[WorkflowExecution]:
        """The `count` matching executions started last, newest first.

        The first `count` in visibility's order all started at or after the earliest of them, so the `count`
        newest do too: they are all in the window from that start time on. Where tasks ran in the order they
        were created, that window is small; where not (priorities, retries, long runs), counts move its floor
        up while it still holds `count`. Only the window's rows are read, then sorted.
        """
        if count <= 0:
            return []
        first: list[WorkflowExecution] = []
        async for execution in self._visibility.executions(query, min(count, LIST_PAGE_SIZE)):
            first.append(execution)
            if len(first) == count:
                break
        floor = min((e.start_time for e in first), default=None)
        last_closed = first[-1].close_time if first else None
        # Fewer than asked for: that is all of them. And where even the last one read closed before the
        # earliest of them started, no unread execution (closed earlier still) can have started later.
        if floor is None or len(first) < count or (last_closed is not None and last_closed <= floor):
            return newest_first(first)[:count]
        floor -= timedelta(milliseconds=1)
        counted: dict[datetime, int] = {}
        await self._count_since(query, [floor], counted)
        if counted[floor] == len(first):
            # No other execution started from the floor on: the rows read are the whole window.
            return newest_first(first)
        since = await self._narrow_floor(query, count, floor, counted)
        window = [e async for e in self._visibility.executions(query.started_between(since), LIST_PAGE_SIZE)]
        return newest_first(window)[:count]

    async def _narrow_floor(
        self, query: TaskQuery, count: int, floor: datetime, counted: dict[datetime, int]
    ) -> datetime:
        """A later start time from which at least `count` executions still match, found by counting
        (`counted` holds the count from `floor` on)."""
        enough = 2 * count + WINDOW_SLACK
        ceiling = datetime.now(UTC) + timedelta(seconds=1)
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

    async def _ranked(self, query: TaskQuery, skip: int, limit: int) -> tuple[list[WorkflowExecution], int]:
        """Executions ranked `skip` to `skip + limit - 1` by start time (newest first), and how many match.

        Counts first bracket the page between two start times: an upper cut with at most `skip` executions
        from it on, a lower cut with at least `skip + limit`. Only the rows between the cuts are read; the
        upper cut's count says where the page starts among them.
        """
        now = datetime.now(UTC)
        counted: dict[datetime, int] = {}
        await self._count_since(
            query, [RANK_EPOCH, *(now - timedelta(seconds=s) for s in RANK_FIRST_PROBES_S)], counted
        )
        total = counted[RANK_EPOCH]
        if total <= skip:
            return [], total
        await self._refine(query, counted, skip, limit, horizon=now + timedelta(seconds=1))
        (_, (cut_from, newer)), ((cut_to, _), _) = rank_brackets(counted, skip, skip + limit)
        between = query.started_between(cut_to, cut_from)
        window = [e async for e in self._visibility.executions(between, LIST_PAGE_SIZE)]
        offset = max(skip - newer, 0)
        return newest_first(window)[offset : offset + limit], total

    async def _refine(
        self, query: TaskQuery, counted: dict[datetime, int], skip: int, limit: int, horizon: datetime
    ) -> None:
        """Count inside the brackets of both cuts until each is within a few ranks of the page."""
        for _ in range(RANK_ROUNDS):
            upper, lower = rank_brackets(counted, skip, skip + limit)
            # Aim a little beyond each cut's rank, so that a good guess lands on the page's side of it.
            aims: dict[tuple[Point, Point], list[int]] = {}
            if skip - upper[1][1] > WINDOW_SLACK // 2:
                aims.setdefault(upper, []).append(skip - WINDOW_SLACK // 4)
            if lower[0][1] - (skip + limit) > WINDOW_SLACK // 2:
                aims.setdefault(lower, []).append(skip + limit + WINDOW_SLACK // 4)
            probes = [t for bracket, ranks in aims.items() for t in bracket_probes(bracket, ranks, horizon)]
            probes = [t for t in probes if t not in counted]
            if not probes:
                return
            await self._count_since(query, probes, counted)

    async def _count_since(
        self, query: TaskQuery, moments: list[datetime], counted: dict[datetime, int]
    ) -> None:
        counts = await asyncio.gather(*(self._visibility.count(query.started_between(t)) for t in moments))
        counted.update(zip(moments, counts, strict=True))
