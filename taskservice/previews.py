"""Live previews of renders in progress: what a preview is as it crosses Temporal (heartbeat details, the
`task_preview` signal) and where it is stored. The worker side is `activities.media.previews`."""

from __future__ import annotations

from dataclasses import dataclass

# Longest side of a preview image, px.
PREVIEW_MAX_SIDE = 256
# A task's preview is stored beside its result, as `{project}/{task_type}/{task}.preview.webp` (overwritten).
PREVIEW_EXT = "preview.webp"
PREVIEW_CONTENT_TYPE = "image/webp"


@dataclass
class TaskPreview:
    """The latest live preview of a render in progress: a small WebP beside the task's media, at a signed URL
    like the result's, and when it was written (ISO 8601)."""

    url: str
    at: str
