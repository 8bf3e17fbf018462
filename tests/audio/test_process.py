"""process_audio end to end: real input files over HTTP, decoded and measured output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import pytest
from temporalio.exceptions import ApplicationError

from activities.audio import dsp
from activities.audio import files as audio_io
from activities.audio.activities import AudioActivities
from tests.support.attempts import TaskActivityEnvironment
from tests.support.audio import (
    audio_settings,
    band_envelope_db,
    frame_rms_db,
    run_activity,
    serve_audio,
    task_input,
    tone,
)
from tests.support.file_server import StaticFileServer
from tests.support.worker_resources import opened


def noise(seconds: float, rate: int, level_db: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * rate)) * dsp.db_to_gain(level_db)).astype(np.float32)


def first_loud(envelope: np.ndarray, frame_s: float, threshold_db: float) -> float:
    return float(np.flatnonzero(envelope > threshold_db)[0]) * frame_s


async def test_mix_places_tracks_at_offsets_across_rates_and_channels(
    espeak_acts: AudioActivities, file_server: StaticFileServer, tmp_path: Path
) -> None:
    # A mono 22.05 kHz mp3 at 0 s and a stereo 48 kHz flac at 2 s, mixed to 44.1 kHz wav.
    low = serve_audio(file_server, tone(500, 1.0, 22050), 22050, "mp3", tmp_path)
    stereo = np.stack([tone(3000, 1.0, 48000), tone(3000, 1.0, 48000)], axis=1)
    high = serve_audio(file_server, stereo, 48000, "flac", tmp_path)
    run = await run_activity(
        espeak_acts,
        "process_audio",
        {
            "tracks": [{"url": low}, {"url": high, "offset_s": 2.0, "gain_db": -6}],
            "output_format": "wav",
            "sample_rate": 44100,
        },
    )
    meta = run.result["metadata"]
    assert run.rate == meta["sample_rate"] == 44100 and run.audio.shape[1] == meta["channels"] == 2
    assert abs(meta["duration"] - 3.0) < 0.06
    frame = 0.01
    env_low = band_envelope_db(run.audio, run.rate, 350, 700, frame)
    env_high = band_envelope_db(run.audio, run.rate, 2500, 3500, frame)
    assert first_loud(env_high, frame, -30) == pytest.approx(2.0, abs=0.03)
    assert first_loud(env_low, frame, -30) < 0.03
    assert env_low[int(1.2 / frame) : int(1.9 / frame)].max() < -60  # silence between the two
    # -6 dB gain on the second track: ~6 dB under the first (same source level).
    level_low = np.median(env_low[10:90])
    level_high = np.median(env_high[210:290])
    assert level_low - level_high == pytest.approx(6, abs=1.0)


@pytest.mark.parametrize("target", [-16.0, -23.0])
async def test_normalize_reaches_target_loudness(
    espeak_acts: AudioActivities, file_server: StaticFileServer, tmp_path: Path, target: float
) -> None:
    quiet = noise(4.0, 44100, -40) + tone(220, 4.0, 44100, 0.01)
    url = serve_audio(file_server, quiet, 44100, "ogg", tmp_path)
    run = await run_activity(
        espeak_acts,
        "process_audio",
        {
            "tracks": [{"url": url}],
            "operations": [{"type": "normalize", "target_lufs": target}],
            "output_format": "mp3",
            "sample_rate": 48000,
        },
    )
    measured = pyloudnorm.Meter(run.rate).integrated_loudness(run.audio.astype(np.float64))
    assert measured == pytest.approx(target, abs=1.0)
    meta = run.result["metadata"]
    assert meta["integrated_loudness_lufs"] == pytest.approx(measured, abs=0.1)
    assert meta["true_peak_dbtp"] <= 0.0
    assert meta["format"] == "mp3" and run.rate == 48000


async def test_normalize_limits_true_peak(
    espeak_acts: AudioActivities, file_server: StaticFileServer, tmp_path: Path
) -> None:
    # Sparse loud clicks on a quiet bed: reaching -10 LUFS needs far more gain than the peaks allow.
    signal = noise(3.0, 44100, -45)
    signal[::11025] = 0.9
    url = serve_audio(file_server, signal, 44100, "wav", tmp_path)
    run = await run_activity(
        espeak_acts,
        "process_audio",
        {"tracks": [{"url": url}], "operations": ["normalize"], "output_format": "flac"},
    )
    assert run.result["metadata"]["true_peak_dbtp"] <= -0.9
    assert run.result["metadata"]["integrated_loudness_lufs"] == pytest.approx(-16, abs=1.0)


async def test_trim_fade_and_trim_silence(
    espeak_acts: AudioActivities, file_server: StaticFileServer, tmp_path: Path
) -> None:
    padded = np.concatenate([np.zeros(22050), tone(440, 2.0, 22050), np.zeros(22050)]).astype(np.float32)
    url = serve_audio(file_server, padded, 22050, "wav", tmp_path)
    base = {"output_format": "wav", "sample_rate": 22050}
    # Source: 1 s silence, 2 s tone, 1 s silence. Trim to 0.5-3.5 s, then cut the silence.
    run = await run_activity(
        espeak_acts,
        "process_audio",
        {
            "tracks": [{"url": url, "trim": {"start_s": 0.5, "end_s": 3.5}}],
            "operations": [{"type": "trim_silence", "threshold_db": -40}],
            **base,
        },
    )
    assert run.result["metadata"]["duration"] == pytest.approx(2.1, abs=0.03)  # tone + 2 x 50 ms margins
    # Trim to the tone, with a 1 s fade-in and a 0.5 s fade-out.
    run = await run_activity(
        espeak_acts,
        "process_audio",
        {
            "tracks": [
                {"url": url, "trim": {"start_s": 1.0, "end_s": 3.0}, "fade_in_s": 1.0, "fade_out_s": 0.5}
            ],
            **base,
        },
    )
    assert run.result["metadata"]["duration"] == pytest.approx(2.0, abs=0.01)
    levels = frame_rms_db(run.audio, 22050, 0.05)
    assert levels[1] < levels[25] - 12  # 50-100 ms into the fade-in vs full level at 1.25 s
    assert levels[-1] < levels[25] - 12


async def test_denoise_lowers_the_noise_floor(
    espeak_acts: AudioActivities, file_server: StaticFileServer, tmp_path: Path
) -> None:
    rate = 44100
    hiss = noise(4.0, rate, -45)
    hiss[: 2 * rate] += tone(440, 2.0, rate, 0.3)  # signal then noise only
    url = serve_audio(file_server, hiss, rate, "wav", tmp_path)
    dry = await run_activity(espeak_acts, "process_audio", {"tracks": [{"url": url}], "output_format": "wav"})
    wet = await run_activity(
        espeak_acts,
        "process_audio",
        {
            "tracks": [{"url": url}],
            "operations": [{"type": "denoise", "strength": "strong"}],
            "output_format": "wav",
        },
    )
    tail = slice(int(2.5 * rate), int(3.8 * rate))
    assert dsp.rms_db(wet.audio[tail]) < dsp.rms_db(dry.audio[tail]) - 8
    head = slice(int(0.2 * rate), int(1.8 * rate))
    assert abs(dsp.rms_db(wet.audio[head]) - dsp.rms_db(dry.audio[head])) < 2


async def test_compress_and_eq_presets(
    espeak_acts: AudioActivities, file_server: StaticFileServer, tmp_path: Path
) -> None:
    rate = 44100
    loud_quiet = np.concatenate([tone(1000, 1.0, rate, 0.7), tone(1000, 1.0, rate, 0.05)])
    url = serve_audio(file_server, loud_quiet, rate, "wav", tmp_path)
    run = await run_activity(
        espeak_acts,
        "process_audio",
        {
            "tracks": [{"url": url}],
            "operations": [{"type": "compress", "preset": "broadcast"}],
            "output_format": "wav",
        },
    )
    before = dsp.rms_db(audio_io.as_signal(loud_quiet[:rate])) - dsp.rms_db(
        audio_io.as_signal(loud_quiet[rate:])
    )
    after = dsp.rms_db(run.audio[int(0.5 * rate) : rate]) - dsp.rms_db(run.audio[int(1.5 * rate) :])
    assert after < before - 6, (before, after)

    bass_and_mid = tone(100, 2.0, rate, 0.3) + tone(1000, 2.0, rate, 0.3)
    url = serve_audio(file_server, bass_and_mid, rate, "wav", tmp_path)
    run = await run_activity(
        espeak_acts,
        "process_audio",
        {
            "tracks": [{"url": url}],
            "operations": [{"type": "eq", "preset": "telephone"}],
            "output_format": "wav",
        },
    )
    bass = np.median(band_envelope_db(run.audio, rate, 70, 140, 0.05)[5:-5])
    mid = np.median(band_envelope_db(run.audio, rate, 800, 1200, 0.05)[5:-5])
    assert mid - bass > 20


@pytest.mark.parametrize(("fmt", "rate"), [("mp3", 32000), ("ogg", 22050), ("flac", 48000), ("wav", 8000)])
async def test_output_formats(
    espeak_acts: AudioActivities, file_server: StaticFileServer, tmp_path: Path, fmt: str, rate: int
) -> None:
    url = serve_audio(file_server, tone(300, 1.5, 44100), 44100, "wav", tmp_path)
    run = await run_activity(
        espeak_acts, "process_audio", {"tracks": [{"url": url}], "output_format": fmt, "sample_rate": rate}
    )
    meta = run.result["metadata"]
    assert run.path.suffix == f".{fmt}" and meta["format"] == fmt and run.rate == meta["sample_rate"] == rate
    assert meta["duration"] == pytest.approx(1.5, abs=0.06)
    assert meta["file_size"] == run.path.stat().st_size
    assert meta["integrated_loudness_lufs"] is not None and meta["true_peak_dbtp"] is not None


@pytest.mark.parametrize(
    "make_url",
    [
        lambda fs: fs.add(b"this is not audio at all" * 100, "application/octet-stream", name="x.bin"),
        lambda fs: fs.base_url + "/missing.wav",
        lambda fs: fs.add(b"<html></html>", "text/html", name="page.html"),
    ],
)
async def test_bad_tracks_are_invalid_input(
    espeak_acts: AudioActivities, file_server: StaticFileServer, make_url: Any
) -> None:
    with pytest.raises(ApplicationError) as info:
        await TaskActivityEnvironment().run(
            espeak_acts.process_audio,
            task_input("process_audio", {"tracks": [{"url": make_url(file_server)}], "output_format": "wav"}),
        )
    assert info.value.type == "InvalidInput" and info.value.non_retryable


async def test_bad_trim_and_bad_task_data(
    espeak_acts: AudioActivities, file_server: StaticFileServer, tmp_path: Path
) -> None:
    url = serve_audio(file_server, tone(300, 1.0, 22050), 22050, "wav", tmp_path)
    cases: list[dict[str, Any]] = [
        {"tracks": [{"url": url, "trim": {"start_s": 2.0, "end_s": 1.0}}]},
        {"tracks": [{"url": url}], "operations": ["reverse"]},
        {"tracks": []},
    ]
    for data in cases:
        with pytest.raises(ApplicationError) as info:
            await TaskActivityEnvironment().run(espeak_acts.process_audio, task_input("process_audio", data))
        assert info.value.type == "InvalidInput" and info.value.non_retryable


async def test_audio_inputs_and_the_mix_are_bounded(file_server: StaticFileServer, tmp_path: Path) -> None:
    """MAX_AUDIO_INPUT_S stops decoding a longer track; MAX_AUDIO_MIX_S refuses a mix that would end later."""
    settings = audio_settings(tmp_path / "data").model_copy(
        update={"max_audio_input_s": 2.0, "max_audio_mix_s": 5.0}
    )
    exact = serve_audio(file_server, tone(400, 2.0, 22050), 22050, "wav", tmp_path)
    longer = serve_audio(file_server, tone(400, 3.0, 22050), 22050, "flac", tmp_path)
    async with opened(AudioActivities, settings) as acts:
        fits = {"tracks": [{"url": exact}, {"url": exact, "offset_s": 3.0}], "output_format": "wav"}
        result = await TaskActivityEnvironment().run(acts.process_audio, task_input("process_audio", fits))
        assert result["metadata"]["duration"] == pytest.approx(5.0, abs=0.01)
        cases = [
            ({"tracks": [{"url": longer}]}, "track 1 (", "is longer than 2 s, above MAX_AUDIO_INPUT_S"),
            (
                {"tracks": [{"url": exact}, {"url": exact, "offset_s": 3.5}]},
                "track 2 ends at 5.50 s",
                "above MAX_AUDIO_MIX_S = 5 s",
            ),
        ]
        for data, where, why in cases:
            with pytest.raises(ApplicationError) as info:
                await TaskActivityEnvironment().run(acts.process_audio, task_input("process_audio", data))
            assert info.value.type == "InvalidInput" and info.value.non_retryable
            assert where in info.value.message and why in info.value.message


def test_decoding_stops_at_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "ten.wav"
    audio_io.encode(audio_io.as_signal(tone(300, 10.0, 8000)), 8000, "wav", path)
    assert len(audio_io.decode_file(path, 8000, 1, max_seconds=10.0)) == 80_000
    with pytest.raises(audio_io.AudioTooLong):
        audio_io.decode_file(path, 8000, 1, max_seconds=9.9)
