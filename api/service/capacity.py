"""The caps on unfinished tasks, per project (`MAX_CONCURRENT_PER_PROJECT`) and per tenant
(`MAX_UNFINISHED_PER_TENANT`), each counted in Temporal about once a second instead of once per submit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from api.domain.errors import RateLimited
from api.store.store import TaskStore
from taskservice.visibility import TaskQuery

# How long a count serves its submits (with this replica's admissions added to it).
COUNT_TTL_S = 1.0
# Beyond this many projects and tenants counted, the expired counts are dropped.
KEEP_COUNTS = 1024
# What a refusal tells the client to wait (unfinished tasks take their time to finish).
RETRY_AFTER_S = 30


@dataclass
class _Estimate:
    counted_at: float
    # Unfinished as counted, plus the tasks admitted here since.
    unfinished: int


class ProjectCapacity:
    """Admits a task while its tenant has fewer than `tenant_limit` unfinished tasks and its project fewer
    than `limit`.

    A visibility count per submit cost the Temporal frontend a request and its database a query for every
    task. A count now serves the project's (the tenant's) submits for `COUNT_TTL_S`, with this replica's
    admissions since added to it. Tasks that finished meanwhile are not subtracted, so the estimate errs
    only high: below the cap it admits exactly what a fresh count would on one replica, and at the cap it
    counts again before refusing. Replicas do not see each other's admissions of the last second (as a
    count does not see starts that visibility has not recorded yet). It lives as long as its replica.
    """

    def __init__(self, store: TaskStore, limit: int, tenant_limit: int | None = None) -> None:
        self._store = store
        self._limit = limit
        self._tenant_limit = tenant_limit
        self._estimates: dict[tuple[str, str | None], _Estimate] = {}

    async def admit(self, tenant: str, project_id: str) -> None:
        """Count one more unfinished task of the tenant and the project; RateLimited (429) at a cap."""
        tenant_wide = None
        if self._tenant_limit is not None:
            tenant_wide = await self._estimate((tenant, None), self._tenant_limit)
            if tenant_wide.unfinished >= self._tenant_limit:
                message = f"Tenant {tenant} already has {tenant_wide.unfinished} unfinished tasks"
                raise RateLimited(f"{message} (limit {self._tenant_limit})", retry_after=RETRY_AFTER_S)
        project = await self._estimate((tenant, project_id), self._limit)
        if project.unfinished >= self._limit:
            message = f"Project {project_id} already has {project.unfinished} unfinished tasks"
            raise RateLimited(f"{message} (limit {self._limit})", retry_after=RETRY_AFTER_S)
        project.unfinished += 1
        if tenant_wide is not None:
            tenant_wide.unfinished += 1

    async def _estimate(self, key: tuple[str, str | None], limit: int) -> _Estimate:
        """The key's estimate, counted again when it is older than COUNT_TTL_S or stands at the cap."""
        now = asyncio.get_running_loop().time()
        estimate = self._estimates.get(key)
        if estimate is None or now - estimate.counted_at > COUNT_TTL_S or estimate.unfinished >= limit:
            tenant, project_id = key
            query = TaskQuery(tenant=tenant, project_id=project_id, running=True)
            estimate = _Estimate(now, await self._store.count(query))
            self._remember(key, estimate)
        return estimate

    def _remember(self, key: tuple[str, str | None], estimate: _Estimate) -> None:
        if len(self._estimates) >= KEEP_COUNTS:
            now = estimate.counted_at
            for expired in [k for k, e in self._estimates.items() if now - e.counted_at > COUNT_TTL_S]:
                del self._estimates[expired]
        self._estimates[key] = estimate
