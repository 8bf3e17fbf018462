"""Inputs of `assemble_clip`, a scene's last step: a video and the tracks mixed under it. Beside
`taskservice/task_data.py` (at its size limit), whose track model it shares with process_audio."""

from __future__ import annotations

from pydantic import Field, HttpUrl

from taskservice.task_data import AudioTrack, TaskData


class AssembleClipData(TaskData):
    """Inputs of `assemble_clip`: a video and the tracks placed on it, as one MP4 of the video's length."""

    video: HttpUrl = Field(
        description="The picture (any container and codec ffmpeg reads; its own sound is dropped). "
        "H.264 is copied as it is; anything else is encoded to H.264."
    )
    tracks: list[AudioTrack] = Field(
        min_length=1,
        max_length=16,
        description="Tracks mixed under the picture (1-16), as in process_audio; audio past the video's end "
        "is cut.",
    )
    loudness_lufs: float | None = Field(
        None,
        ge=-40,
        le=-5,
        description="Integrated loudness the mix is normalised to (LUFS, -1 dBTP peaks); unset: as mixed. "
        "The measured loudness is in the result either way.",
    )
