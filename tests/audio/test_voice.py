"""generate_character_voice end to end through ActivityEnvironment, asserting on the audio itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from temporalio.exceptions import ApplicationError

from activities.audio import dsp
from activities.audio.activities import AudioActivities
from tests.support.attempts import TaskActivityEnvironment, heartbeat_fields
from tests.support.audio import frame_rms_db, median_f0, run_activity, serve_audio, task_input, tone
from tests.support.file_server import StaticFileServer

LINE = "I've been expecting you, detective. The rain hasn't stopped for three days."


def voice_data(**overrides: Any) -> dict[str, Any]:
    return {"text": LINE, "output_format": "wav", "sample_rate": 22050, **overrides}


def plausible_duration(text: str, duration: float, *, slack: float = 2.5) -> None:
    # Conversational English runs at ~12-18 characters a second.
    expected = len(text) / 15
    assert expected / slack < duration < expected * slack, (duration, expected)


async def test_espeak_end_to_end(espeak_acts: AudioActivities) -> None:
    run = await run_activity(espeak_acts, "generate_character_voice", voice_data())
    meta = run.result["metadata"]
    assert (
        urlsplit(run.result["media_url"]).path.endswith(".wav")
        and "/proj-audio/generate_character_voice/" in run.result["media_url"]
    )
    assert run.result["payload_media_id"] is None  # Payload is not configured here
    assert (meta["engine"], meta["model"], meta["format"]) == ("espeak-ng", "espeak-ng", "wav")
    assert run.rate == meta["sample_rate"] == 22050 and run.audio.shape[1] == meta["channels"] == 1
    assert meta["file_size"] == run.path.stat().st_size
    assert abs(meta["duration"] - len(run.audio) / run.rate) < 0.01
    plausible_duration(LINE, meta["duration"])
    # Speech, not silence: loud frames and quiet gaps.
    levels = frame_rms_db(run.audio, run.rate)
    assert levels.max() > -30 and np.percentile(levels, 5) < levels.max() - 30
    # Heartbeats sample the progress every 0.5 s, so a quick task shows a subset of its steps, in order.
    assert_ordered_subset(
        run.steps,
        [
            "starting",
            "loading voice profile",
            "loading engine",
            "synthesizing 1/2",
            "synthesizing 2/2",
            "mixing",
            "encoding",
            "uploading",
            "done",
        ],
    )
    assert run.steps[-1] == "done" and run.heartbeats[-1]["progress"] == 1.0


def assert_ordered_subset(seen: list[str], expected: list[str]) -> None:
    positions = [expected.index(step) for step in seen]
    assert positions == sorted(positions), seen


@pytest.mark.parametrize(("fmt", "rate"), [("mp3", 44100), ("ogg", 48000), ("flac", 16000)])
async def test_output_formats_and_rates(espeak_acts: AudioActivities, fmt: str, rate: int) -> None:
    run = await run_activity(
        espeak_acts,
        "generate_character_voice",
        voice_data(text="Hello there.", output_format=fmt, sample_rate=rate),
    )
    assert run.path.suffix == f".{fmt}"
    assert run.rate == rate == run.result["metadata"]["sample_rate"]
    assert run.result["metadata"]["format"] == fmt
    assert 0.4 < run.result["metadata"]["duration"] < 3


async def test_pace_changes_duration(espeak_acts: AudioActivities) -> None:
    durations = {}
    for pace in ("slow", "normal", "fast"):
        run = await run_activity(espeak_acts, "generate_character_voice", voice_data(pace=pace))
        durations[pace] = run.result["metadata"]["duration"]
    assert durations["slow"] > durations["normal"] * 1.15 > durations["fast"] * 1.3, durations


async def test_emotion_changes_energy_and_pitch(espeak_acts: AudioActivities) -> None:
    runs = {
        e: await run_activity(espeak_acts, "generate_character_voice", voice_data(emotion=e))
        for e in ("angry", "whisper", "excited", "sad")
    }
    angry = dsp.active_rms_db(runs["angry"].audio, 22050)
    whisper = dsp.active_rms_db(runs["whisper"].audio, 22050)
    assert angry - whisper > 10, (angry, whisper)
    # Excited speaks higher than sad: espeak's pitch parameter moves the fundamental.
    assert median_f0(runs["excited"].audio, 22050) > median_f0(runs["sad"].audio, 22050) * 1.15


@pytest.mark.parametrize("ambience", ["rain", "crowd", "wind", "room"])
async def test_ambience_raises_noise_floor(espeak_acts: AudioActivities, ambience: str) -> None:
    dry = await run_activity(espeak_acts, "generate_character_voice", voice_data())
    wet = await run_activity(
        espeak_acts, "generate_character_voice", voice_data(background_noise=f"{ambience}_ambience")
    )
    floor_dry = np.percentile(frame_rms_db(dry.audio, 22050), 10)
    floor_wet = np.percentile(frame_rms_db(wet.audio, 22050), 10)
    assert floor_wet > floor_dry + 20, (floor_dry, floor_wet)
    # The bed sits well under the voice: its level in the pre-roll (before the first word) is about -25 dB
    # relative to the speech.
    bed = dsp.rms_db(wet.audio[int(0.15 * 22050) : int(0.35 * 22050)])
    speech = dsp.active_rms_db(dry.audio, 22050)
    assert -35 < bed - speech < -15, (bed, speech)
    assert wet.result["metadata"]["background_noise"] == ambience
    assert wet.result["metadata"]["duration"] > dry.result["metadata"]["duration"] + 0.8  # pre/post roll


async def test_voice_profile_is_applied(espeak_acts: AudioActivities, file_server: StaticFileServer) -> None:
    base = await run_activity(espeak_acts, "generate_character_voice", voice_data())
    profile = file_server.add_json(
        {
            "name": "Detective Jones",
            "engine": "espeak-ng",
            "voice": "en-gb",
            "pitch": -6,
            "rate": 0.8,
            "gain": -6,
        }
    )
    run = await run_activity(
        espeak_acts, "generate_character_voice", voice_data(character_voice_profile=profile)
    )
    assert run.result["metadata"]["voice"] == "en-gb"
    assert run.result["metadata"]["duration"] > base.result["metadata"]["duration"] * 1.1
    assert median_f0(run.audio, 22050) < median_f0(base.audio, 22050) * 0.9
    assert dsp.active_rms_db(run.audio, 22050) < dsp.active_rms_db(base.audio, 22050) - 4


@pytest.mark.parametrize(
    "document",
    [
        {"pitch": 40},  # out of range
        {"voice": "en-us", "pich": 2},  # misspelt key
        {"engine": "festival"},
        {"voice": "--help"},  # would be an option to espeak-ng
        {"voice": "xx-nonexistent"},  # no such espeak voice
        {"speaker_reference_url": "file:///etc/passwd"},
        [1, 2, 3],
    ],
)
async def test_bad_profile_is_invalid_input(
    espeak_acts: AudioActivities, file_server: StaticFileServer, document: Any
) -> None:
    url = file_server.add_json(document)
    with pytest.raises(ApplicationError) as info:
        await TaskActivityEnvironment().run(
            espeak_acts.generate_character_voice,
            task_input("generate_character_voice", voice_data(character_voice_profile=url)),
        )
    assert info.value.type == "InvalidInput" and info.value.non_retryable
    assert "profile" in str(info.value)


async def test_profile_not_json_or_missing(
    espeak_acts: AudioActivities, file_server: StaticFileServer
) -> None:
    for url in (
        file_server.add(b"{not json", "application/json"),
        file_server.base_url + "/missing/profile.json",
    ):
        with pytest.raises(ApplicationError) as info:
            await TaskActivityEnvironment().run(
                espeak_acts.generate_character_voice,
                task_input("generate_character_voice", voice_data(character_voice_profile=url)),
            )
        assert info.value.type == "InvalidInput" and info.value.non_retryable


async def test_invalid_task_data(espeak_acts: AudioActivities) -> None:
    with pytest.raises(ApplicationError) as info:
        await TaskActivityEnvironment().run(
            espeak_acts.generate_character_voice,
            task_input("generate_character_voice", voice_data(emotion="bored")),
        )
    assert info.value.type == "InvalidInput" and info.value.non_retryable


async def test_coqui_engine_without_model_is_configuration_error(
    espeak_acts: AudioActivities, file_server: StaticFileServer
) -> None:
    url = file_server.add_json({"engine": "coqui"})
    with pytest.raises(ApplicationError) as info:
        await TaskActivityEnvironment().run(
            espeak_acts.generate_character_voice,
            task_input("generate_character_voice", voice_data(character_voice_profile=url)),
        )
    assert info.value.type == "ConfigurationError" and info.value.non_retryable


# Long enough that synthesis spans several heartbeats (0.5 s apart) even on a quick, idle machine.
LONG_TEXT = " ".join(f"This is sentence number {i} of a speech." for i in range(1, 101))


async def test_long_text_is_synthesized_in_reported_steps(espeak_acts: AudioActivities) -> None:
    run = await run_activity(espeak_acts, "generate_character_voice", voice_data(text=LONG_TEXT))
    synth = [int(s.split()[1].split("/")[0]) for s in run.steps if s.startswith("synthesizing")]
    assert all(s.endswith("/100") for s in run.steps if s.startswith("synthesizing"))
    assert synth and synth == sorted(synth), run.steps
    progress = [h["progress"] for h in run.heartbeats]
    assert progress == sorted(progress) and progress[-1] == 1.0
    plausible_duration(LONG_TEXT, run.result["metadata"]["duration"])


async def test_cancel_stops_between_sentences(espeak_acts: AudioActivities) -> None:
    env = TaskActivityEnvironment()
    steps: list[str] = []
    cancelled_at: list[float] = []

    def on_heartbeat(*details: Any) -> None:
        steps.append(heartbeat_fields(details[0])["step"])
        if steps[-1].startswith("synthesizing") and not cancelled_at:
            cancelled_at.append(time.monotonic())
            env.cancel()

    env.on_heartbeat = on_heartbeat
    task = task_input("generate_character_voice", voice_data(text=LONG_TEXT))
    with pytest.raises(asyncio.CancelledError):
        await env.run(espeak_acts.generate_character_voice, task)
    # Stopped after the sentence in flight, not at the end of the text.
    assert time.monotonic() - cancelled_at[0] < 1.0
    assert "mixing" not in steps and "uploading" not in steps
    assert not list((espeak_acts._settings.data_dir / "media").rglob(f"{task.task_id}.*"))


async def test_coqui_end_to_end(coqui_acts: AudioActivities, tiny_models: dict[str, Path]) -> None:
    tiny_tts_model = tiny_models["tiny-vits"]
    run = await run_activity(
        coqui_acts, "generate_character_voice", voice_data(output_format="flac", sample_rate=24000)
    )
    meta = run.result["metadata"]
    assert meta["engine"] == "coqui" and meta["model"] == str(tiny_tts_model)
    assert run.rate == meta["sample_rate"] == 24000 and meta["format"] == "flac" and meta["channels"] == 1
    plausible_duration(LINE, meta["duration"])
    assert np.max(np.abs(run.audio)) > 0.05  # the random model's noise, but a real waveform
    assert coqui_acts.loaded_models() == [f"coqui:{tiny_tts_model}"]


async def test_coqui_pace_and_reuse(coqui_acts: AudioActivities) -> None:
    slow = await run_activity(coqui_acts, "generate_character_voice", voice_data(pace="slow"))
    engine = coqui_acts._engines.coqui()
    fast = await run_activity(coqui_acts, "generate_character_voice", voice_data(pace="fast"))
    assert coqui_acts._engines.coqui() is engine  # one model per worker, reused
    assert slow.result["metadata"]["duration"] > fast.result["metadata"]["duration"] * 1.3


async def test_coqui_worker_still_serves_espeak_profiles(
    coqui_acts: AudioActivities, file_server: StaticFileServer
) -> None:
    url = file_server.add_json({"engine": "espeak-ng", "voice": "en-us"})
    run = await run_activity(coqui_acts, "generate_character_voice", voice_data(character_voice_profile=url))
    assert run.result["metadata"]["engine"] == "espeak-ng"


async def test_coqui_profile_for_another_model(
    coqui_acts: AudioActivities, file_server: StaticFileServer
) -> None:
    url = file_server.add_json({"engine": "coqui", "model": "tts_models/en/ljspeech/vits"})
    with pytest.raises(ApplicationError) as info:
        await TaskActivityEnvironment().run(
            coqui_acts.generate_character_voice,
            task_input("generate_character_voice", voice_data(character_voice_profile=url)),
        )
    assert info.value.type == "InvalidInput"


async def test_coqui_speaker_reference_is_ignored_by_single_speaker_model(
    coqui_acts: AudioActivities, file_server: StaticFileServer, tmp_path: Path
) -> None:
    reference = serve_audio(file_server, tone(180, 1.0, 16000), 16000, "wav", tmp_path)
    url = file_server.add_json({"speaker_reference_url": reference, "language": "en"})
    run = await run_activity(coqui_acts, "generate_character_voice", voice_data(character_voice_profile=url))
    assert run.result["metadata"]["engine"] == "coqui"
