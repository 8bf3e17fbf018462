"""Voice and mixing end to end: API → Temporal → cpu_intensive worker → audio files served by the API."""

from __future__ import annotations

import io
import json
import math
from urllib.parse import urlsplit

import httpx
import numpy as np
import pyloudnorm
import soundfile

from tests.support.file_server import StaticFileServer
from tests.support.stack import Stack
from tests.support.tasks import submit, wait_status


def _wav(seconds: float, freq: float, rate: int = 22050, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, (level * np.sin(2 * math.pi * freq * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def _decode(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    return samples, rate


async def test_character_voice_espeak_mp3_with_rain(
    api: httpx.AsyncClient, file_server: StaticFileServer
) -> None:
    profile = file_server.put(
        "/voices/detective.json",
        json.dumps({"engine": "espeak-ng", "voice": "en-gb", "pitch": -2, "rate": 0.95}).encode(),
        "application/json",
    )
    task_id = await submit(
        api,
        "generate_character_voice",
        {
            "text": "I've been expecting you, detective. Sit down.",
            "character_voice_profile": profile,
            "emotion": "mysterious",
            "pace": "slow",
            "background_noise": "rain_ambience",
            "output_format": "mp3",
            "sample_rate": 44100,
        },
    )
    status = await wait_status(api, task_id, "completed", timeout=120)
    meta = status["result"]["metadata"]
    assert meta["engine"] == "espeak-ng" and meta["format"] == "mp3" and meta["sample_rate"] == 44100
    assert 1.5 < meta["duration"] < 15
    media = await api.get(status["result"]["media_url"])
    assert media.status_code == 200 and len(media.content) == meta["file_size"]
    assert urlsplit(status["result"]["media_url"]).path.endswith(".mp3")


async def test_character_voice_through_the_coqui_model(api: httpx.AsyncClient, stack: Stack) -> None:
    task_id = await submit(
        api,
        "generate_character_voice",
        {"text": "Hello there.", "output_format": "wav", "sample_rate": 22050},
    )
    status = await wait_status(api, task_id, "completed", timeout=120)
    meta = status["result"]["metadata"]
    assert meta["engine"] == "coqui" and meta["model"] == stack.env["TTS_MODEL"]
    samples, rate = _decode((await api.get(status["result"]["media_url"])).content)
    assert rate == 22050 and len(samples) > 0


async def test_mix_two_tracks_to_minus_16_lufs(api: httpx.AsyncClient, file_server: StaticFileServer) -> None:
    a = file_server.put("/a.wav", _wav(3.0, 220), "audio/wav")
    b = file_server.put("/b.wav", _wav(1.0, 880, rate=44100, level=0.1), "audio/wav")
    task_id = await submit(
        api,
        "process_audio",
        {
            "tracks": [{"url": a}, {"url": b, "offset_s": 1.5, "gain_db": -3}],
            "operations": [{"type": "normalize", "target_lufs": -16}],
            "output_format": "wav",
            "sample_rate": 44100,
        },
    )
    status = await wait_status(api, task_id, "completed", timeout=120)
    meta = status["result"]["metadata"]
    samples, rate = _decode((await api.get(status["result"]["media_url"])).content)
    assert rate == 44100
    assert abs(len(samples) / rate - 3.0) < 0.05
    loudness = pyloudnorm.Meter(rate).integrated_loudness(samples)
    assert abs(loudness + 16) <= 1.0, loudness
    assert abs(meta["integrated_loudness_lufs"] + 16) <= 1.0
    assert meta["true_peak_dbtp"] <= -0.9


async def test_undecodable_track_fails_without_retry(
    api: httpx.AsyncClient, file_server: StaticFileServer
) -> None:
    bad = file_server.put("/broken.wav", b"this is not audio", "audio/wav")
    task_id = await submit(api, "process_audio", {"tracks": [{"url": bad}], "output_format": "wav"})
    status = await wait_status(api, task_id, "failed", timeout=60)
    assert status["error"].startswith("InvalidInput:")
    assert status["attempt"] == 1
