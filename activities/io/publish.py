"""The last step of every media-producing task: store the result file and register it in Payload CMS."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activities.io.payload_cms import PayloadCMS
from activities.io.storage import MediaStorage, StoredMedia, media_key
from taskservice.contracts import TaskActivityInput
from taskservice.tracing import span

log = logging.getLogger("taskservice.media")


@dataclass(frozen=True)
class ResultFile:
    """A task's output file, with the extension and content type it is stored under."""

    path: Path
    ext: str
    content_type: str


@dataclass(frozen=True)
class PublishedMedia:
    stored: StoredMedia
    payload_media_id: str | None

    def result(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The result of a media task: where the file is, its CMS document, and what it holds."""
        return {"media_url": self.stored.url, "payload_media_id": self.payload_media_id, "metadata": metadata}


class MediaPublisher:
    """Puts a task's file under its deterministic key (a retried attempt overwrites it), then registers it."""

    def __init__(self, storage: MediaStorage, cms: PayloadCMS) -> None:
        self.storage = storage
        self._cms = cms

    async def publish(
        self,
        task: TaskActivityInput,
        file: ResultFile,
        *,
        alt: str,
        on_stored: Callable[[], None] | None = None,
    ) -> PublishedMedia:
        """Store `file` as the task's result; `on_stored` runs between the upload and the CMS call."""
        key = media_key(task.project_id, task.task_type, task.output_name, file.ext)
        with span("media.upload", content_type=file.content_type):
            stored = await self.storage.put_file(key, file.path, file.content_type)
        if on_stored is not None:
            on_stored()
        media_id = await self._cms.register_media(
            file.path, filename=f"{task.output_name}.{file.ext}", content_type=file.content_type, alt=alt
        )
        log.info(
            "Media stored",
            extra={
                "task_id": task.task_id,
                "project_id": task.project_id,
                "task_type": task.task_type,
                "key": stored.key,
                "size": stored.size,
                "payload_media_id": media_id,
            },
        )
        return PublishedMedia(stored, media_id)
