"""What the API process holds for its lifetime: the Temporal connection, credentials, limits and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client, Interceptor
from temporalio.service import RPCError

from api.auth import Authenticator
from api.domain.errors import ServiceUnavailable
from api.service.admin import AdminService
from api.service.bulk import BulkService
from api.service.insights import InsightService
from api.service.pipelines import PipelineService
from api.service.quotas import Quotas
from api.service.tasks import TaskService
from api.service.usage import UsageService
from api.service.webhooks import WebhookService
from api.store.pipelines import PipelineStore
from api.store.store import TaskStore
from api.store.webhooks import WebhookStore
from taskservice.media_urls import MediaSigner, media_signer
from taskservice.settings import Settings
from taskservice.telemetry import ApiMetrics
from taskservice.temporal import connect

log = logging.getLogger("taskservice.api")

RECONNECT_EVERY_S = 2.0
METRICS_REFRESH_S = 10.0


@dataclass(frozen=True)
class Operations:
    """The service objects of one Temporal connection, built once when it opens: the store (its task-queue
    cache), the start path (its per-project capacity estimates) and every operation live as long as it."""

    store: TaskStore
    tasks: TaskService
    bulk: BulkService
    insights: InsightService
    admin: AdminService
    webhooks: WebhookService
    usage: UsageService
    pipelines: PipelineService

    @classmethod
    def open(cls, client: Client, settings: Settings, quotas: Quotas, metrics: ApiMetrics) -> Operations:
        store = TaskStore(client)
        tasks = TaskService(store, settings, quotas, metrics)
        insights = InsightService(store, settings, quotas, tasks.starts.estimates)
        webhooks = WebhookService(tasks, WebhookStore(client))
        usage = UsageService(store, quotas)
        pipelines = PipelineService(tasks.starts, PipelineStore(store), quotas)
        bulk, admin = BulkService(tasks), AdminService(tasks)
        return cls(store, tasks, bulk, insights, admin, webhooks, usage, pipelines)


@dataclass
class Services:
    """What an API replica holds for its lifetime, opened once in the app's lifespan and kept on
    `app.state.services`; every surface takes its operations from here (requests build none)."""

    settings: Settings
    auth: Authenticator
    quotas: Quotas
    media_signer: MediaSigner
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    started_at: float = field(default_factory=time.monotonic)
    client: Client | None = None
    _connector: asyncio.Task[None] | None = None
    _refresher: asyncio.Task[None] | None = None
    _operations: Operations | None = None
    # Result files of the local storage backend, served at signed URLs only (None: results are in S3).
    media_root: Path | None = None
    # Tracing's interceptor when traces are configured: workflows continue the request's trace.
    temporal_interceptors: tuple[Interceptor, ...] = ()

    @classmethod
    def build(cls, settings: Settings) -> Services:
        services = cls(
            settings=settings,
            auth=Authenticator(settings),
            quotas=Quotas(settings),
            media_signer=media_signer(settings),
        )
        if settings.storage_backend == "local":
            services.media_root = (settings.data_dir / "media").resolve()
            services.media_root.mkdir(parents=True, exist_ok=True)
        return services

    async def open(self) -> None:
        """Connect to Temporal; if it is down, keep trying in the background and answer 503 meanwhile."""
        if not await self._try_connect():
            self._connector = asyncio.create_task(self._reconnect_forever())
        self._refresher = asyncio.create_task(self._refresh_metrics_forever())

    async def close(self) -> None:
        for task in (self._connector, self._refresher):
            if task is not None:
                task.cancel()

    def operations(self) -> Operations:
        """The replica's operations, built at the first use after Temporal connected (503 until it has)."""
        client = self.client
        if client is None:
            raise ServiceUnavailable("Temporal is unreachable; the task service cannot accept or read tasks")
        if self._operations is None or self._operations.store.client is not client:
            self._operations = Operations.open(client, self.settings, self.quotas, self.metrics)
        return self._operations

    def store(self) -> TaskStore:
        return self.operations().store

    def tasks(self) -> TaskService:
        return self.operations().tasks

    def bulk(self) -> BulkService:
        return self.operations().bulk

    def insights(self) -> InsightService:
        return self.operations().insights

    def admin(self) -> AdminService:
        return self.operations().admin

    def webhooks(self) -> WebhookService:
        return self.operations().webhooks

    def usage(self) -> UsageService:
        return self.operations().usage

    def pipelines(self) -> PipelineService:
        return self.operations().pipelines

    async def _refresh_metrics_forever(self) -> None:
        """Keep the Prometheus gauges that come from Temporal (backlog, pollers, outcomes) fresh."""
        while True:
            try:
                store = self.store()
                for state in (await store.queues.all()).values():
                    self.metrics.queue_backlog.labels(state.name).set(state.backlog)
                    self.metrics.queue_pollers.labels(state.name).set(len(state.pollers))
                self.metrics.finished.state = await store.metrics_state()
                self.metrics.temporal_up.set(1)
            except (ServiceUnavailable, RPCError):
                self.metrics.temporal_up.set(0)
            await asyncio.sleep(METRICS_REFRESH_S)

    async def _try_connect(self) -> bool:
        try:
            self.client = await connect(self.settings, interceptors=self.temporal_interceptors)
        except RuntimeError as err:
            log.warning(
                "Temporal is unreachable",
                extra={"address": self.settings.temporal_address, "error": str(err)},
            )
            return False
        log.info("Connected to Temporal", extra={"address": self.settings.temporal_address})
        return True

    async def _reconnect_forever(self) -> None:
        while not await self._try_connect():
            await asyncio.sleep(RECONNECT_EVERY_S)
