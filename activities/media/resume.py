"""Renders that resume where they stopped: each finished clip of a video or animation is kept in storage next
to the task's media (`<task_id>.clip<i>.npy`, its native frames) and recorded in the attempt's heartbeat
(`ClipCheckpoint`); a retry of the task (worker lost, heartbeat timeout, hard timeout) loads those clips and
renders from the first unfinished one with the same seed, so the result is what one uninterrupted render
gives. The kept clips are deleted once the video is published, or when the task ends for good (cancelled,
a permanent failure)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activities.io.storage import MediaStorage, media_key
from activities.runtime import TaskProgress
from taskservice.contracts import ClipCheckpoint, TaskActivityInput

if TYPE_CHECKING:
    from collections.abc import Callable

    from activities.media.video import Frames


class ClipStore:
    """The kept clips of one render; `keep` and `finished` are blocking (the render thread's)."""

    def __init__(
        self,
        storage: MediaStorage,
        task: TaskActivityInput,
        folder: Path,
        checkpoint: ClipCheckpoint,
        progress: TaskProgress,
    ) -> None:
        self._storage = storage
        self._task = task
        self._folder = folder
        self._loop = asyncio.get_running_loop()
        self.checkpoint = checkpoint
        self._progress = progress
        self.on_kept: Callable[[int, int], None] | None = None
        progress.keep_clips(checkpoint)

    @classmethod
    async def open(
        cls,
        storage: MediaStorage,
        task: TaskActivityInput,
        folder: Path,
        progress: TaskProgress,
        *,
        seed: int,
        clips: int,
    ) -> ClipStore:
        """The clips the previous attempt kept, fetched into `folder`, when they belong to this same render
        (as many clips; all still in storage); otherwise a fresh start (what was kept is deleted)."""
        previous = progress.previous.clips if progress.previous is not None else None
        if previous is None:
            return cls(storage, task, folder, ClipCheckpoint(seed=seed, clips=clips), progress)
        fetched = previous.clips == clips and len(previous.keys) <= clips
        for index, key in enumerate(previous.keys if fetched else []):
            if not await storage.get_file(key, folder / f"clip{index}.npy"):
                fetched = False
                break
        if not fetched:
            await storage.delete(previous.keys)
            return cls(storage, task, folder, ClipCheckpoint(seed=seed, clips=clips), progress)
        checkpoint = ClipCheckpoint(
            seed=previous.seed,
            clips=clips,
            keys=list(previous.keys),
            attempts=previous.attempts + 1,
            resumed_from=len(previous.keys),
        )
        return cls(storage, task, folder, checkpoint, progress)

    @property
    def seed(self) -> int:
        return self.checkpoint.seed

    def finished(self) -> list[Frames]:
        """Blocking: the native frames of the clips kept by earlier attempts, in order."""
        import numpy as np

        return [np.load(self._folder / f"clip{i}.npy") for i in range(len(self.checkpoint.keys))]

    def keep(self, index: int, frames: Frames) -> None:
        """Blocking: store clip `index`'s native frames and record them in the heartbeat."""
        import numpy as np

        path = self._folder / f"clip{index}.npy"
        np.save(path, frames)
        key = media_key(self._task.project_id, self._task.task_type, self._task.task_id, f"clip{index}.npy")
        upload = self._storage.put_file(key, path, "application/octet-stream")
        asyncio.run_coroutine_threadsafe(upload, self._loop).result()
        self.checkpoint.keys.append(key)
        self._progress.keep_clips(self.checkpoint)
        if self.on_kept is not None:
            self.on_kept(index + 1, self.checkpoint.clips)

    def resumed(self) -> dict[str, Any]:
        """`metadata.resumed` of the result: the first clip this attempt rendered, and the attempts taken."""
        return {"from_clip": self.checkpoint.resumed_from, "attempts": self.checkpoint.attempts}

    async def discard(self) -> None:
        """Delete the kept clips (the video is published, or the task will not be retried)."""
        await self._storage.delete(list(self.checkpoint.keys))
