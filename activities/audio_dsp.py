"""Audio DSP for the audio task types: ffmpeg decode/filter/encode, loudness, mixing and the mix operations.

Signals are float32 numpy arrays shaped (frames, channels). ffmpeg is the binary shipped by imageio-ffmpeg
(no system ffmpeg needed); raw float32 PCM goes through its stdin/stdout, so a filter chain never touches
disk. Every ffmpeg run polls a `should_stop` callback so a cancel or soft timeout stops it within ~0.2 s.
Loudness is ITU-R BS.1770 (pyloudnorm); true peak is the sample peak of a 4x oversampled signal.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from activities.runtime import TaskInterrupted

Signal = npt.NDArray[np.float32]
StopCheck = Callable[[], bool]
AudioFormat = Literal["mp3", "wav", "ogg", "flac"]

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
# pyloudnorm's gating blocks are 400 ms: shorter audio has no integrated loudness.
MIN_LOUDNESS_S = 0.4
TRUE_PEAK_CEILING_DBTP = -1.0
_POLL_S = 0.2


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


def _raw_input(sample_rate: int, channels: int) -> list[str]:
    return ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0"]


def _to_signal(raw: bytes, channels: int) -> Signal:
    data = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return data[: len(data) - len(data) % channels].reshape(-1, channels)


def decode_file(
    path: Path, sample_rate: int, channels: int, *, should_stop: StopCheck | None = None
) -> Signal:
    """Any audio file ffmpeg reads (wav, mp3, ogg, flac, m4a, ...) as float32 at `sample_rate`/`channels`."""
    raw = run_ffmpeg(
        [
            "-i",
            str(path),
            "-vn",
            "-map",
            "0:a:0",
            "-ac",
            str(channels),
            "-ar",
            str(sample_rate),
            "-f",
            "f32le",
            "-c:a",
            "pcm_f32le",
            "pipe:1",
        ],
        should_stop=should_stop,
    )
    return _to_signal(raw, channels)


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
        _raw_input(sample_rate, channels)
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


def resample(signal: Signal, from_rate: int, to_rate: int, *, should_stop: StopCheck | None = None) -> Signal:
    if from_rate == to_rate:
        return signal
    return apply_filter(
        signal, from_rate, "aresample=resampler=soxr:precision=28", out_rate=to_rate, should_stop=should_stop
    )


def encode(
    signal: Signal, sample_rate: int, fmt: str, path: Path, *, should_stop: StopCheck | None = None
) -> None:
    """Write `signal` to `path` as `fmt` (mp3, ogg, flac, wav) at `sample_rate`."""
    run_ffmpeg(
        _raw_input(sample_rate, signal.shape[1]) + _ENCODERS[fmt] + [str(path)],
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


# --- levels -------------------------------------------------------------------------------------------


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def rms_db(signal: Signal) -> float:
    value = float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) if signal.size else 0.0
    return 20.0 * math.log10(value) if value > 0 else -math.inf


def active_rms_db(signal: Signal, sample_rate: int, *, floor_db: float = -50.0) -> float:
    """RMS over the 20 ms frames louder than `floor_db`: the level of the speech, not of its pauses."""
    mono = signal.mean(axis=1) if signal.ndim == 2 else signal
    frame = max(1, sample_rate // 50)
    count = len(mono) // frame
    if count == 0:
        return rms_db(signal)
    frames = mono[: count * frame].reshape(count, frame).astype(np.float64)
    power = np.mean(frames**2, axis=1)
    active = power[power > 10 ** (floor_db / 10)]
    if active.size == 0:
        return rms_db(signal)
    return 10.0 * math.log10(float(np.mean(active)))


def integrated_loudness(signal: Signal, sample_rate: int) -> float | None:
    """Integrated loudness in LUFS (ITU-R BS.1770-4 gating); None for silence or audio under 0.4 s."""
    import pyloudnorm

    if len(signal) < int(MIN_LOUDNESS_S * sample_rate) + 1:
        return None
    value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(signal.astype(np.float64)))
    return value if math.isfinite(value) else None


def true_peak_dbtp(signal: Signal) -> float | None:
    """Peak of the 4x oversampled signal in dBTP (BS.1770 annex 2 style); None for digital silence."""
    from scipy.signal import resample_poly

    if signal.size == 0:
        return None
    upsampled = resample_poly(signal.astype(np.float64), 4, 1, axis=0)
    peak = float(np.max(np.abs(upsampled)))
    return 20.0 * math.log10(peak) if peak > 0 else None


def limit_peaks(
    signal: Signal,
    sample_rate: int,
    ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP,
    *,
    should_stop: StopCheck | None = None,
) -> Signal:
    """Bring true peaks under `ceiling_dbtp` with a look-ahead limiter (only if they are above it)."""
    peak = true_peak_dbtp(signal)
    if peak is None or peak <= ceiling_dbtp:
        return signal
    # alimiter works on sample peaks; aiming 0.5 dB lower leaves room for inter-sample overs.
    limit = db_to_gain(ceiling_dbtp - 0.5)
    limited = apply_filter(
        signal,
        sample_rate,
        f"alimiter=limit={limit:.5f}:attack=3:release=60:level=disabled:latency=1",
        should_stop=should_stop,
    )
    # Whatever the limiter let through (its release is not brick-wall) is scaled under the ceiling.
    after = true_peak_dbtp(limited)
    if after is not None and after > ceiling_dbtp:
        limited = (limited * db_to_gain(ceiling_dbtp - after)).astype(np.float32)
    return limited


def normalize_loudness(
    signal: Signal, sample_rate: int, target_lufs: float, *, should_stop: StopCheck | None = None
) -> Signal:
    """Gain to `target_lufs`, then a -1 dBTP true-peak limiter; repeated since limiting lowers loudness."""
    out = signal
    for _ in range(3):
        measured = integrated_loudness(out, sample_rate)
        if measured is None:
            return out  # silence or too short: there is no loudness to normalise
        if abs(measured - target_lufs) < 0.1:
            break
        out = (out * db_to_gain(target_lufs - measured)).astype(np.float32)
        out = limit_peaks(out, sample_rate, should_stop=should_stop)
    return out


# --- mixing -------------------------------------------------------------------------------------------


def fade(signal: Signal, sample_rate: int, fade_in_s: float | None, fade_out_s: float | None) -> Signal:
    """Equal-power (sine) fades: a linear ramp sounds like it drops out early."""
    out = signal.copy()
    n = len(out)
    if fade_in_s:
        k = min(n, int(round(fade_in_s * sample_rate)))
        if k > 0:
            out[:k] *= np.sin(np.linspace(0.0, math.pi / 2, k, dtype=np.float32))[:, None]
    if fade_out_s:
        k = min(n, int(round(fade_out_s * sample_rate)))
        if k > 0:
            out[n - k :] *= np.cos(np.linspace(0.0, math.pi / 2, k, dtype=np.float32))[:, None]
    return out


def mix_at(bus: Signal, signal: Signal, offset: int) -> Signal:
    """Add `signal` into `bus` starting at frame `offset`, growing the bus when needed."""
    end = offset + len(signal)
    if end > len(bus):
        bus = np.concatenate([bus, np.zeros((end - len(bus), bus.shape[1]), dtype=np.float32)])
    bus[offset:end] += signal
    return bus


# --- process_audio operations -------------------------------------------------------------------------

# afftdn reduction (dB) per strength, with a rumble high-pass. Not anlmdn for "strong": it corrupts the heap
# and aborts in the imageio-ffmpeg 9.0 build.
DENOISE_STRENGTH: dict[str, tuple[float, int]] = {
    "light": (6.0, 40),
    "medium": (12.0, 60),
    "strong": (24.0, 80),
}


def noise_floor_db(signal: Signal, sample_rate: int) -> float:
    """Level of the quietest 10 % of 50 ms frames (dBFS): the noise between the sounds."""
    mono = signal.mean(axis=1)
    frame = max(1, sample_rate // 20)
    count = len(mono) // frame
    if count == 0:
        return -80.0
    power = np.mean(mono[: count * frame].reshape(count, frame).astype(np.float64) ** 2, axis=1)
    return 10.0 * math.log10(float(np.percentile(power, 10)) + 1e-12)


def denoise(
    signal: Signal, sample_rate: int, strength: str, *, should_stop: StopCheck | None = None
) -> Signal:
    """Spectral noise reduction (afftdn) against the measured noise floor.

    afftdn's own floor tracking barely engages on steady hiss in this build (~2 dB); told the floor,
    measured from the quiet frames (+3 dB so the whole noise spectrum sits under it), it removes 10-25 dB.
    """
    reduction, highpass = DENOISE_STRENGTH[strength]
    floor = min(-20.0, max(-80.0, noise_floor_db(signal, sample_rate) + 3.0))
    return apply_filter(
        signal,
        sample_rate,
        f"highpass=f={highpass},afftdn=nr={reduction}:nf={floor:.1f}",
        should_stop=should_stop,
    )


def _compressor(
    threshold_db: float, ratio: float, attack_ms: float, release_ms: float, makeup_db: float, knee_db: float
) -> str:
    # acompressor takes linear threshold/makeup/knee; dB here keeps the presets readable.
    return (
        f"acompressor=threshold={db_to_gain(threshold_db):.6f}:ratio={ratio}:attack={attack_ms}"
        f":release={release_ms}:makeup={db_to_gain(makeup_db):.4f}:knee={db_to_gain(knee_db):.4f}"
    )


COMPRESS_FILTERS: dict[str, str] = {
    "gentle": _compressor(-18, 2.0, 20, 250, 2, 6),
    "voice": _compressor(-24, 3.0, 5, 120, 5, 4),
    "broadcast": _compressor(-28, 4.0, 3, 80, 8, 3) + ":detection=rms",
}
EQ_FILTERS: dict[str, str] = {
    # Rumble out, boxiness down, presence up: intelligibility of dialogue.
    "voice": "highpass=f=80,equalizer=f=250:t=q:w=1:g=-2,equalizer=f=3500:t=q:w=1:g=3",
    "warm": "highpass=f=30,bass=g=3:f=200,treble=g=-2:f=6000",
    "bright": "highpass=f=60,treble=g=4:f=5000,equalizer=f=10000:t=q:w=1:g=2",
    "bass_boost": "bass=g=6:f=100",
    # The 300-3400 Hz band of a phone line plus its mid-range honk.
    "telephone": "highpass=f=300,highpass=f=300,lowpass=f=3400,lowpass=f=3400,equalizer=f=1500:t=q:w=1:g=4",
}


def trim_silence(signal: Signal, sample_rate: int, threshold_db: float, *, margin_s: float = 0.05) -> Signal:
    """Cut leading/trailing audio quieter than `threshold_db` (dBFS, 10 ms windows), keeping a margin."""
    mono = np.max(np.abs(signal), axis=1)
    window = max(1, sample_rate // 100)
    count = len(mono) // window
    if count == 0:
        return signal
    peaks = mono[: count * window].reshape(count, window).max(axis=1)
    loud = np.flatnonzero(peaks > db_to_gain(threshold_db))
    if loud.size == 0:
        return signal[:0]
    margin = int(margin_s * sample_rate)
    start = max(0, int(loud[0]) * window - margin)
    end = min(len(signal), (int(loud[-1]) + 1) * window + margin)
    return signal[start:end]


def protect_clipping(signal: Signal) -> Signal:
    """Scale a mix whose samples exceed full scale back under it (summed tracks can); otherwise unchanged."""
    peak = float(np.max(np.abs(signal))) if signal.size else 0.0
    if peak <= 1.0:
        return signal
    return (signal * (0.98 / peak)).astype(np.float32)


def as_signal(values: Any) -> Signal:
    """A (frames, channels) float32 array from a list/1-D/2-D array."""
    array = np.asarray(values, dtype=np.float32)
    return array.reshape(-1, 1) if array.ndim == 1 else array
