"""Fixtures of the media tests: tiny diffusers pipelines built once into data/test-models, a real HTTP server
for input images (and a Payload-CMS-shaped receiver), and the media activities driven through temporalio's
real ActivityEnvironment (no Temporal server needed)."""

from __future__ import annotations

import importlib.util
import io
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
from PIL import Image
from temporalio.testing import ActivityEnvironment

from activities.media import MediaActivities, StepEvent
from taskservice.contracts import TaskActivityInput
from taskservice.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "data" / "test-models"


def png_bytes(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Route:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    received: list[Received]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _answer(self, route: Route) -> None:
        if route.delay_s:
            time.sleep(route.delay_s)
        try:
            self.send_response(route.status)
            self.send_header("content-type", route.content_type)
            self.send_header("content-length", str(len(route.body)))
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(route.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout, size limit tests): expected

    def do_GET(self) -> None:
        server = cast(_Server, self.server)
        self._answer(server.routes.get(self.path.split("?", 1)[0], Route(404, "text/plain", b"not found")))

    def do_POST(self) -> None:
        server = cast(_Server, self.server)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        server.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self._answer(server.routes.get("POST " + self.path, Route(404, "application/json", b"{}")))


@dataclass
class HTTPServer:
    """A real HTTP server on 127.0.0.1: `add` registers a response and returns its URL."""

    server: _Server
    base_url: str

    def add(
        self,
        path: str,
        body: bytes,
        content_type: str = "image/png",
        status: int = 200,
        delay_s: float = 0.0,
        **headers: str,
    ) -> str:
        self.server.routes[path] = Route(status, content_type, body, headers, delay_s)
        return self.base_url + path

    @property
    def received(self) -> list[Received]:
        return self.server.received


@pytest.fixture(scope="session")
def http_server() -> Iterator[HTTPServer]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.routes = {}
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served = HTTPServer(server, f"http://127.0.0.1:{server.server_address[1]}")
    served.add("/ref.png", png_bytes((96, 80), (200, 30, 30)))
    served.add("/story-1.png", png_bytes((64, 64), (20, 200, 20)))
    served.add("/story-2.png", png_bytes((64, 64), (20, 20, 200)))
    served.add("/not-an-image.png", b"<html>certainly not a PNG</html>")
    served.add("/page.html", b"<html></html>", content_type="text/html")
    yield served
    server.shutdown()


def _load_builder() -> Any:
    spec = importlib.util.spec_from_file_location(
        "build_tiny_models", REPO / "scripts" / "build_tiny_models.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """Built on first use (~10 s), then reused across runs: the build skips complete folders."""
    folders: dict[str, Path] = _load_builder().build_all(MODELS_DIR)
    return folders


def make_settings(tiny_models: dict[str, Path], data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "image_model": str(tiny_models["tiny-sd"]),
        "video_model": str(tiny_models["tiny-video"]),
        "animation_model": str(tiny_models["tiny-animatediff"]),
        "caption_model": str(tiny_models["tiny-blip"]),
        "torch_device": "cpu",
        "data_dir": data_dir,
        "allow_private_urls": True,
        "media_public_url": "http://media.test/media",
        "fetch_timeout_s": 10.0,
    }
    values.update(overrides)
    return Settings(**values)


class StepRecorder:
    """Collects the denoising steps of the activities; `on_event` lets a test act at a given step."""

    def __init__(self) -> None:
        self.events: list[StepEvent] = []
        self.on_event: Callable[[StepEvent], None] | None = None

    def __call__(self, event: StepEvent) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def reset(self) -> None:
        self.events.clear()
        self.on_event = None


@pytest.fixture(scope="session")
def steps() -> StepRecorder:
    return StepRecorder()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media-data")


@pytest.fixture(scope="session")
async def media(
    tiny_models: dict[str, Path], media_dir: Path, steps: StepRecorder
) -> AsyncIterator[MediaActivities]:
    """One MediaActivities for the session, like one worker process: its model cache stays warm."""
    activities = MediaActivities(make_settings(tiny_models, media_dir), step_observer=steps)
    yield activities
    await activities.aclose()


@pytest.fixture(autouse=True)
def _reset_steps(steps: StepRecorder) -> None:
    steps.reset()


@dataclass
class Run:
    """An activity run through the real SDK ActivityEnvironment, with the heartbeats it sent."""

    env: ActivityEnvironment
    heartbeats: list[dict[str, Any]]


def activity_env() -> Run:
    env = ActivityEnvironment()
    heartbeats: list[dict[str, Any]] = []
    env.on_heartbeat = lambda *details: heartbeats.append(details[0])
    return Run(env, heartbeats)


def task_input(
    task_type: str, task_data: dict[str, Any], *, task_id: str = "task_1", soft_timeout_s: float = 60.0
) -> TaskActivityInput:
    return TaskActivityInput(
        task_id=task_id,
        project_id="proj_media",
        task_type=task_type,
        task_data=task_data,
        soft_timeout_s=soft_timeout_s,
    )


def assert_progress(heartbeats: list[dict[str, Any]]) -> None:
    values = [h["progress"] for h in heartbeats]
    assert values, "no heartbeats"
    assert values == sorted(values), f"progress went backwards: {values}"
    assert values[-1] == 1.0
    assert heartbeats[-1]["step"] == "done"


def json_body(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()
