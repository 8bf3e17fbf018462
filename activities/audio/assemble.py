"""assemble_clip, a scene's last mile: a video and its tracks as one MP4 (H.264 + AAC) of the video's length.

The video is fetched behind the input guard and its first video stream read from its packets (codec, size,
frames, length). The tracks are mixed exactly as process_audio mixes them (`AudioMix`), cut or padded to the
video's length and normalised when asked. ffmpeg muxes picture and mix (H.264 copied as it is, any other codec
encoded to H.264; AAC), and the written file is read back: its duration, size and frame rate, and the loudness
and true peak of its decoded sound, are what the result reports.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from activities.audio import dsp
from activities.audio import files as audio_io
from activities.audio.files import Signal, StopCheck
from activities.audio.mix import AudioMix
from activities.io.fetch import InputFetcher
from activities.io.publish import MediaPublisher, PublishedMedia, ResultFile
from activities.media.tools import workdir
from activities.media.video import VideoInfo, probe_video
from activities.provenance import audio_provenance
from activities.runtime import TaskProgress, permanent_error
from taskservice.assemble_data import AssembleClipData
from taskservice.contracts import TaskActivityInput
from taskservice.netguard import redact_url
from taskservice.settings import Settings

# What a video input may be served as (servers label files they do not know as bytes).
VIDEO_TYPES = ("video/", "application/octet-stream")
# The sound of a video: 48 kHz AAC, what players and editors expect of an MP4.
CLIP_SAMPLE_RATE = 48_000
_AAC = ["-c:a", "aac", "-b:a", "192k", "-ar", str(CLIP_SAMPLE_RATE)]
_H264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
_TIMEBASE = re.compile(r"^#tb 0: (\d+)/(\d+)$", re.MULTILINE)
_CODEC = re.compile(r"^#codec_id 0: (\S+)$", re.MULTILINE)
_DIMENSIONS = re.compile(r"^#dimensions 0: (\d+)x(\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class VideoStream:
    """The first video stream of an input, as its packets say (nothing decoded)."""

    codec: str
    width: int
    height: int
    frames: int
    # From the first frame's start to the last frame's end, seconds.
    duration: float


def read_video_stream(path: Path, should_stop: StopCheck) -> VideoStream:
    """Blocking: the first video stream of `path`, from ffmpeg's per-packet listing (`framecrc`, copied).

    Raises:
        FFmpegError: there is no video stream ffmpeg can read.
    """
    listing = audio_io.run_ffmpeg(
        ["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "pipe:1"], should_stop=should_stop
    ).decode("utf-8", "replace")
    timebase, codec = _TIMEBASE.search(listing), _CODEC.search(listing)
    dimensions = _DIMENSIONS.search(listing)
    # A packet line: stream, dts, pts, duration, size, checksum[, flags].
    packets = [
        (int(fields[2]), int(fields[3]))
        for line in listing.splitlines()
        if not line.startswith("#") and len(fields := [f.strip() for f in line.split(",")]) >= 5
    ]
    if not (timebase and codec and dimensions and packets):
        raise audio_io.FFmpegError("no video frames found", listing.strip()[-300:])
    # A last packet without a duration lasts as long as the ones before it.
    step = max(duration for _, duration in packets) or 1
    end = max(pts + (duration or step) for pts, duration in packets)
    ticks = end - min(pts for pts, _ in packets)
    return VideoStream(
        codec=codec.group(1),
        width=int(dimensions.group(1)),
        height=int(dimensions.group(2)),
        frames=len(packets),
        duration=ticks * int(timebase.group(1)) / int(timebase.group(2)),
    )


def fit_to_length(mix: Signal, frames: int) -> Signal:
    """The mix cut to `frames` samples, or padded with silence up to it."""
    if len(mix) >= frames:
        return mix[:frames]
    return np.concatenate([mix, np.zeros((frames - len(mix), mix.shape[1]), dtype=np.float32)])


def mux(video: Path, stream: VideoStream, mix: Signal, out: Path, should_stop: StopCheck) -> None:
    """Blocking: the video's picture and `mix` (float32 at CLIP_SAMPLE_RATE, on stdin) as one MP4."""
    picture = ["-c:v", "copy"] if stream.codec == "h264" else _H264
    audio_io.run_ffmpeg(
        ["-i", str(video), *audio_io.raw_input(CLIP_SAMPLE_RATE, mix.shape[1])]
        + ["-map", "0:v:0", "-map", "1:a:0", *picture, *_AAC]
        + ["-movflags", "+faststart", "-f", "mp4", str(out)],
        stdin=np.ascontiguousarray(np.clip(mix, -1.0, 1.0), dtype="<f4").tobytes(),
        should_stop=should_stop,
    )


