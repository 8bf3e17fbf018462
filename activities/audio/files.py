"""Audio in and out of ffmpeg: decode any input file, run a filter graph, encode the output, read it back.

Signals are float32 numpy arrays shaped (frames, channels). ffmpeg is the binary shipped by imageio-ffmpeg
(no system ffmpeg needed); raw float32 PCM goes through its stdin/stdout, so a filter chain never touches
disk. Every ffmpeg run polls a `should_stop` callback so a cancel or soft timeout stops it within ~0.2 s.
"""

from __future__ import annotations

import contextlib
import functools
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from activities.runtime import TaskInterrupted

Signal = npt.NDArray[np.float32]
StopCheck = Callable[[], bool]

CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
}
# Codec settings per container. Vorbis, not Opus, for ogg: libopus only accepts 8/12/16/24/48 kHz and the
# API offers 22.05/32/44.1 kHz too. WAV and FLAC are 16-bit, what every DAW and browser plays.
_ENCODERS: dict[str, list[str]] = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "192k", "-f", "mp3"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "6", "-f", "ogg"],
    "flac": ["-c:a", "flac", "-sample_fmt", "s16", "-f", "flac"],
    "wav": ["-c:a", "pcm_s16le", "-f", "wav"],
}
_POLL_S = 0.2
# Input files: servers label audio loosely (ogg as application/ogg, unknown files as octet-stream), and a
# video file's sound track is audio too (ffmpeg takes its first audio stream).
AUDIO_TYPES = ("audio/", "application/octet-stream", "application/ogg", "video/")


class FFmpegError(Exception):
    """ffmpeg exited non-zero; `stderr_tail` says why."""

    def __init__(self, message: str, stderr_tail: str) -> None:
        super().__init__(f"{message}: {stderr_tail}" if stderr_tail else message)
        self.stderr_tail = stderr_tail


@functools.cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg  # deferred: only audio/video workers need the binary's path

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def run_ffmpeg(args: list[str], *, stdin: bytes | None = None, should_stop: StopCheck | None = None) -> bytes:
    """Run ffmpeg with `args` (after the global flags) and return its stdout.

    Raises:
        FFmpegError: ffmpeg failed.
        TaskInterrupted: `should_stop` turned true while it ran (ffmpeg is killed).
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    if stdin is None:
        cmd.append("-nostdin")  # otherwise ffmpeg reads keystrokes from our stdin
    cmd += args
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Threads move the pipes, the caller's thread polls for a stop: Popen.communicate() cannot be resumed
    # after a timeout when it is feeding stdin (a retried call no longer writes the input), so it is not
    # usable for a stoppable run.
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    pumps = [
        threading.Thread(target=_drain, args=(proc.stdout, out_chunks), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, err_chunks), daemon=True),
    ]
    if stdin is not None:
        pumps.append(threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True))
    for pump in pumps:
        pump.start()
    try:
        while True:
            try:
                proc.wait(timeout=_POLL_S)
                break
            except subprocess.TimeoutExpired:
                if should_stop is not None and should_stop():
                    proc.kill()
                    proc.wait()
                    raise TaskInterrupted("stopped during ffmpeg") from None
    finally:
        for pump in pumps:
            pump.join()  # a killed or finished ffmpeg closes its pipes, so every pump ends
    out, err = b"".join(out_chunks), b"".join(err_chunks)
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-500:]
        raise FFmpegError(f"ffmpeg exited with {proc.returncode}", tail)
    return out


def _drain(pipe: IO[bytes], sink: list[bytes]) -> None:
    for chunk in iter(lambda: pipe.read(1 << 16), b""):
        sink.append(chunk)
    pipe.close()


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
    except (BrokenPipeError, ValueError):
        pass  # ffmpeg stopped reading (error or kill): its exit status and stderr tell why
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


def raw_input(sample_rate: int, channels: int) -> list[str]:
    """ffmpeg input options of raw float32 PCM on stdin."""
    return ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0"]


def _to_signal(raw: bytes, channels: int) -> Signal:
    data = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return data[: len(data) - len(data) % channels].reshape(-1, channels)


class AudioTooLong(Exception):
    """An input holds more audio than may be decoded (MAX_AUDIO_INPUT_S); decoding stopped at the limit."""

    def __init__(self, max_seconds: float) -> None:
        super().__init__(f"longer than {max_seconds:g} s")
        self.max_seconds = max_seconds


def decode_file(
    path: Path,
    sample_rate: int,
    channels: int,
    *,
    max_seconds: float,
    should_stop: StopCheck | None = None,
) -> Signal:
    """Any audio file ffmpeg reads (wav, mp3, ogg, flac, m4a, ...) as float32 at `sample_rate`/`channels`.

    ffmpeg stops a little after `max_seconds` of output, so a long input never fills memory.

    Raises:
        AudioTooLong: the input holds more than `max_seconds` of audio.
    """
    # Ten milliseconds past the limit: a file of exactly the limit decodes, a longer one shows it is longer.
    cap = f"{max_seconds + 0.01:.3f}"
    raw = run_ffmpeg(
        ["-i", str(path), "-vn", "-map", "0:a:0", "-ac", str(channels), "-ar", str(sample_rate), "-t", cap]
        + ["-f", "f32le", "-c:a", "pcm_f32le", "pipe:1"],
        should_stop=should_stop,
    )
    signal = _to_signal(raw, channels)
    if len(signal) > round(max_seconds * sample_rate) + sample_rate // 200:
        raise AudioTooLong(max_seconds)
    return signal


def probe_channels(path: Path) -> int:
    """Channel count of an audio file; ffmpeg's stream line when libsndfile cannot read the container."""
    import soundfile as sf

    try:
        return int(sf.info(str(path)).channels)
    except (RuntimeError, sf.LibsndfileError):
        pass
    # No ffprobe in imageio-ffmpeg: `ffmpeg -i` prints the stream description and exits non-zero.
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, check=False
    )
    match = re.search(r"Audio: [^\n]*?, \d+ Hz, ([^,\n]+)", proc.stderr.decode("utf-8", "replace"))
    if match is None:
        raise FFmpegError("no audio stream found", "")
    layout = match.group(1).strip()
    named = {"mono": 1, "stereo": 2}
    if layout in named:
        return named[layout]
    count = re.match(r"(\d+) channels", layout)
    return int(count.group(1)) if count else 2


