"""The work budget of a media request: refused with 400 before anything starts; a huge input image fails its
task at once without the worker decoding it."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import psutil
from temporalio.client import Client

from api.domain.errors import ValidationFailed
from api.service import submission
from taskservice.catalog import CATALOG
from taskservice.settings import Settings
from taskservice.task_examples import SEED_EXAMPLES, TASK_DATA_EXAMPLES
from tests.support.file_server import StaticFileServer
from tests.support.media import huge_png
from tests.support.processes import child_pids
from tests.support.stack import API_KEYS, EMPTY_NAMESPACE, Stack
from tests.support.tasks import count_workflows, submit, wait_status

# What a new user tried on a CPU worker: 1080p, 1 s, draft (20 GB), and 30 s × 60 fps × 4096² (OOM-killed).
FULL_HD_SECOND = {"scene_description": "alley", "resolution": "1920x1080", "duration": 1, "quality": "draft"}
HUGE_VIDEO = {"scene_description": "alley", "resolution": "4096x4096", "duration": 30, "fps": 60}


def _refusal(task_type: str, data: dict[str, Any], settings: Settings) -> dict[str, str] | None:
    try:
        submission.validate_task_data(submission.task_spec(task_type), data, settings.media_budget())
    except ValidationFailed as err:
        details: dict[str, str] = err.extra["details"]
        assert list(details.values()) == [err.message]
        return details
    return None


def test_budget_device_and_overrides() -> None:
    assert Settings().media_budget().device == "cpu"
    assert Settings(torch_device="cuda:1").media_budget().device == "gpu"
    assert (
        Settings(
            environment="production", api_key="k" * 32, media_signing_key="s" * 32, webhook_signing="off"
        )
        .media_budget()
        .device
        == "gpu"
    )
    assert Settings(torch_device="cuda", media_budget_device="cpu").media_budget().device == "cpu"
    gpu, cpu = Settings(media_budget_device="gpu"), Settings(media_budget_device="cpu")
    # The seed's own example (1080p, 7 s at 24 fps) runs on GPU workers; a CPU worker takes 720p at most.
    assert _refusal("generate_video", SEED_EXAMPLES["generate_video"], gpu) is None
    assert _refusal("generate_video", SEED_EXAMPLES["generate_video"], cpu) == {
        "task_data.resolution": "generate_video asks 1920x1080 a frame = 2,073,600 pixels, above "
        "MAX_VIDEO_PIXELS = 921,600 pixels (the budget of this service's cpu workers)"
    }
    # Every example of the catalog fits a GPU worker, and the task types' defaults fit a CPU one.
    for name, example in TASK_DATA_EXAMPLES.items():
        assert _refusal(name, example, gpu) is None, name
    assert _refusal("generate_video", {"scene_description": "x"}, cpu) is None
    assert _refusal("render_animation", {"action": "x"}, cpu) is None
    assert _refusal("generate_image", {"prompt": "x", "quality": "ultra"}, cpu) is None
    # A setting replaces its device's default.
    assert _refusal("generate_video", FULL_HD_SECOND, Settings(max_video_pixels=1920 * 1080)) is None
    small = Settings(max_video_pixel_frames=64 * 64 * 8)
    assert _refusal("generate_video", {"scene_description": "x", "resolution": "64x64", "fps": 4}, small) == {
        "task_data.duration": "generate_video asks 64x64 × 56 frames = 229,376 pixel-frames, above "
        "MAX_VIDEO_PIXEL_FRAMES = 32,768 pixel-frames (the budget of this service's cpu workers)"
    }


def test_each_budget_names_itself_and_the_figure() -> None:
    cpu = Settings(media_budget_device="cpu")
    cases = [
        ("generate_video", HUGE_VIDEO, "task_data.resolution", "MAX_VIDEO_PIXELS", "16,777,216 pixels"),
        (
            "generate_video",
            {"scene_description": "x", "resolution": "1280x720", "duration": 30, "fps": 60},
            "task_data.duration",
            "MAX_VIDEO_PIXEL_FRAMES",
            "1280x720 × 1800 frames = 1,658,880,000 pixel-frames",
        ),
        (
            "render_animation",
            {"action": "x", "resolution": "960x960", "duration": 30, "fps": 24},
            "task_data.duration",
            "MAX_ANIMATION_PIXEL_FRAMES",
            "960x960 × 720 frames",
        ),
        (
            "generate_image",
            {"prompt": "x", "resolution": "4096x4096", "quality": "draft"},
            "task_data.resolution",
            "MAX_IMAGE_PIXEL_STEPS",
            "4096x4096 × 4 steps = 67,108,864 pixel-steps",
        ),
        (
            "run_sd_inference",
            {"prompt": "x", "resolution": "2048x2048", "num_inference_steps": 13},
            "task_data.resolution",
            "MAX_IMAGE_PIXEL_STEPS",
            "2048x2048 × 13 steps",
        ),
        (
            "process_audio",
            {
                "tracks": [
                    {"url": "https://a.test/x.wav", "offset_s": 3000, "trim": {"start_s": 0, "end_s": 700}}
                ]
            },
            "task_data.tracks.0.offset_s",
            "MAX_AUDIO_MIX_S",
            "a mix of at least 3700 s (track 1) = 3,700 seconds",
        ),
    ]
    for task_type, data, field, setting, figure in cases:
        details = _refusal(task_type, data, cpu)
        assert details is not None and list(details) == [field], (task_type, details)
        assert f"{task_type} asks " in details[field] and f"above {setting} = " in details[field]
        assert figure in details[field], details[field]
    # An 8 fps budget counts the frames the model renders, whatever the file's fps.
    slow = {"scene_description": "x", "resolution": "1280x720", "duration": 30, "fps": 1}
    details = _refusal("generate_video", slow, cpu)
    assert details is not None and "1280x720 × 240 frames" in details["task_data.duration"]


async def test_over_budget_video_is_refused_before_anything_starts(
    api: httpx.AsyncClient, temporal_client: Client
) -> None:
    project = f"budget-{uuid.uuid4().hex[:8]}"
    for data, setting in [(FULL_HD_SECOND, "MAX_VIDEO_PIXELS"), (HUGE_VIDEO, "MAX_VIDEO_PIXELS")]:
        body = {"project_id": project, "task_type": "generate_video", "task_data": data}
        response = await api.post("/api/v1/tasks/submit", json=body)
        assert response.status_code == 400, response.text
        error = response.json()
        assert error["error"] == "validation_error"
        assert setting in error["message"] and "cpu workers" in error["message"]
        assert error["details"] == {"task_data.resolution": error["message"]}
    batch = await api.post(
        "/api/v1/tasks/batch",
        json={"tasks": [{"project_id": project, "task_type": "generate_video", "task_data": HUGE_VIDEO}]},
    )
    assert batch.status_code == 200 and "MAX_VIDEO_PIXELS" in str(batch.json()), batch.text
    # Nothing started: no workflow of the project in Temporal, no task in the listing.
    assert await count_workflows(temporal_client, f'ProjectId = "{project}"', expected=0) == 0
    listing = await api.get("/api/v1/tasks", params={"project_id": project})
    assert listing.status_code == 200 and listing.json() == []


async def test_retry_is_held_to_the_budget_in_force(stack: Stack) -> None:
    """A task accepted under a larger budget (GPU workers) is not retried past the smaller one now in force.
    In the namespace without workers, so the 1080p video never runs."""
    gpu_api, gpu_url = stack.start_api(
        "api-budget-gpu", TEMPORAL_NAMESPACE=EMPTY_NAMESPACE, MEDIA_BUDGET_DEVICE="gpu"
    )
    cpu_api, cpu_url = stack.start_api("api-budget-cpu", TEMPORAL_NAMESPACE=EMPTY_NAMESPACE)
    headers = {"X-API-Key": API_KEYS[0]}
    try:
        async with httpx.AsyncClient(base_url=gpu_url, headers=headers, timeout=30) as gpu:
            project = f"budget-retry-{uuid.uuid4().hex[:8]}"
            task_id = await submit(gpu, "generate_video", FULL_HD_SECOND, project_id=project)
            assert (await gpu.delete(f"/api/v1/tasks/{task_id}")).status_code == 200
            await wait_status(gpu, task_id, "cancelled")
        async with httpx.AsyncClient(base_url=cpu_url, headers=headers, timeout=30) as cpu:
            response = await cpu.post(f"/api/v1/tasks/{task_id}/retry")
            assert response.status_code == 400, response.text
            assert (
                response.json()["error"] == "validation_error"
                and "MAX_VIDEO_PIXELS" in response.json()["message"]
            )
            listing = await cpu.get("/api/v1/tasks", params={"project_id": project})
            assert [t["task_id"] for t in listing.json()] == [task_id]  # no new task
    finally:
        gpu_api.stop()
        cpu_api.stop()


class _RssSampler:
    """The largest RSS of some processes, sampled every 10 ms on a thread."""

    def __init__(self, pids: list[int]) -> None:
        self._processes = [psutil.Process(pid) for pid in pids]
        self._stop = threading.Event()
        self.baseline = self._rss()
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        return sum(p.memory_info().rss for p in self._processes)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.01)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def test_huge_reference_image_fails_the_task_without_decoding_it(
    api: httpx.AsyncClient, stack: Stack, file_server: StaticFileServer
) -> None:
    png = huge_png()  # 13 000² (169 MP): 507 MB as RGB
    url = file_server.put("/huge-13000.png", png, "image/png")
    worker = stack.workers[CATALOG["generate_image"].queue.value]
    with _RssSampler(child_pids(worker.pid)) as rss:
        task_id = await submit(
            api,
            "generate_image",
            {"prompt": "portrait", "reference_images": [url], "resolution": "64x64", "quality": "draft"},
        )
        status = await wait_status(api, task_id, "failed", timeout=120)
    assert status["error"].startswith("InvalidInput:"), status["error"]
    assert "13000x13000 = 169,000,000 pixels, above MAX_INPUT_PIXELS = 40,000,000" in status["error"]
    assert status["attempt"] == 1
    growth_mb = (rss.peak - rss.baseline) / 2**20
    print(f"\n[budget] worker RSS {rss.baseline / 2**20:.0f} MB, peak +{growth_mb:.1f} MB during the task")
    assert growth_mb < 100, growth_mb  # decoding it would add ≥ 507 MB
