"""The render cache's activities, run on the workflow queue (every worker polls it; no model, no GPU slot).

`lookup_cache` computes a task's content key and reads its tenant's manifest (`cache/<tenant>/<key>.json`
in the media store); `store_cache` writes one after a render completed. An entry older than CACHE_TTL_DAYS,
or whose media is gone, is a miss, not an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from taskservice.catalog import CATALOG
from taskservice.content_key import ModelFingerprints, content_key, input_urls
from taskservice.payloads import decode
from taskservice.queues import WORKFLOW_QUEUE
from taskservice.render_cache import (
    ATTACH_SIGNAL,
    RENDER_WORKFLOW,
    CacheHit,
    CacheLookup,
    CacheLookupInput,
    CacheManifest,
    CacheStoreInput,
    manifest_key,
)
from taskservice.render_contracts import JoinRender
from taskservice.settings import Settings
from taskservice.telemetry import WorkerMetrics

if TYPE_CHECKING:
    # Types only: activities.io.fetch imports the task workflow, whose module imports this one.
    from activities.io.fetch import InputFetcher
    from activities.io.storage import MediaStorage

log = logging.getLogger("taskservice.cache")


class CacheActivities:
    """Keys and manifests, on the worker's fetcher and media store; model fingerprints live per process."""

    def __init__(
        self,
        settings: Settings,
        storage: MediaStorage,
        fetcher: InputFetcher,
        *,
        client: Client | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._storage = storage
        self._fetcher = fetcher
        self._metrics = metrics
        self._fingerprints = ModelFingerprints()

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [self.lookup_cache, self.store_cache, self.join_render]

    @activity.defn(name="lookup_cache")
    async def lookup_cache(self, task: CacheLookupInput) -> CacheLookup:
        """The task's key and, when it may be answered from the cache, the tenant's live entry of it."""
        hashes = await self._input_hashes(task.task_data)
        if hashes is None:
            self._count(task.task_type, "uncomputable")
            return CacheLookup(key=None)
        spec = CATALOG[task.task_type]
        settings = {name: getattr(self._settings, name) for name in spec.cache_settings}
        key = content_key(spec.activity_name, task.task_data, settings, hashes, self._fingerprints)
        if not task.lookup:
            self._count(task.task_type, "refresh")
            return CacheLookup(key=key, input_hashes=hashes)
        hit = await self._live_entry(task.tenant, key)
        self._count(task.task_type, "hit" if hit else "miss")
        if hit is not None and self._metrics is not None:
            self._metrics.cache_saved_seconds.labels(task.task_type).inc(hit.saved_seconds)
        return CacheLookup(key=key, hit=hit, input_hashes=hashes)

    @activity.defn(name="store_cache")
    async def store_cache(self, entry: CacheStoreInput) -> None:
        """Keep a completed task's result under its key (replacing an older entry)."""
        result = {k: v for k, v in entry.result.items() if k != "cache"}
        media_keys = _media_keys(result)
        if "media_url" in result and not media_keys:
            return  # a file whose storage key is unknown cannot be signed again for another caller
        manifest = CacheManifest(
            key=entry.key,
            task_type=entry.task_type,
            source_task_id=entry.task_id,
            created=datetime.now(UTC).isoformat(),
            processing_seconds=entry.processing_seconds,
            result=result,
            media_keys=media_keys,
        )
        body = json.dumps(asdict(manifest), sort_keys=True).encode()
        await self._storage.put_bytes(manifest_key(entry.tenant, entry.key), body, "application/json")
        log.info(
            "Render cached",
            extra={"task_id": entry.task_id, "task_type": entry.task_type, "cache_key": entry.key},
        )

    @activity.defn(name="join_render")
    async def join_render(self, join: JoinRender) -> None:
        """Attach the task to its key's render: signal-with-start, so two tasks of one key start one."""
        if self._client is None:
            raise RuntimeError("join_render needs the worker's Temporal client")
        await self._client.start_workflow(
            RENDER_WORKFLOW,
            join.render,
            id=join.render.task.task_id,
            task_queue=WORKFLOW_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal=ATTACH_SIGNAL,
            start_signal_args=[join.task_id],
        )

    async def _input_hashes(self, task_data: dict[str, Any]) -> dict[str, str] | None:
        """SHA-256 of each input URL's content; None when one cannot be fetched (the task runs uncached
        and reports the input's error itself)."""
        from activities.io.fetch import InputFetchError  # loaded by now: see TYPE_CHECKING above

        hashes: dict[str, str] = {}
        for url in input_urls(task_data):
            try:
                fetched = await self._fetcher.fetch(url, accept=("",))
            except (ApplicationError, InputFetchError):
                return None
            hashes[url] = hashlib.sha256(fetched.data).hexdigest()
        return hashes

    async def _live_entry(self, tenant: str, key: str) -> CacheHit | None:
        data = await self._storage.read_bytes(manifest_key(tenant, key))
        if data is None:
            return None
        try:
            manifest = decode(CacheManifest, json.loads(data))
            created = datetime.fromisoformat(manifest.created)
        except (ValueError, TypeError, KeyError):
            log.warning("Unreadable cache manifest: a miss", extra={"cache_key": key})
            return None
        if datetime.now(UTC) - created > timedelta(days=self._settings.cache_ttl_days):
            return None
        for media in manifest.media_keys:
            if not await self._storage.exists(media):
                return None
        result = dict(manifest.result)
        if manifest.media_keys and "media_url" in result:
            result["media_url"] = self._storage.url_for(manifest.media_keys[0])
        return CacheHit(
            result=result,
            source_task_id=manifest.source_task_id,
            saved_seconds=manifest.processing_seconds,
        )

    def _count(self, task_type: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.cache_lookups.labels(task_type, outcome).inc()


def _media_keys(result: dict[str, Any]) -> list[str]:
    metadata = result.get("metadata")
    key = metadata.get("storage_key") if isinstance(metadata, dict) else None
    return [key] if isinstance(key, str) and key else []
