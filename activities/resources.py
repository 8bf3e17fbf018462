"""What a worker process builds once and hands to every activity class it runs."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

import httpx

from activities.io.fetch import InputFetcher
from activities.io.payload_cms import PayloadCMS
from activities.io.publish import MediaPublisher
from activities.io.storage import MediaStorage, build_storage
from taskservice.settings import Settings


@dataclass(frozen=True)
class WorkerResources:
    """The settings and the shared clients: one HTTP connection pool (input downloads, Payload CMS, the LLM
    endpoint, webhooks), one input fetcher and one publisher. Each caller sets its own per-request timeout."""

    settings: Settings
    http: httpx.AsyncClient
    fetcher: InputFetcher
    publisher: MediaPublisher

    @classmethod
    def open(cls, settings: Settings, *, storage: MediaStorage | None = None) -> WorkerResources:
        """Build them (no I/O yet); `storage` replaces STORAGE_BACKEND's backend (tests make a bucket)."""
        http = httpx.AsyncClient(follow_redirects=False)
        publisher = MediaPublisher(storage or build_storage(settings), PayloadCMS(settings, http))
        return cls(settings, http, InputFetcher(settings, http), publisher)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> WorkerResources:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
