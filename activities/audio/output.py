"""The tail both audio task types share: encode the signal, read the file back, publish it, report it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from activities.audio import files as audio_io
from activities.audio.files import AudioFileInfo, Signal
from activities.io.publish import MediaPublisher, PublishedMedia, ResultFile
from activities.runtime import TaskProgress
from taskservice.contracts import TaskActivityInput


async def encode_output(
    signal: Signal, rate: int, fmt: str, out: Path, progress: TaskProgress
) -> AudioFileInfo:
    """Write `out` as `fmt` and decode it again: the result describes the file, not the intent."""
    await progress.run_blocking(
        audio_io.encode, signal, rate, fmt, out, should_stop=lambda: progress.should_stop
    )
    return await progress.run_blocking(audio_io.read_back, out)


async def publish_output(
    publisher: MediaPublisher, task: TaskActivityInput, out: Path, fmt: str, alt: str, progress: TaskProgress
) -> PublishedMedia:
    progress.raise_if_stopped()
    progress.report(0.92, "uploading")
    return await publisher.publish(task, ResultFile(out, fmt, audio_io.CONTENT_TYPES[fmt]), alt=alt)


def audio_result(published: PublishedMedia, info: AudioFileInfo, fmt: str, **metadata: Any) -> dict[str, Any]:
    """The result of an audio task: the file's own duration, rate and channels, then the type's fields."""
    return published.result(
        {
            "duration": info.duration,
            "sample_rate": info.sample_rate,
            "format": fmt,
            "channels": info.channels,
            "file_size": info.file_size,
            **metadata,
            "storage_key": published.stored.key,
        }
    )
