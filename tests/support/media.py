"""Helpers of the media tests: input images, settings on the tiny models, and activities run through
temporalio's real ActivityEnvironment (no Temporal server needed)."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from PIL import Image
from temporalio.testing import ActivityEnvironment

from activities.media.tools import PhaseEvent, StepEvent
from taskservice.contracts import TaskActivityInput
from taskservice.media_urls import media_signer
from taskservice.settings import Settings
from tests.support.attempts import TaskActivityEnvironment, heartbeat_fields


def png_bytes(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@functools.cache
def huge_png(side: int = 13_000) -> bytes:
    """A side × side PNG that is tiny on the wire (1-bit, all black: ~20 KB for 13 000²) and huge decoded
    (13 000² RGB is 507 MB)."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def json_body(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


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


def assert_signed_media_url(
    url: str, data_dir: Path, key: str, base: str = "http://media.test/media"
) -> None:
    """A local-storage result URL: the public base and the key, signed by this data dir's media key."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{base}/{key}"
    query = dict(parse_qsl(parts.query))
    signer = media_signer(Settings(data_dir=data_dir))
    assert signer.verify(key, query.get("expires"), query.get("sig")), url
    assert not signer.verify(key + "x", query.get("expires"), query.get("sig"))


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


@dataclass
class Run:
    """An activity run through the real SDK ActivityEnvironment, with the heartbeats it sent."""

    env: ActivityEnvironment
    heartbeats: list[dict[str, Any]]


def activity_env() -> Run:
    env = TaskActivityEnvironment()
    heartbeats: list[dict[str, Any]] = []
    env.on_heartbeat = lambda *details: heartbeats.append(heartbeat_fields(details[0]))
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


def reference_caption(model_dir: Path, image: Image.Image, prompt: str | None, max_new_tokens: int) -> Any:
    """What the checkpoint itself generates (greedy), loaded apart from the service's code."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor: Any = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        ids = model.generate(
            **processor(images=image, text=prompt, return_tensors="pt"),
            max_new_tokens=max_new_tokens,
            do_sample=False,
        )
    return processor.decode(ids[0], skip_special_tokens=True).strip(), ids[0]


@dataclass(frozen=True)
class Seen:
    phase: str  # "denoising", "decoding_video", "encoding_video"
    done: int
    total: int
    at: float


class PhaseRecorder:
    """Every denoising step and every decoded/encoded chunk, in order; `on_event` may act on one (it runs in
    the task's worker thread, which waits for it)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.on_event: Callable[[Seen], None] | None = None

    def step(self, event: StepEvent) -> None:
        self._add(Seen("denoising", event.step, event.total, event.at))

    def phase(self, event: PhaseEvent) -> None:
        self._add(Seen(event.phase, event.done, event.total, event.at))

    def _add(self, seen: Seen) -> None:
        self.seen.append(seen)
        if self.on_event is not None:
            self.on_event(seen)
