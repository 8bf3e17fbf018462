"""``taskctl download``: save a completed task's result file (its ``result.media_url``) into a folder."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from taskservice_client.cli_output import UsageError
from taskservice_client.errors import TaskServiceError
from taskservice_client.models import TaskState, TaskStatus


@dataclass(frozen=True)
class SavedMedia:
    task_id: str
    path: Path
    media_url: str
    size: int


def media_url_of(status: TaskStatus, base_url: str) -> str:
    """The task's result file URL, absolute; a task without one is a usage error that says why."""
    if status.status is not TaskState.COMPLETED:
        raise UsageError(f"task {status.task_id} is {status.status.value}: only a completed task has a file")
    url = (status.result or {}).get("media_url")
    if not isinstance(url, str) or not url:
        raise UsageError(
            f"task {status.task_id} ({status.task_type}) has no result file (no result.media_url)"
        )
    return urljoin(base_url.rstrip("/") + "/", url)


def save_media(status: TaskStatus, base_url: str, directory: Path, *, timeout: float = 60) -> SavedMedia:
    """Download the file into ``directory`` under its own name (``<task_id>.<ext>``), atomically."""
    url = media_url_of(status, base_url)
    name = Path(urlsplit(url).path).name or f"{status.task_id}.bin"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    partial = tempfile.NamedTemporaryFile(dir=directory, prefix=f".{name}.", delete=False)
    try:
        with partial, httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as answer:
            if answer.status_code != 200:
                answer.read()
                raise TaskServiceError(
                    f"download of {urlsplit(url).path} answered {answer.status_code}: {answer.text[:200]}",
                    status_code=answer.status_code,
                )
            for chunk in answer.iter_bytes():
                partial.write(chunk)
        os.replace(partial.name, target)
    except httpx.HTTPError as err:
        raise TaskServiceError(f"download of {urlsplit(url).path} failed: {err}") from None
    finally:
        Path(partial.name).unlink(missing_ok=True)
    return SavedMedia(status.task_id, target.resolve(), url, target.stat().st_size)
