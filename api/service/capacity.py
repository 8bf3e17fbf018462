"""The per-project cap on unfinished tasks (`MAX_CONCURRENT_PER_PROJECT`), counted in Temporal about once a
second per project instead of once per submit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from api.domain.errors import RateLimited
from api.store.store import TaskStore
from taskservice.visibility import TaskQuery

# How long a project's count serves its submits (with this replica's admissions added to it).
COUNT_TTL_S = 1.0
# Beyond this many projects counted, the expired counts are dropped.
KEEP_PROJECTS = 1024


@dataclass
class _Estimate:
    counted_at: float
    # Unfinished as counted, plus the tasks admitted here since.
    unfinished: int


class ProjectCapacity:
    """Admits a project's new tasks while it has fewer than `limit` unfinished.

    A visibility count per submit cost the Temporal frontend a request and its database a query for every
    task. A count now serves the project's submits for `COUNT_TTL_S`, with this replica's admissions since
    added to it. Tasks that finished meanwhile are not subtracted, so the estimate errs only high: below the
    cap it admits exactly what a fresh count would on one replica, and at the cap it counts again before
    refusing. Replicas do not see each other's admissions of the last second (as a count does not see starts
    that visibility has not recorded yet).
    """

    def __init__(self, store: TaskStore, limit: int) -> None:
        self._store = store
        self._limit = limit
        self._estimates: dict[tuple[str, str], _Estimate] = {}

    async def admit(self, tenant: str, project_id: str) -> None:
        """Count one more unfinished task of the project; RateLimited (429) at its cap."""
        now = asyncio.get_running_loop().time()
        key = (tenant, project_id)
        estimate = self._estimates.get(key)
        if estimate is None or now - estimate.counted_at > COUNT_TTL_S or estimate.unfinished >= self._limit:
            query = TaskQuery(tenant=tenant, project_id=project_id, running=True)
            estimate = _Estimate(now, await self._store.count(query))
            self._remember(key, estimate)
        if estimate.unfinished >= self._limit:
            message = f"Project {project_id} already has {estimate.unfinished} unfinished tasks"
            raise RateLimited(f"{message} (limit {self._limit})", retry_after=30)
        estimate.unfinished += 1

    def _remember(self, key: tuple[str, str], estimate: _Estimate) -> None:
        if len(self._estimates) >= KEEP_PROJECTS:
            now = estimate.counted_at
            for expired in [k for k, e in self._estimates.items() if now - e.counted_at > COUNT_TTL_S]:
                del self._estimates[expired]
        self._estimates[key] = estimate
