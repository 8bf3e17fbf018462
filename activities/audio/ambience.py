"""Procedural ambience beds (rain, crowd, wind, room) made with numpy/scipy: no sample library to download.

Each bed is shaped noise built to sound like its source: rain is broadband hiss plus random droplet
transients; crowd is a babble of syllable-rate modulated, formant-filtered noise voices; wind is low noise
whose level and colour drift in gusts with a moving whistle; room is a dull pink floor with mains hum.
Beds are generated with a seeded generator, so the same task renders the same bed.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from activities.audio.dsp import active_rms_db, db_to_gain, rms_db
from activities.audio.files import Signal

AMBIENCE_TYPES = ("rain", "crowd", "wind", "room")
# Bed level under the voice: -25 dB relative to the speech's RMS keeps dialogue clearly on top while the
# bed stays audible on laptop speakers.
AMBIENCE_LEVEL_DB = -25.0
# The bed starts a little before the first word and rings on after the last, as a scene would.
PRE_ROLL_S = 0.4
POST_ROLL_S = 0.6

F64 = npt.NDArray[np.float64]


def _pink(rng: np.random.Generator, n: int) -> F64:
    """1/f noise by spectral shaping of white noise."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(freqs), n)


def _band(x: F64, sample_rate: int, low: float | None, high: float | None, order: int = 4) -> F64:
    from scipy.signal import butter, sosfilt

    nyquist = sample_rate / 2
    if high is not None and high >= nyquist * 0.95:
        high = None
    if low is not None and high is not None:
        sos = butter(order, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    elif low is not None:
        sos = butter(order, low, btype="highpass", fs=sample_rate, output="sos")
    elif high is not None:
        sos = butter(order, high, btype="lowpass", fs=sample_rate, output="sos")
    else:
        return x
    return np.asarray(sosfilt(sos, x), dtype=np.float64)


def _smooth_random(rng: np.random.Generator, n: int, sample_rate: int, rate_hz: float) -> F64:
    """A random control curve in [0, 1] changing at about `rate_hz` (cosine-interpolated knots)."""
    knots = max(2, int(n / sample_rate * rate_hz) + 2)
    values = rng.random(knots)
    positions = np.linspace(0, knots - 1, n)
    index = np.floor(positions).astype(int).clip(0, knots - 2)
    frac = positions - index
    weight = (1 - np.cos(frac * math.pi)) / 2
    return np.asarray(values[index] * (1 - weight) + values[index + 1] * weight, dtype=np.float64)


def _rain(rng: np.random.Generator, n: int, sr: int) -> F64:
    hiss = (
        _band(rng.standard_normal(n), sr, 500, 9000, order=2) * 0.5 + _band(_pink(rng, n), sr, 80, 1500) * 0.3
    )
    # Droplets: ~60/s short decaying noise bursts of random size, each coloured by its own band.
    drops = np.zeros(n)
    count = int(n / sr * 60)
    length = int(0.012 * sr)
    envelope = np.exp(-np.linspace(0, 8, length))
    for start in rng.integers(0, max(1, n - length), count):
        burst = rng.standard_normal(length) * envelope * rng.uniform(0.2, 1.0) ** 2
        drops[start : start + length] += burst
    drops = _band(drops, sr, 1500, 8000, order=2)
    return hiss + drops * 1.5


def _crowd(rng: np.random.Generator, n: int, sr: int) -> F64:
    babble = np.zeros(n)
    for _ in range(14):
        voice = _band(rng.standard_normal(n), sr, rng.uniform(200, 500), rng.uniform(1800, 3200), order=2)
        # Syllables at 3-6 Hz with pauses between phrases: what makes noise read as voices.
        syllables = np.maximum(
            0.0, np.sin(2 * math.pi * rng.uniform(3, 6) * np.arange(n) / sr + rng.uniform(0, 6))
        )
        phrases = (_smooth_random(rng, n, sr, 0.6) > 0.35).astype(np.float64)
        babble += voice * syllables * _band(phrases, sr, None, 8.0, order=1) * rng.uniform(0.4, 1.0)
    return babble + _band(_pink(rng, n), sr, 100, 800) * 0.2


def _wind(rng: np.random.Generator, n: int, sr: int) -> F64:
    base = np.cumsum(rng.standard_normal(n))  # brown noise: the low roar
    base = _band(base - np.mean(base), sr, 20, 600, order=2)
    base /= np.max(np.abs(base)) + 1e-9
    gusts = 0.3 + 0.7 * _smooth_random(rng, n, sr, 0.35)
    # A whistle band whose centre drifts with the gusts, made by crossfading three fixed bands.
    whistle = np.zeros(n)
    drift = _smooth_random(rng, n, sr, 0.2)
    for centre, weight in ((500.0, 1 - drift), (900.0, 1 - np.abs(drift - 0.5) * 2), (1400.0, drift)):
        whistle += _band(rng.standard_normal(n), sr, centre * 0.9, centre * 1.1, order=2) * weight
    return (base + whistle * 0.15) * gusts


def _room(rng: np.random.Generator, n: int, sr: int) -> F64:
    t = np.arange(n) / sr
    floor = _band(_pink(rng, n), sr, 30, 1500)
    floor /= np.max(np.abs(floor)) + 1e-9
    hum = sum(math.pow(0.5, k) * np.sin(2 * math.pi * 50 * (k + 1) * t) for k in range(3))
    return floor + 0.05 * np.asarray(hum, dtype=np.float64)


_GENERATORS = {"rain": _rain, "crowd": _crowd, "wind": _wind, "room": _room}


def generate_ambience(kind: str, frames: int, sample_rate: int, *, seed: int = 0) -> Signal:
    """`frames` of a mono ambience bed, peak-normalised; `kind` is one of AMBIENCE_TYPES."""
    rng = np.random.default_rng(seed)
    raw = _GENERATORS[kind](rng, frames, sample_rate)
    raw -= np.mean(raw)
    peak = float(np.max(np.abs(raw))) if raw.size else 0.0
    bed = raw / peak if peak > 0 else raw
    return bed.astype(np.float32).reshape(-1, 1)


def mix_ambience(
    voice: Signal, sample_rate: int, kind: str, *, seed: int = 0, level_db: float = AMBIENCE_LEVEL_DB
) -> Signal:
    """`voice` with a `kind` bed under it at `level_db` relative to the speech RMS, with pre/post roll."""
    pre, post = int(PRE_ROLL_S * sample_rate), int(POST_ROLL_S * sample_rate)
    total = pre + len(voice) + post
    bed = generate_ambience(kind, total, sample_rate, seed=seed)
    speech_db = active_rms_db(voice, sample_rate)
    if not math.isfinite(speech_db):
        speech_db = -30.0  # a silent voice still gets an audible bed
    bed *= db_to_gain(speech_db + level_db - rms_db(bed))
    # Fade the bed in and out so the file does not start or stop on a wall of noise.
    ramp_in, ramp_out = max(1, pre), max(1, post)
    bed[:ramp_in, 0] *= np.linspace(0, 1, ramp_in, dtype=np.float32)
    bed[total - ramp_out :, 0] *= np.linspace(1, 0, ramp_out, dtype=np.float32)
    out = bed.repeat(voice.shape[1], axis=1)
    out[pre : pre + len(voice)] += voice
    return out.astype(np.float32)
