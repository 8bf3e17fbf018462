"""Helpers of the audio tests: input audio served over HTTP, the activities run through temporalio's real
ActivityEnvironment (no Temporal server needed), and the signal measurements the tests assert on."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import soundfile as sf
from temporalio.testing import ActivityEnvironment

from activities.audio import files as audio_io
from activities.audio.activities import AudioActivities
from taskservice.contracts import TaskActivityInput
from taskservice.settings import Settings
from tests.support.attempts import TaskActivityEnvironment, heartbeat_fields
from tests.support.file_server import StaticFileServer

_task_numbers = itertools.count(1)


def audio_settings(data_dir: Path, tts_model: str | None = None) -> Settings:
    return Settings(allow_private_urls=True, data_dir=data_dir, storage_backend="local", tts_model=tts_model)


def serve_audio(files: StaticFileServer, signal: np.ndarray, rate: int, fmt: str, tmp: Path) -> str:
    """Encode `signal` as `fmt` and serve it; returns its URL."""
    path = tmp / f"input{next(_task_numbers)}.{fmt}"
    audio_io.encode(audio_io.as_signal(signal), rate, fmt, path)
    return files.add(path.read_bytes(), audio_io.CONTENT_TYPES[fmt], name=path.name)


@dataclass
class Run:
    """What one activity run produced: its result, the heartbeats it sent, and the decoded output."""

    result: dict[str, Any]
    heartbeats: list[dict[str, Any]]
    path: Path
    audio: np.ndarray  # (frames, channels) float32
    rate: int

    @property
    def steps(self) -> list[str]:
        return [h["step"] for h in self.heartbeats]


def task_input(task_type: str, task_data: dict[str, Any], *, task_id: str | None = None) -> TaskActivityInput:
    return TaskActivityInput(
        task_id=task_id or f"task-{next(_task_numbers)}",
        project_id="proj-audio",
        task_type=task_type,
        task_data=task_data,
        soft_timeout_s=120,
    )


async def run_activity(
    acts: AudioActivities,
    task_type: str,
    task_data: dict[str, Any],
    *,
    on_heartbeat: Callable[[ActivityEnvironment, dict[str, Any]], None] | None = None,
) -> Run:
    env = TaskActivityEnvironment()
    beats: list[dict[str, Any]] = []

    def record(*details: Any) -> None:
        beats.append(heartbeat_fields(details[0]))
        if on_heartbeat is not None:
            on_heartbeat(env, beats[-1])

    env.on_heartbeat = record
    fn = acts.generate_character_voice if task_type == "generate_character_voice" else acts.process_audio
    result = await env.run(fn, task_input(task_type, task_data))
    path = stored_path(acts, result["media_url"])
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return Run(result, beats, path, audio, int(rate))


def stored_path(acts: AudioActivities, url: str) -> Path:
    settings: Settings = acts._settings
    # The key is the URL's path below the public base; the query is the signature of a local-storage URL.
    key = url.removeprefix(settings.media_public_url.rstrip("/") + "/").split("?", 1)[0]
    return settings.data_dir / "media" / unquote(key)


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def frame_rms_db(audio: np.ndarray, rate: int, frame_s: float = 0.05) -> np.ndarray:
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    n = max(1, int(frame_s * rate))
    count = len(mono) // n
    frames = mono[: count * n].reshape(count, n).astype(np.float64)
    return np.asarray(10 * np.log10(np.mean(frames**2, axis=1) + 1e-12))


def band_envelope_db(
    audio: np.ndarray, rate: int, low: float, high: float, frame_s: float = 0.01
) -> np.ndarray:
    """Per-frame level of one frequency band: where in time a tone of that band sounds."""
    from scipy.signal import butter, sosfiltfilt

    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    sos = butter(6, [low, high], btype="bandpass", fs=rate, output="sos")
    return frame_rms_db(sosfiltfilt(sos, mono.astype(np.float64))[:, None], rate, frame_s)


def median_f0(audio: np.ndarray, rate: int) -> float:
    """Median fundamental of the voiced 40 ms frames (autocorrelation, 60-500 Hz)."""
    mono = (audio.mean(axis=1) if audio.ndim == 2 else audio).astype(np.float64)
    n = int(0.04 * rate)
    levels = frame_rms_db(audio, rate, 0.04)
    loud = levels > np.max(levels) - 20
    f0s: list[float] = []
    for i in np.flatnonzero(loud):
        frame = mono[i * n : (i + 1) * n]
        frame = frame - frame.mean()
        corr = np.correlate(frame, frame, "full")[n - 1 :]
        lo, hi = int(rate / 500), int(rate / 60)
        lag = lo + int(np.argmax(corr[lo:hi]))
        if corr[lag] > 0.5 * corr[0]:
            f0s.append(rate / lag)
    return float(np.median(f0s)) if f0s else 0.0