def apply_filter(
    signal: Signal,
    sample_rate: int,
    graph: str,
    *,
    out_rate: int | None = None,
    should_stop: StopCheck | None = None,
) -> Signal:
    """Run `signal` through an ffmpeg audio filter graph (e.g. "highpass=f=80,acompressor=...")."""
    channels = signal.shape[1]
    rate = out_rate or sample_rate
    raw = run_ffmpeg(
        raw_input(sample_rate, channels)
        + [
            "-af",
            graph,
            "-ar",
            str(rate),
            "-ac",
            str(channels),
            "-f",
            "f32le",
            "-c:a",
            "pcm_f32le",
            "pipe:1",
        ],
        stdin=np.ascontiguousarray(signal, dtype="<f4").tobytes(),
        should_stop=should_stop,
    )
    return _to_signal(raw, channels)


def encode(
    signal: Signal, sample_rate: int, fmt: str, path: Path, *, should_stop: StopCheck | None = None
) -> None:
    """Write `signal` to `path` as `fmt` (mp3, ogg, flac, wav) at `sample_rate`."""
    run_ffmpeg(
        raw_input(sample_rate, signal.shape[1]) + _ENCODERS[fmt] + [str(path)],
        stdin=np.ascontiguousarray(np.clip(signal, -1.0, 1.0), dtype="<f4").tobytes(),
        should_stop=should_stop,
    )


@dataclass
class AudioFileInfo:
    """What a written file really holds, read back by decoding it."""

    duration: float
    sample_rate: int
    channels: int
    file_size: int
    signal: Signal


def read_back(path: Path) -> AudioFileInfo:
    """Decode an output file (libsndfile reads all four formats, mp3 included, honouring gapless info)."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    signal: Signal = np.asarray(data, dtype=np.float32)
    return AudioFileInfo(
        duration=round(len(signal) / rate, 4),
        sample_rate=int(rate),
        channels=int(signal.shape[1]),
        file_size=path.stat().st_size,
        signal=signal,
    )


def as_signal(values: Any) -> Signal:
    """A (frames, channels) float32 array from a list/1-D/2-D array."""
    array = np.asarray(values, dtype=np.float32)
    return array.reshape(-1, 1) if array.ndim == 1 else array
