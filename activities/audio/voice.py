"""generate_character_voice: a character's line, sentence by sentence through a speech engine, then shaped
by emotion, pace and the voice profile, levelled, laid over an ambience bed and encoded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from activities.audio import dsp
from activities.audio import files as audio_io
from activities.audio.ambience import mix_ambience
from activities.audio.files import AUDIO_TYPES, Signal, StopCheck
from activities.audio.output import audio_result, encode_output, publish_output
from activities.audio.prosody import EMOTIONS, PACES, Prosody, VoiceProfile, split_sentences
from activities.audio.tts import (
    CoquiEngine,
    EngineUnavailable,
    Speech,
    SpeechEngine,
    SpeechEngines,
    SpeechRequest,
    UnknownVoice,
)
from activities.io.fetch import InputFetcher
from activities.io.publish import MediaPublisher
from activities.runtime import TaskProgress, permanent_error
from taskservice.contracts import TaskActivityInput
from taskservice.netguard import redact_url
from taskservice.task_data import GenerateCharacterVoiceData

log = logging.getLogger("taskservice.audio")

PROFILE_TYPES = ("application/json", "text/plain", "application/octet-stream")
PROFILE_MAX_BYTES = 256 * 1024
# Dialogue is rendered at a fixed loudness before emotion/profile gain, so engines with different output
# levels (espeak-ng vs a neural model) sound alike; -20 LUFS leaves headroom for "angry" and the bed.
VOICE_BASE_LUFS = -20.0
# Pause between sentences at normal pace (scaled by the speaking rate).
SENTENCE_GAP_S = 0.3


def _seed(task_id: str) -> int:
    """A stable per-task seed: a retried task renders the same ambience."""
    return int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:4], "big")


class CharacterVoice:
    """The voice task on the worker's fetcher and publisher and this process's speech engines."""

    def __init__(
        self, fetcher: InputFetcher, publisher: MediaPublisher, engines: SpeechEngines, max_input_s: float
    ) -> None:
        self._fetcher = fetcher
        self._publisher = publisher
        self._engines = engines
        self._max_input_s = max_input_s  # MAX_AUDIO_INPUT_S: of the speaker reference

    async def run(
        self, task: TaskActivityInput, data: GenerateCharacterVoiceData, progress: TaskProgress
    ) -> dict[str, Any]:
        sentences = split_sentences(data.text)
        if not sentences:
            raise permanent_error("text contains nothing to speak", "InvalidInput")
        progress.report(0.02, "loading voice profile")
        profile = await self._load_profile(data.character_voice_profile)
        progress.raise_if_stopped()
        progress.report(0.04, "loading engine")
        engine = await self._engine_for(profile, progress)
        prosody = EMOTIONS[data.emotion].then(PACES[data.pace]).then(profile.prosody)
        with tempfile.TemporaryDirectory(prefix="voice-") as tmp_name:
            tmp = Path(tmp_name)
            speaker_wav = await self._speaker_reference(profile, engine, tmp, progress)
            pieces = await self._speak(engine, sentences, profile, prosody, speaker_wav, progress)
            progress.raise_if_stopped()
            progress.report(0.78, "mixing")
            signal = await progress.run_blocking(
                render_voice,
                pieces,
                prosody,
                data.sample_rate,
                data.background_noise,
                _seed(task.task_id),
                lambda: progress.should_stop,
            )
            progress.raise_if_stopped()
            progress.report(0.86, "encoding")
            out = tmp / f"voice.{data.output_format}"
            info = await encode_output(signal, data.sample_rate, data.output_format, out, progress)
            published = await publish_output(
                self._publisher, task, out, data.output_format, data.text[:200], progress
            )
        log.info(
            "Character voice generated",
            extra={
                "task_id": task.task_id,
                "project_id": task.project_id,
                "task_type": task.task_type,
                "engine": engine.name,
                "duration": info.duration,
                "sentences": len(sentences),
            },
        )
        return audio_result(
            published,
            info,
            data.output_format,
            engine=engine.name,
            model=engine.model,
            voice=profile.voice or profile.language,
            emotion=data.emotion,
            pace=data.pace,
            background_noise=data.background_noise,
            sentences=len(sentences),
        )

    async def _speak(
        self,
        engine: SpeechEngine,
        sentences: list[str],
        profile: VoiceProfile,
        prosody: Prosody,
        speaker_wav: Path | None,
        progress: TaskProgress,
    ) -> list[Speech]:
        """Each sentence through the engine, with a cancel check and a progress step between them."""
        pieces: list[Speech] = []
        for index, sentence in enumerate(sentences):
            progress.raise_if_stopped()
            progress.report(
                0.08 + 0.67 * index / len(sentences), f"synthesizing {index + 1}/{len(sentences)}"
            )
            request = SpeechRequest(sentence, profile.voice, profile.language, prosody, speaker_wav)
            pieces.append(await progress.run_blocking(engine.synthesize, request))
        if not any(len(piece.signal) for piece in pieces):
            # e.g. text only in characters a model's vocabulary lacks: retrying cannot help.
            raise permanent_error(f"{engine.name} produced no audio for this text", "InvalidInput")
        return pieces

    async def _load_profile(self, url: str | None) -> VoiceProfile:
        if url is None:
            return VoiceProfile()
        fetched = await self._fetcher.fetch(url, accept=PROFILE_TYPES, max_bytes=PROFILE_MAX_BYTES)
        try:
            return VoiceProfile.model_validate(json.loads(fetched.data))
        except (ValueError, ValidationError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise permanent_error(
                f"character_voice_profile {redact_url(url)} is not a valid voice profile: {err}",
                "InvalidInput",
            ) from None

    async def _engine_for(self, profile: VoiceProfile, progress: TaskProgress) -> SpeechEngine:
        """The engine the profile asks for, loaded (first use of Coqui loads the model) and checked."""
        configured = self._engines.coqui_configured
        use_coqui = profile.engine == "coqui" or (profile.engine == "auto" and configured is not None)
        if use_coqui and profile.model and profile.model != configured:
            raise permanent_error(
                f"voice profile wants model {profile.model!r}; "
                f"this service runs {configured or 'no Coqui model'}",
                "InvalidInput",
            )
        engine: SpeechEngine
        try:
            if use_coqui:
                coqui = await progress.run_blocking(self._engines.coqui)
                await progress.run_blocking(coqui.check, profile.voice, profile.language)
                engine = coqui
            else:
                espeak = await progress.run_blocking(self._engines.espeak)
                await progress.run_blocking(espeak.resolve_voice, profile.voice, profile.language)
                engine = espeak
        except EngineUnavailable as err:
            raise permanent_error(str(err), "ConfigurationError") from None
        except UnknownVoice as err:
            raise permanent_error(f"voice profile: {err}", "InvalidInput") from None
        return engine

    async def _speaker_reference(
        self, profile: VoiceProfile, engine: SpeechEngine, tmp: Path, progress: TaskProgress
    ) -> Path | None:
        """The profile's reference recording as a WAV file, when the engine can use one."""
        if profile.speaker_reference_url is None or not isinstance(engine, CoquiEngine):
            return None
        if not engine.clones_voices:
            log.info("Model does not clone voices; speaker reference ignored", extra={"model": engine.model})
            return None
        progress.report(0.06, "downloading speaker reference")
        fetched = await self._fetcher.fetch(profile.speaker_reference_url, accept=AUDIO_TYPES)
        raw = tmp / "reference.bin"
        await asyncio.to_thread(raw.write_bytes, fetched.data)
        wav = tmp / "reference.wav"
        try:
            signal = await progress.run_blocking(
                audio_io.decode_file,
                raw,
                engine.sample_rate,
                1,
                max_seconds=self._max_input_s,
                should_stop=lambda: progress.should_stop,
            )
        except audio_io.FFmpegError as err:
            raise permanent_error(f"speaker reference is not decodable audio: {err.stderr_tail}") from None
        except audio_io.AudioTooLong as err:
            raise permanent_error(f"speaker reference is {err}, above MAX_AUDIO_INPUT_S") from None
        await progress.run_blocking(audio_io.encode, signal, engine.sample_rate, "wav", wav)
        return wav


