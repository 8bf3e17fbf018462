"""Audio DSP for the audio task types: levels, loudness, the true-peak limiter, mixing and the mix operations.

Loudness is ITU-R BS.1770 (pyloudnorm); true peak is the sample peak of a 4x oversampled signal. Filters
run through ffmpeg (`activities.audio.files`).
"""

from __future__ import annotations

import math

import numpy as np

from activities.audio.files import Signal, StopCheck, apply_filter

# pyloudnorm's gating blocks are 400 ms: shorter audio has no integrated loudness.
MIN_LOUDNESS_S = 0.4
TRUE_PEAK_CEILING_DBTP = -1.0


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