def _json_number(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


@dataclass
class _Written:
    """The output file as read back: its picture, and its decoded sound's loudness and true peak."""

    video: VideoInfo
    channels: int
    loudness: float | None
    true_peak: float | None


def _clip_result(
    published: PublishedMedia, written: _Written, data: AssembleClipData, provenance: dict[str, Any]
) -> dict[str, Any]:
    """The result of a clip: where it is, and what the written file holds (as read back)."""
    info = written.video
    return published.result(
        {
            "duration": info.duration,
            "resolution": f"{info.width}x{info.height}",
            "fps": info.fps,
            "file_size": published.stored.size,
            "width": info.width,
            "height": info.height,
            "frames": info.frame_count,
            "format": "mp4",
            "video_codec": info.codec,
            "audio_codec": "aac",
            "sample_rate": CLIP_SAMPLE_RATE,
            "channels": written.channels,
            "integrated_loudness_lufs": _json_number(written.loudness),
            "true_peak_dbtp": _json_number(written.true_peak),
            "loudness_target_lufs": data.loudness_lufs,
            "tracks": len(data.tracks),
            "provenance": provenance,
            "storage_key": published.stored.key,
        }
    )


class ClipAssembly:
    """The assembling task on the worker's fetcher and publisher, mixing with process_audio's mixer."""

    def __init__(
        self, fetcher: InputFetcher, publisher: MediaPublisher, settings: Settings, mixer: AudioMix
    ) -> None:
        self._fetcher = fetcher
        self._publisher = publisher
        self._settings = settings
        self._mixer = mixer

    async def run(
        self, task: TaskActivityInput, data: AssembleClipData, progress: TaskProgress
    ) -> dict[str, Any]:
        stop: StopCheck = lambda: progress.should_stop  # noqa: E731 - named for the many calls below
        with workdir(task) as tmp:
            hashes: dict[str, str] = {}
            video, stream = await self._fetch_video(str(data.video), tmp, progress, hashes)
            self._check_tracks(data, stream)
            paths = await self._mixer.download(data.tracks, tmp, progress, hashes)
            mix = await self._mixer.mix_tracks(data.tracks, paths, CLIP_SAMPLE_RATE, progress)
            mix = fit_to_length(mix, round(stream.duration * CLIP_SAMPLE_RATE))
            if data.loudness_lufs is not None:
                progress.raise_if_stopped()
                progress.report(0.55, "normalizing")
                mix = await progress.run_blocking(
                    dsp.normalize_loudness, mix, CLIP_SAMPLE_RATE, data.loudness_lufs, should_stop=stop
                )
            progress.raise_if_stopped()
            progress.report(0.6, "muxing" if stream.codec == "h264" else "encoding")
            out = tmp / "clip.mp4"
            await progress.run_blocking(mux, video, stream, mix, out, stop)
            progress.report(0.85, "measuring")
            written = await self._read_back(out, stream, progress)
            provenance = await asyncio.to_thread(
                audio_provenance,
                self._settings,
                out,
                model=None,
                input_hashes=hashes,
                sample_rate=CLIP_SAMPLE_RATE,
                video="copied" if stream.codec == "h264" else f"encoded from {stream.codec}",
                loudness_target_lufs=data.loudness_lufs,
            )
            progress.raise_if_stopped()
            progress.report(0.92, "uploading")
            published = await self._publisher.publish(
                task, ResultFile(out, "mp4", "video/mp4"), alt=f"assembled clip {task.task_id}"
            )
        return _clip_result(published, written, data, provenance)

    async def _fetch_video(
        self, url: str, tmp: Path, progress: TaskProgress, hashes: dict[str, str]
    ) -> tuple[Path, VideoStream]:
        """The video's file under `tmp` and its stream, checked against the media limits."""
        progress.report(0.01, "downloading video")
        fetched = await self._fetcher.fetch(url, accept=VIDEO_TYPES)
        hashes[url] = hashlib.sha256(fetched.data).hexdigest()
        path = tmp / "video"
        await asyncio.to_thread(path.write_bytes, fetched.data)
        progress.raise_if_stopped()
        try:
            stream = await progress.run_blocking(read_video_stream, path, lambda: progress.should_stop)
        except audio_io.FFmpegError as err:
            raise permanent_error(
                f"video {redact_url(url)} has no video stream ffmpeg can read: {err.stderr_tail}",
                "InvalidInput",
            ) from None
        self._check_video(url, stream)
        return path, stream

    def _check_video(self, url: str, stream: VideoStream) -> None:
        """A video whose frames or length are above what a worker decodes (MAX_INPUT_PIXELS, MAX_AUDIO_MIX_S:
        the mix is as long as the video) is refused before the tracks are fetched."""
        where = f"video {redact_url(url)}"
        pixels = stream.width * stream.height
        if pixels > self._settings.max_input_pixels:
            raise permanent_error(
                f"{where} is {stream.width}x{stream.height} = {pixels:,} pixels a frame, above "
                f"MAX_INPUT_PIXELS = {self._settings.max_input_pixels:,}",
                "InvalidInput",
            )
        if stream.duration > self._settings.max_audio_mix_s:
            raise permanent_error(
                f"{where} is {stream.duration:.2f} s long, above MAX_AUDIO_MIX_S = "
                f"{self._settings.max_audio_mix_s:g} s",
                "InvalidInput",
            )

    @staticmethod
    def _check_tracks(data: AssembleClipData, stream: VideoStream) -> None:
        """A track starting after the picture ends would be cut whole: a mistake, said before fetching."""
        for index, track in enumerate(data.tracks):
            if track.offset_s >= stream.duration:
                raise permanent_error(
                    f"track {index + 1} starts at {track.offset_s:g} s, at or after the video's end "
                    f"({stream.duration:.3f} s)",
                    "InvalidInput",
                )

    async def _read_back(self, out: Path, stream: VideoStream, progress: TaskProgress) -> _Written:
        """What the written file holds: its picture decoded whole, its sound decoded and measured."""
        video = await progress.run_blocking(probe_video, out)
        channels = await progress.run_blocking(audio_io.probe_channels, out)
        sound = await progress.run_blocking(
            audio_io.decode_file,
            out,
            CLIP_SAMPLE_RATE,
            channels,
            max_seconds=stream.duration + 1.0,
            should_stop=lambda: progress.should_stop,
        )
        loudness = await progress.run_blocking(dsp.integrated_loudness, sound, CLIP_SAMPLE_RATE)
        peak = await progress.run_blocking(dsp.true_peak_dbtp, sound)
        return _Written(video=video, channels=channels, loudness=loudness, true_peak=peak)
