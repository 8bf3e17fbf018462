"""Audio task types on the cpu_intensive queue: generate_character_voice and process_audio.

Both follow the media conventions: inputs come through the shared `InputFetcher` (SSRF guard), results go
to `MediaStorage` under `media_key(...)` and are registered in Payload CMS, progress/cancel/soft timeout are
`run_task`'s. Blocking work (synthesis, DSP, ffmpeg) runs in threads via `progress.run_blocking`, one step
at a time, with a cancel check between steps. Result metadata is read back from the written file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import ValidationError
from temporalio import activity

from activities import audio_dsp as dsp
from activities.audio_ambience import mix_ambience
from activities.audio_tts import (
    EMOTIONS,
    PACES,
    CoquiEngine,
    EngineUnavailable,
    Prosody,
    Speech,
    SpeechEngine,
    SpeechEngines,
    SpeechRequest,
    UnknownVoice,
    VoiceProfile,
    split_sentences,
)
from activities.fetch import InputFetcher
from activities.payload_cms import PayloadCMS
from activities.runtime import TaskProgress, parse_task_data, permanent_error, run_task
from activities.storage import MediaStorage, StoredMedia, build_storage, media_key
from taskservice.contracts import TaskActivityInput
from taskservice.netguard import redact_url
from taskservice.settings import Settings
from taskservice.task_data import (
    CompressOp,
    DenoiseOp,
    EqOp,
    GenerateCharacterVoiceData,
    NormalizeOp,
    ProcessAudioData,
    TrimSilenceOp,
)

log = logging.getLogger("taskservice.audio")

# Servers label audio loosely: ogg as application/ogg, unknown files as octet-stream, and a video file's
# sound track is audio too (ffmpeg takes its first audio stream).
AUDIO_TYPES = ("audio/", "application/octet-stream", "application/ogg", "video/")
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


def _json_number(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


class AudioActivities:
    """The audio activities of a worker; holds its HTTP client, storage, Payload client and TTS engines."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._http = httpx.AsyncClient(timeout=settings.fetch_timeout_s)
        self._fetcher = InputFetcher(settings, self._http)
        self._storage: MediaStorage = build_storage(settings)
        self._payload = PayloadCMS(settings, self._http)
        self._engines = SpeechEngines(settings.tts_model, settings.torch_device)

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [self.generate_character_voice, self.process_audio]

    def cache_stats(self) -> dict[str, int]:
        return {}

    def loaded_models(self) -> list[str]:
        return self._engines.loaded()

    async def aclose(self) -> None:
        self._engines.close()
        await self._http.aclose()

    # --- generate_character_voice ---------------------------------------------------------------------

    @activity.defn(name="generate_character_voice")
    async def generate_character_voice(self, task: TaskActivityInput) -> dict[str, Any]:
        data = parse_task_data(GenerateCharacterVoiceData, task)
        return await run_task(task, lambda progress: self._voice(task, data, progress))

    async def _voice(
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
        prosody = (
            EMOTIONS[data.emotion]
            .then(PACES[data.pace])
            .then(Prosody(rate=profile.rate, pitch=profile.pitch, gain_db=profile.gain_db))
        )
        with tempfile.TemporaryDirectory(prefix="voice-") as tmp_name:
            tmp = Path(tmp_name)
            speaker_wav = await self._speaker_reference(profile, engine, tmp, progress)
            pieces: list[Speech] = []
            for index, sentence in enumerate(sentences):
                progress.raise_if_stopped()
                progress.report(
                    0.08 + 0.67 * index / len(sentences), f"synthesizing {index + 1}/{len(sentences)}"
                )
                request = SpeechRequest(
                    text=sentence,
                    voice=profile.voice,
                    language=profile.language,
                    rate=prosody.rate,
                    pitch=prosody.pitch,
                    espeak_variant=prosody.espeak_variant,
                    speaker_wav=speaker_wav,
                )
                pieces.append(await progress.run_blocking(engine.synthesize, request))
            if not any(len(piece.signal) for piece in pieces):
                # e.g. text only in characters a model's vocabulary lacks: retrying cannot help.
                raise permanent_error(f"{engine.name} produced no audio for this text", "InvalidInput")
            progress.raise_if_stopped()
            progress.report(0.78, "mixing")
            signal = await progress.run_blocking(
                self._render_voice,
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
            info = await self._encode(signal, data.sample_rate, data.output_format, out, progress)
            progress.raise_if_stopped()
            progress.report(0.92, "uploading")
            stored, media_id = await self._publish(task, out, data.output_format, alt=data.text[:200])
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
        return {
            "media_url": stored.url,
            "payload_media_id": media_id,
            "metadata": {
                "duration": info.duration,
                "sample_rate": info.sample_rate,
                "format": data.output_format,
                "channels": info.channels,
                "file_size": info.file_size,
                "engine": engine.name,
                "model": engine.model,
                "voice": profile.voice or profile.language,
                "emotion": data.emotion,
                "pace": data.pace,
                "background_noise": data.background_noise,
                "sentences": len(sentences),
            },
        }

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
                dsp.decode_file, raw, engine.sample_rate, 1, should_stop=lambda: progress.should_stop
            )
        except dsp.FFmpegError as err:
            raise permanent_error(f"speaker reference is not decodable audio: {err.stderr_tail}") from None
        await progress.run_blocking(dsp.encode, signal, engine.sample_rate, "wav", wav)
        return wav

    @staticmethod
    def _render_voice(
        pieces: list[Speech],
        prosody: Prosody,
        sample_rate: int,
        ambience: str,
        seed: int,
        should_stop: dsp.StopCheck,
    ) -> dsp.Signal:
        """Sentences joined with pauses, prosody the engine lacks, colour, level, ambience, peak limit."""
        source_rate = pieces[0].sample_rate
        gap = np.zeros((int(SENTENCE_GAP_S / prosody.rate * source_rate), 1), dtype=np.float32)
        joined: list[dsp.Signal] = []
        for index, piece in enumerate(pieces):
            if index:
                joined.append(gap)
            joined.append(dsp.as_signal(piece.signal))
        speech = np.concatenate(joined).astype(np.float32)
        filters: list[str] = []
        tempo = 1.0 if pieces[0].applied_rate else prosody.rate
        pitch = 0.0 if pieces[0].applied_pitch else prosody.pitch
        if abs(tempo - 1.0) > 1e-3 or abs(pitch) > 1e-3:
            # Rubber Band changes duration and pitch independently (atempo cannot shift pitch).
            filters.append(f"rubberband=tempo={tempo:.4f}:pitch={2 ** (pitch / 12):.5f}:pitchq=quality")
        if prosody.colour:
            filters.append(prosody.colour)
        voice = dsp.apply_filter(
            speech, source_rate, ",".join(filters) or "anull", out_rate=sample_rate, should_stop=should_stop
        )
        voice = dsp.normalize_loudness(
            voice, sample_rate, VOICE_BASE_LUFS + prosody.gain_db, should_stop=should_stop
        )
        if ambience != "none":
            voice = mix_ambience(voice, sample_rate, ambience, seed=seed)
        return dsp.limit_peaks(voice, sample_rate, should_stop=should_stop)

    # --- process_audio --------------------------------------------------------------------------------

    @activity.defn(name="process_audio")
    async def process_audio(self, task: TaskActivityInput) -> dict[str, Any]:
        data = parse_task_data(ProcessAudioData, task)
        return await run_task(task, lambda progress: self._process(task, data, progress))

    async def _process(
        self, task: TaskActivityInput, data: ProcessAudioData, progress: TaskProgress
    ) -> dict[str, Any]:
        rate = data.sample_rate
        count = len(data.tracks)
        stop: dsp.StopCheck = lambda: progress.should_stop  # noqa: E731 - named for the many calls below
        with tempfile.TemporaryDirectory(prefix="mix-") as tmp_name:
            tmp = Path(tmp_name)
            paths: list[Path] = []
            for index, track in enumerate(data.tracks):
                progress.raise_if_stopped()
                progress.report(0.02 + 0.18 * index / count, f"downloading {index + 1}/{count}")
                fetched = await self._fetcher.fetch(track.url, accept=AUDIO_TYPES)
                path = tmp / f"track{index}"
                await asyncio.to_thread(path.write_bytes, fetched.data)
                paths.append(path)
            try:
                channel_counts = [await progress.run_blocking(dsp.probe_channels, p) for p in paths]
            except dsp.FFmpegError:
                raise permanent_error("a track has no audio stream ffmpeg can read", "InvalidInput") from None
            # Mono stays mono; anything with more than one channel makes a stereo mix (surround is downmixed).
            channels = 2 if max(channel_counts) > 1 else 1
            mix = np.zeros((0, channels), dtype=np.float32)
            for index, (track, path) in enumerate(zip(data.tracks, paths, strict=True)):
                progress.raise_if_stopped()
                progress.report(0.2 + 0.3 * index / count, f"decoding {index + 1}/{count}")
                # A mono track is decoded mono and copied to both sides: ffmpeg's upmix would put it at
                # -3 dB (centre mix level), so gain_db would no longer mean what it says.
                decode_channels = 1 if channel_counts[index] == 1 else channels
                try:
                    signal = await progress.run_blocking(
                        dsp.decode_file, path, rate, decode_channels, should_stop=stop
                    )
                except dsp.FFmpegError as err:
                    raise permanent_error(
                        f"track {index + 1} ({redact_url(track.url)}) is not decodable audio: "
                        f"{err.stderr_tail}",
                        "InvalidInput",
                    ) from None
                if signal.shape[1] != channels:
                    signal = np.repeat(signal, channels, axis=1)
                if track.trim is not None:
                    start = int(track.trim.start_s * rate)
                    end = len(signal) if track.trim.end_s is None else int(track.trim.end_s * rate)
                    if end <= start:
                        raise permanent_error(
                            f"track {index + 1}: trim end_s must be after start_s", "InvalidInput"
                        )
                    signal = signal[start:end]
                signal = dsp.fade(signal, rate, track.fade_in_s, track.fade_out_s)
                signal = (signal * dsp.db_to_gain(track.gain_db)).astype(np.float32)
                mix = dsp.mix_at(mix, signal, int(round(track.offset_s * rate)))
            mix = dsp.protect_clipping(mix)
            applied: list[str] = []
            for index, op in enumerate(data.operations):
                progress.raise_if_stopped()
                progress.report(
                    0.5 + 0.3 * index / len(data.operations), f"{op.type} {index + 1}/{len(data.operations)}"
                )
                mix = await progress.run_blocking(self._apply_operation, mix, rate, op, stop)
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
            info = await self._encode(mix, rate, data.output_format, out, progress)
            progress.report(0.88, "measuring")
            loudness = await progress.run_blocking(dsp.integrated_loudness, info.signal, info.sample_rate)
            peak = await progress.run_blocking(dsp.true_peak_dbtp, info.signal)
            progress.raise_if_stopped()
            progress.report(0.92, "uploading")
            stored, media_id = await self._publish(
                task, out, data.output_format, alt=f"audio mix {task.task_id}"
            )
        return {
            "media_url": stored.url,
            "payload_media_id": media_id,
            "metadata": {
                "duration": info.duration,
                "sample_rate": info.sample_rate,
                "format": data.output_format,
                "channels": info.channels,
                "file_size": info.file_size,
                "integrated_loudness_lufs": _json_number(loudness),
                "true_peak_dbtp": _json_number(peak),
                "tracks": count,
                "operations": applied,
            },
        }

    @staticmethod
    def _apply_operation(
        mix: dsp.Signal,
        rate: int,
        op: NormalizeOp | DenoiseOp | CompressOp | EqOp | TrimSilenceOp,
        should_stop: dsp.StopCheck,
    ) -> dsp.Signal:
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
        return dsp.apply_filter(mix, rate, graph, should_stop=should_stop)

    # --- shared tail: encode, read back, store, register ----------------------------------------------

    async def _encode(
        self, signal: dsp.Signal, rate: int, fmt: str, out: Path, progress: TaskProgress
    ) -> dsp.AudioFileInfo:
        await progress.run_blocking(
            dsp.encode, signal, rate, fmt, out, should_stop=lambda: progress.should_stop
        )
        return await progress.run_blocking(dsp.read_back, out)

    async def _publish(
        self, task: TaskActivityInput, path: Path, fmt: str, *, alt: str
    ) -> tuple[StoredMedia, str | None]:
        content_type = dsp.CONTENT_TYPES[fmt]
        key = media_key(task.project_id, task.task_type, task.task_id, fmt)
        stored = await self._storage.put_file(key, path, content_type)
        media_id = await self._payload.register_media(
            path, filename=f"{task.task_id}.{fmt}", content_type=content_type, alt=alt
        )
        return stored, media_id


def build(settings: Settings) -> AudioActivities:
    return AudioActivities(settings)
