"""Fixtures of the audio tests: a real HTTP server for profiles and input audio, the tiny VITS model, and
the activities driven through temporalio's real ActivityEnvironment (no Temporal server needed)."""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import soundfile as sf
from temporalio.testing import ActivityEnvironment

from activities import audio_dsp as dsp
from activities.audio import AudioActivities, build
from taskservice.contracts import TaskActivityInput
from taskservice.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    status: int
    content_type: str
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, Served]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        served = cast(_Server, self.server).files.get(self.path)
        if served is None:
            served = Served(404, "text/plain", b"not found")
        self.send_response(served.status)
        self.send_header("content-type", served.content_type)
        self.send_header("content-length", str(len(served.body)))
        self.end_headers()
        self.wfile.write(served.body)


@dataclass
class FileServer:
    """Serves registered bytes at paths on 127.0.0.1; `add` returns the URL."""

    server: _Server
    base_url: str
    counter: list[int] = field(default_factory=lambda: [0])

    def add(self, body: bytes, content_type: str, *, name: str | None = None, status: int = 200) -> str:
        self.counter[0] += 1
        path = f"/f{self.counter[0]}/{name or 'file'}"
        self.server.files[path] = Served(status, content_type, body)
        return self.base_url + path

    def add_json(self, document: Any) -> str:
        import json

        return self.add(json.dumps(document).encode(), "application/json", name="profile.json")

    def add_audio(self, signal: np.ndarray, rate: int, fmt: str, tmp: Path) -> str:
        path = tmp / f"input{self.counter[0]}.{fmt}"
        dsp.encode(dsp.as_signal(signal), rate, fmt, path)
        return self.add(path.read_bytes(), dsp.CONTENT_TYPES[fmt], name=path.name)


@pytest.fixture(scope="session")
def file_server() -> Iterator[FileServer]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.files = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield FileServer(server, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def tiny_tts_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random VITS, built offline by scripts/build_tiny_tts.py."""
    spec = importlib.util.spec_from_file_location("build_tiny_tts", REPO / "scripts" / "build_tiny_tts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder: Path = module.build(tmp_path_factory.mktemp("models") / "tiny-vits")
    return folder


def _settings(data_dir: Path, tts_model: str | None = None) -> Settings:
    return Settings(allow_private_urls=True, data_dir=data_dir, storage_backend="local", tts_model=tts_model)


@pytest.fixture(scope="session")
async def espeak_acts(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AudioActivities]:
    acts = build(_settings(tmp_path_factory.mktemp("espeak-data")))
    yield acts
    await acts.aclose()


@pytest.fixture(scope="session")
async def coqui_acts(
    tmp_path_factory: pytest.TempPathFactory, tiny_tts_model: Path
) -> AsyncIterator[AudioActivities]:
    # Session scope: the model is loaded once and reused, as in a worker.
    acts = build(_settings(tmp_path_factory.mktemp("coqui-data"), str(tiny_tts_model)))
    yield acts
    await acts.aclose()


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


_task_counter = [0]


def task_input(task_type: str, task_data: dict[str, Any], *, task_id: str | None = None) -> TaskActivityInput:
    _task_counter[0] += 1
    return TaskActivityInput(
        task_id=task_id or f"task-{_task_counter[0]}",
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
    env = ActivityEnvironment()
    beats: list[dict[str, Any]] = []

    def record(*details: Any) -> None:
        beats.append(details[0])
        if on_heartbeat is not None:
            on_heartbeat(env, details[0])

    env.on_heartbeat = record
    fn = acts.generate_character_voice if task_type == "generate_character_voice" else acts.process_audio
    result = await env.run(fn, task_input(task_type, task_data))
    path = stored_path(acts, result["media_url"])
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return Run(result, beats, path, audio, int(rate))


def stored_path(acts: AudioActivities, url: str) -> Path:
    settings: Settings = acts._settings
    key = url.removeprefix(settings.media_public_url.rstrip("/") + "/")
    return settings.data_dir / "media" / key


# --- signal helpers used by the tests -----------------------------------------------------------------


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
