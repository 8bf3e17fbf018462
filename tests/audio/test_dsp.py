"""The DSP layer on its own: ffmpeg piping and stopping, loudness/true peak, ambience character."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from activities.audio import dsp
from activities.audio import files as audio_io
from activities.audio.ambience import AMBIENCE_TYPES, generate_ambience
from activities.runtime import TaskInterrupted
from tests.support.audio import tone


def test_large_signal_round_trips_through_ffmpeg() -> None:
    # 30 s of 48 kHz stereo is 11 MB each way: far past the pipe buffers.
    rng = np.random.default_rng(0)
    signal = (rng.standard_normal((30 * 48000, 2)) * 0.1).astype(np.float32)
    out = audio_io.apply_filter(signal, 48000, "anull")
    assert out.shape == signal.shape and np.array_equal(out, signal)


def test_ffmpeg_run_stops_when_asked() -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    start = time.monotonic()
    with pytest.raises(TaskInterrupted):
        # -re paces the 60 s source in real time: it would run for a minute.
        audio_io.run_ffmpeg(
            ["-re", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "60", "-f", "null", "-"],
            should_stop=stop.is_set,
        )
    assert time.monotonic() - start < 2


def test_loudness_and_true_peak_of_a_reference_tone() -> None:
    # A full-scale-minus-6 dB 1 kHz sine: BS.1770 gives about -9 LUFS (mono) and a -6 dBTP peak.
    signal = audio_io.as_signal(tone(997, 3.0, 48000, amplitude=0.5))
    assert dsp.integrated_loudness(signal, 48000) == pytest.approx(-9.0, abs=0.3)
    assert dsp.true_peak_dbtp(signal) == pytest.approx(-6.02, abs=0.1)
    assert dsp.integrated_loudness(signal[:1000], 48000) is None  # under one 400 ms gating block


def test_true_peak_sees_inter_sample_overs() -> None:
    # fs/4 sine at 45 degrees phase: samples sit at 0.707 of the true crest.
    n = np.arange(4800)
    signal = audio_io.as_signal((np.sin(np.pi / 2 * n + np.pi / 4)).astype(np.float32))
    sample_peak = 20 * np.log10(np.max(np.abs(signal)))
    true_peak = dsp.true_peak_dbtp(signal)
    assert true_peak is not None and true_peak > sample_peak + 2.5


def _band_share(signal: np.ndarray, rate: int, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(signal[:, 0].astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(signal), 1 / rate)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum())


def test_ambience_beds_have_their_own_character() -> None:
    rate = 22050
    beds = {kind: generate_ambience(kind, 3 * rate, rate, seed=7) for kind in AMBIENCE_TYPES}
    for bed in beds.values():
        assert np.all(np.isfinite(bed)) and 0.5 < np.max(np.abs(bed)) <= 1.0
    assert _band_share(beds["wind"], rate, 0, 1000) > 0.8  # a low roar
    assert _band_share(beds["rain"], rate, 1000, 11025) > 0.5  # hiss and droplets
    assert _band_share(beds["crowd"], rate, 200, 3500) > 0.8  # the voice band
    assert _band_share(beds["room"], rate, 0, 1500) > 0.8  # a dull floor
    # Same seed, same bed: a retried task renders identical audio.
    assert np.array_equal(beds["rain"], generate_ambience("rain", 3 * rate, rate, seed=7))
