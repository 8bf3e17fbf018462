"""Worker processes as they report themselves (seed 004)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from api.rest.deps import CallerDep, InsightServiceDep
from api.rest.openapi import AUTHENTICATED, DocumentedRoute, error_responses
from api.rest.schemas import WorkerInfo, WorkersHealthResponse, WorkersStatsResponse
from taskservice.queues import Queue

router = APIRouter(prefix="/api/v1/workers", tags=["workers"], route_class=DocumentedRoute)


@router.get("/health", responses=error_responses(*AUTHENTICATED))
async def workers_health(caller: CallerDep, insights: InsightServiceDep) -> WorkersHealthResponse:
    """Worker processes and whether each is alive (seed 004).

    Each worker's own report; a worker is alive while it reports or Temporal sees it poll (the same rule as
    `worker_count` of `/api/v1/health`). `workers` lists each one (host, pid, models) to the admin key only;
    tenants get the counts.
    """
    fleet = await insights.workers(caller)
    alive = [w for w in fleet.statuses if w.alive]
    by_queue = {q.value: sum(w.queue == q.value for w in alive) for q in Queue}
    status = "healthy" if all(by_queue.values()) else "degraded" if alive else "unhealthy"
    return WorkersHealthResponse(
        status=status,
        total=len(fleet.statuses),
        alive=len(alive),
        by_queue=by_queue,
        workers=[WorkerInfo.model_validate(w, from_attributes=True) for w in fleet.listed],
        timestamp=datetime.now(UTC),
    )


@router.get("/stats", responses=error_responses(*AUTHENTICATED))
async def workers_stats(caller: CallerDep, insights: InsightServiceDep) -> WorkersStatsResponse:
    """Counters of the live workers, and their totals.

    Tasks done and failed, RSS, GPU memory and concurrency of each live worker (listed to the admin key
    only), summed in `totals`.
    """
    fleet = await insights.workers(caller)
    workers = [WorkerInfo.model_validate(w, from_attributes=True) for w in fleet.statuses if w.alive]
    totals = {
        "tasks_done": float(sum(w.tasks_done for w in workers)),
        "tasks_failed": float(sum(w.tasks_failed for w in workers)),
        "rss_mb": round(sum(w.rss_mb for w in workers), 1),
        "gpu_memory_mb": round(sum(sum(w.gpu_memory_mb) for w in workers), 1),
        "concurrency": float(sum(w.concurrency for w in workers)),
        "model_cache_hits": float(sum(w.model_cache_hits for w in workers)),
        "model_cache_misses": float(sum(w.model_cache_misses for w in workers)),
        "model_load_seconds": round(sum(w.model_load_seconds for w in workers), 2),
        "image_batches": float(sum(w.image_batches for w in workers)),
        "image_batched_tasks": float(sum(w.image_batched_tasks for w in workers)),
    }
    listed = workers if fleet.internals_shown else []
    return WorkersStatsResponse(workers=listed, totals=totals, timestamp=datetime.now(UTC))