def render_voice(
    pieces: list[Speech], prosody: Prosody, sample_rate: int, ambience: str, seed: int, should_stop: StopCheck
) -> Signal:
    """Blocking: sentences joined with pauses, prosody the engine lacks, colour, level, ambience, limit."""
    source_rate = pieces[0].sample_rate
    gap = np.zeros((int(SENTENCE_GAP_S / prosody.rate * source_rate), 1), dtype=np.float32)
    joined: list[Signal] = []
    for index, piece in enumerate(pieces):
        if index:
            joined.append(gap)
        joined.append(audio_io.as_signal(piece.signal))
    speech = np.concatenate(joined).astype(np.float32)
    filters: list[str] = []
    tempo = 1.0 if pieces[0].applied_rate else prosody.rate
    pitch = 0.0 if pieces[0].applied_pitch else prosody.pitch
    if abs(tempo - 1.0) > 1e-3 or abs(pitch) > 1e-3:
        # Rubber Band changes duration and pitch independently (atempo cannot shift pitch).
        filters.append(f"rubberband=tempo={tempo:.4f}:pitch={2 ** (pitch / 12):.5f}:pitchq=quality")
    if prosody.colour:
        filters.append(prosody.colour)
    voice = audio_io.apply_filter(
        speech, source_rate, ",".join(filters) or "anull", out_rate=sample_rate, should_stop=should_stop
    )
    voice = dsp.normalize_loudness(
        voice, sample_rate, VOICE_BASE_LUFS + prosody.gain_db, should_stop=should_stop
    )
    if ambience != "none":
        voice = mix_ambience(voice, sample_rate, ambience, seed=seed)
    return dsp.limit_peaks(voice, sample_rate, should_stop=should_stop)
