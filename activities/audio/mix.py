"""process_audio: download the tracks, mix them (gain, offset, fades, trim), apply the operations in order,
keep peaks under full scale, encode, and measure what was written."""

from __future__ import annotations

import asyncio
import hashlib
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from activities.audio import dsp
from activities.audio import files as audio_io
from activities.audio.files import AUDIO_TYPES, Signal, StopCheck
from activities.audio.output import audio_result, encode_output, publish_output
from activities.io.fetch import InputFetcher
from activities.io.publish import MediaPublisher
from activities.provenance import audio_provenance
from activities.runtime import TaskProgress, permanent_error
from taskservice.audio_operations import AudioOperation, CompressOp, DenoiseOp, NormalizeOp, TrimSilenceOp
from taskservice.contracts import TaskActivityInput
from taskservice.netguard import redact_url
from taskservice.settings import Settings
from taskservice.task_data import AudioTrack, ProcessAudioData


def _json_number(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


class AudioMix:
    """The mixing task on the worker's fetcher and publisher."""

    def __init__(self, fetcher: InputFetcher, publisher: MediaPublisher, settings: Settings) -> None:
        self._fetcher = fetcher
        self._publisher = publisher
        self._max_input_s = settings.max_audio_input_s
        self._max_mix_s = settings.max_audio_mix_s
        self._settings = settings

    async def run(
        self, task: TaskActivityInput, data: ProcessAudioData, progress: TaskProgress
    ) -> dict[str, Any]:
        rate = data.sample_rate
        stop: StopCheck = lambda: progress.should_stop  # noqa: E731 - named for the many calls below
        with tempfile.TemporaryDirectory(prefix="mix-") as tmp_name:
            tmp = Path(tmp_name)
            hashes: dict[str, str] = {}
            paths = await self.download(data.tracks, tmp, progress, hashes)
            mix = await self.mix_tracks(data.tracks, paths, rate, progress)
            applied: list[str] = []
            for index, op in enumerate(data.operations):
                progress.raise_if_stopped()
                progress.report(
                    0.5 + 0.3 * index / len(data.operations), f"{op.type} {index + 1}/{len(data.operations)}"
                )
                mix = await progress.run_blocking(apply_operation, mix, rate, op, stop)
                applied.append(op.type)
            if len(mix) == 0:
                raise permanent_error(
                    "the mix is empty (tracks hold no audio after trimming)", "InvalidInput"
                )
            # EQ or compression make-up can push peaks over full scale; a limiter is kinder than clipping.
            if float(np.max(np.abs(mix))) > 1.0:
                mix = await progress.run_blocking(dsp.limit_peaks, mix, rate, should_stop=stop)
            progress.raise_if_stopped()
            progress.report(0.82, "encoding")
            out = tmp / f"mix.{data.output_format}"
            info = await encode_output(mix, rate, data.output_format, out, progress)
            progress.report(0.88, "measuring")
            loudness = await progress.run_blocking(dsp.integrated_loudness, info.signal, info.sample_rate)
            peak = await progress.run_blocking(dsp.true_peak_dbtp, info.signal)
            alt = f"audio mix {task.task_id}"
            provenance = await asyncio.to_thread(
                audio_provenance,
                self._settings,
                out,
                model=None,
                input_hashes=hashes,
                sample_rate=rate,
                operations=[op.model_dump(mode="json") for op in data.operations],
            )
            published = await publish_output(self._publisher, task, out, data.output_format, alt, progress)
        return audio_result(
            published,
            info,
            data.output_format,
            integrated_loudness_lufs=_json_number(loudness),
            true_peak_dbtp=_json_number(peak),
            tracks=len(data.tracks),
            operations=applied,
            provenance=provenance,
        )

    async def download(
        self, tracks: list[AudioTrack], tmp: Path, progress: TaskProgress, hashes: dict[str, str]
    ) -> list[Path]:
        """Each track's file under `tmp`, fetched behind the input guard; `hashes` gets each URL's SHA-256."""
        paths: list[Path] = []
        for index, track in enumerate(tracks):
            progress.raise_if_stopped()
            progress.report(0.02 + 0.18 * index / len(tracks), f"downloading {index + 1}/{len(tracks)}")
            fetched = await self._fetcher.fetch(track.url, accept=AUDIO_TYPES)
            hashes[track.url] = hashlib.sha256(fetched.data).hexdigest()
            path = tmp / f"track{index}"
            await asyncio.to_thread(path.write_bytes, fetched.data)
            paths.append(path)
        return paths

    async def mix_tracks(
        self, tracks: list[AudioTrack], paths: list[Path], rate: int, progress: TaskProgress
    ) -> Signal:
        """The tracks decoded, trimmed, faded, at their gains and offsets, summed (assemble_clip's too)."""
        try:
            channel_counts = [await progress.run_blocking(audio_io.probe_channels, p) for p in paths]
        except audio_io.FFmpegError:
            raise permanent_error("a track has no audio stream ffmpeg can read", "InvalidInput") from None
        # Mono stays mono; anything with more than one channel makes a stereo mix (surround is downmixed).
        channels = 2 if max(channel_counts) > 1 else 1
        mix = np.zeros((0, channels), dtype=np.float32)
        for index, (track, path) in enumerate(zip(tracks, paths, strict=True)):
            progress.raise_if_stopped()
            progress.report(0.2 + 0.3 * index / len(tracks), f"decoding {index + 1}/{len(tracks)}")
            # A mono track is decoded mono and copied to both sides: ffmpeg's upmix would put it at
            # -3 dB (centre mix level), so gain_db would no longer mean what it says.
            decode_channels = 1 if channel_counts[index] == 1 else channels
            try:
                signal = await progress.run_blocking(
                    audio_io.decode_file,
                    path,
                    rate,
                    decode_channels,
                    max_seconds=self._max_input_s,
                    should_stop=lambda: progress.should_stop,
                )
            except audio_io.FFmpegError as err:
                raise permanent_error(
                    f"track {index + 1} ({redact_url(track.url)}) is not decodable audio: {err.stderr_tail}",
                    "InvalidInput",
                ) from None
            except audio_io.AudioTooLong as err:
                where = f"track {index + 1} ({redact_url(track.url)})"
                raise permanent_error(f"{where} is {err}, above MAX_AUDIO_INPUT_S", "InvalidInput") from None
            if signal.shape[1] != channels:
                signal = np.repeat(signal, channels, axis=1)
            signal = _trimmed_faded_gained(track, index, signal, rate)
            offset = int(round(track.offset_s * rate))
            self._check_mix_length(index, (offset + len(signal)) / rate)
            mix = dsp.mix_at(mix, signal, offset)
        return dsp.protect_clipping(mix)

    def _check_mix_length(self, index: int, end_s: float) -> None:
        """The mix grows to where its last track ends: bounded by MAX_AUDIO_MIX_S before it is allocated."""
        if end_s > self._max_mix_s:
            raise permanent_error(
                f"track {index + 1} ends at {end_s:.2f} s, above MAX_AUDIO_MIX_S = {self._max_mix_s:g} s",
                "InvalidInput",
            )


def _trimmed_faded_gained(track: AudioTrack, index: int, signal: Signal, rate: int) -> Signal:
    """A decoded track as it enters the mix: cut to its trim, faded, at its gain."""
    if track.trim is not None:
        start = int(track.trim.start_s * rate)
        end = len(signal) if track.trim.end_s is None else int(track.trim.end_s * rate)
        if end <= start:
            raise permanent_error(f"track {index + 1}: trim end_s must be after start_s", "InvalidInput")
        signal = signal[start:end]
    signal = dsp.fade(signal, rate, track.fade_in_s, track.fade_out_s)
    return (signal * dsp.db_to_gain(track.gain_db)).astype(np.float32)


def apply_operation(mix: Signal, rate: int, op: AudioOperation, should_stop: StopCheck) -> Signal:
    """Blocking: one operation of `operations` on the whole mix."""
    if len(mix) == 0:
        return mix
    if isinstance(op, NormalizeOp):
        return dsp.normalize_loudness(mix, rate, op.target_lufs, should_stop=should_stop)
    if isinstance(op, TrimSilenceOp):
        return dsp.trim_silence(mix, rate, op.threshold_db)
    if isinstance(op, DenoiseOp):
        return dsp.denoise(mix, rate, op.strength, should_stop=should_stop)
    if isinstance(op, CompressOp):
        graph = dsp.COMPRESS_FILTERS[op.preset]
    else:
        graph = dsp.EQ_FILTERS[op.preset]
    return audio_io.apply_filter(mix, rate, graph, should_stop=should_stop)
