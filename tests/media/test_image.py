"""generate_image end to end through the SDK's ActivityEnvironment, on the tiny SD pipeline."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from temporalio.exceptions import ApplicationError

from activities.media.activities import MediaActivities
from taskservice.settings import Settings
from tests.support.file_server import StaticFileServer
from tests.support.media import (
    StepRecorder,
    activity_env,
    assert_progress,
    assert_signed_media_url,
    huge_png,
    make_settings,
    task_input,
)
from tests.support.worker_resources import opened


async def test_text_to_image_local_storage(media: MediaActivities, media_dir: Path) -> None:
    run = activity_env()
    data = {"prompt": "a red fox", "character_id": "fox_1", "pose": "sitting", "lighting": "dusk",
            "resolution": "70x60", "quality": "draft", "seed": 1234}  # fmt: skip
    result = await run.env.run(media.generate_image, task_input("generate_image", data, task_id="img_text"))

    key = "proj_media/generate_image/img_text.png"
    assert_signed_media_url(result["media_url"], media_dir, key)
    assert result["payload_media_id"] is None  # Payload CMS not configured: no invented id
    path = media_dir / "media" / key
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (72, 64)  # 70x60 rounded to multiples of 8
    meta = result["metadata"]
    assert (meta["width"], meta["height"], meta["resolution"]) == (72, 64, "72x64")
    assert meta["file_size"] == path.stat().st_size
    assert meta["seed"] == 1234 and meta["steps"] == 4 and meta["format"] == "png"
    assert meta["generation_model"].endswith("tiny-sd")
    assert_progress(run.heartbeats)

    # A retried attempt (same task id, same seed) rewrites the same key with the same pixels.
    first = path.read_bytes()
    again = await activity_env().env.run(
        media.generate_image, task_input("generate_image", data, task_id="img_text")
    )
    assert again["media_url"].split("?")[0] == result["media_url"].split("?")[0]
    assert path.read_bytes() == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["img_text.png"]  # no temp leftovers


async def test_random_seed_is_reported(media: MediaActivities) -> None:
    data = {"prompt": "a fox", "resolution": "64x64", "quality": "draft"}
    result = await activity_env().env.run(media.generate_image, task_input("generate_image", data))
    assert isinstance(result["metadata"]["seed"], int)


async def test_reference_image_uses_img2img_with_shared_weights(
    media: MediaActivities, http_server: StaticFileServer, media_dir: Path, tiny_models: dict[str, Path]
) -> None:
    data = {
        "prompt": "the same fox, running",
        "reference_images": [http_server.base_url + "/ref.png"],
        "style_guide": http_server.base_url + "/story-1.png",
        "resolution": "64x64",
        "quality": "draft",
        "seed": 7,
    }
    run = activity_env()
    result = await run.env.run(media.generate_image, task_input("generate_image", data, task_id="img_ref"))
    assert result["metadata"]["conditioning"] == "reference_image"
    assert result["metadata"]["steps"] == 2  # img2img runs int(4 × 0.65) steps
    with Image.open(media_dir / "media" / "proj_media/generate_image/img_ref.png") as image:
        assert image.size == (64, 64)
    assert_progress(run.heartbeats)

    # img2img was built from the text-to-image pipeline (from_pipe): same modules, no second load.
    model = str(tiny_models["tiny-sd"])
    text_pipe = media.models.text_to_image(model)
    img_pipe = media.models.image_to_image(model, model)
    assert img_pipe.unet is text_pipe.unet
    loads = media.models.loads
    await activity_env().env.run(media.generate_image, task_input("generate_image", data, task_id="img_ref2"))
    assert media.models.loads == loads  # warm cache: nothing loaded for the second task
    assert model in media.loaded_models()


async def test_cancel_mid_denoise_stops_within_one_step(media: MediaActivities, steps: StepRecorder) -> None:
    await activity_env().env.run(  # warm the cache so the cancel lands in the denoising loop
        media.generate_image,
        task_input(
            "generate_image", {"prompt": "warm", "resolution": "64x64", "quality": "draft"}
        ),  # fmt: skip
    )
    steps.reset()
    run = activity_env()
    loop = asyncio.get_running_loop()
    cancelled_at: list[float] = []

    def cancel_at_step_3(event: object) -> None:
        if len(steps.events) == 3 and not cancelled_at:
            cancelled_at.append(time.perf_counter())
            loop.call_soon_threadsafe(run.env.cancel)

    steps.on_event = cancel_at_step_3
    data = {"prompt": "a long render", "resolution": "128x128", "num_inference_steps": 40, "seed": 1}
    with pytest.raises(asyncio.CancelledError):
        await run.env.run(media.generate_image, task_input("generate_image", data, task_id="img_cancel"))
    returned = time.perf_counter()

    events = steps.events
    after_cancel = [e for e in events if e.at > cancelled_at[0]]
    # The first step that sees the stop request ends the loop; no step starts after it.
    assert [e.stopping for e in events].count(True) == 1 and events[-1].stopping
    assert len(after_cancel) <= 2, f"{len(after_cancel)} steps ran after the cancel"
    assert len(events) < 40
    print(
        f"\n[media] cancel latency (cancel request → blocking call returned): "
        f"{(returned - cancelled_at[0]) * 1000:.0f} ms; steps after cancel: {len(after_cancel)}; "
        f"step time ~{(events[-1].at - events[0].at) / max(len(events) - 1, 1) * 1000:.0f} ms",
        file=sys.stderr,
    )


async def test_soft_timeout(media: MediaActivities, steps: StepRecorder) -> None:
    await activity_env().env.run(
        media.generate_image,
        task_input(
            "generate_image", {"prompt": "warm", "resolution": "64x64", "quality": "draft"}
        ),  # fmt: skip
    )
    steps.reset()
    data = {"prompt": "too slow", "resolution": "128x128", "quality": "ultra"}
    started = time.perf_counter()
    with pytest.raises(ApplicationError) as caught:
        await activity_env().env.run(
            media.generate_image, task_input("generate_image", data, task_id="img_slow", soft_timeout_s=0.5)
        )
    assert caught.value.type == "SoftTimeLimitExceeded"
    assert time.perf_counter() - started < 5
    assert steps.events and steps.events[-1].stopping and len(steps.events) < 50


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/missing.png", "not found (HTTP 404)"),
        ("/not-an-image.png", "not a decodable image"),
        ("/page.html", "content type 'text/html'"),
    ],
)
async def test_bad_input_url_fails_cleanly(
    media: MediaActivities, http_server: StaticFileServer, path: str, fragment: str
) -> None:
    data = {
        "prompt": "x",
        "reference_images": [http_server.base_url + path + "?token=secret"],
        "quality": "draft",
    }
    with pytest.raises(ApplicationError) as caught:
        await activity_env().env.run(media.generate_image, task_input("generate_image", data))
    assert caught.value.type == "InvalidInput" and caught.value.non_retryable
    assert fragment in str(caught.value)
    assert "secret" not in str(caught.value)  # query strings (tokens) never reach error messages


async def test_private_input_url_refused(
    tiny_models: dict[str, Path], tmp_path: Path, http_server: StaticFileServer
) -> None:
    async with opened(
        MediaActivities, make_settings(tiny_models, tmp_path, allow_private_urls=False)
    ) as acts:
        data = {"prompt": "x", "reference_images": [http_server.base_url + "/ref.png"]}
        with pytest.raises(ApplicationError) as caught:
            await activity_env().env.run(acts.generate_image, task_input("generate_image", data))
        assert caught.value.type == "InvalidInput" and "private" in str(caught.value)
        assert acts.loaded_models() == []


async def test_model_not_configured(tmp_path: Path) -> None:
    async with opened(MediaActivities, Settings(data_dir=tmp_path, torch_device="cpu")) as acts:
        for method, task_type, data, env in [
            (acts.generate_image, "generate_image", {"prompt": "x"}, "IMAGE_MODEL"),
            (acts.generate_video, "generate_video", {"scene_description": "x"}, "VIDEO_MODEL"),
            (acts.render_animation, "render_animation", {"action": "wave"}, "ANIMATION_MODEL"),
        ]:
            with pytest.raises(ApplicationError) as caught:
                await activity_env().env.run(method, task_input(task_type, data))
            assert caught.value.type == "ConfigurationError" and caught.value.non_retryable
            assert env in str(caught.value)


async def test_a_cold_attempt_reports_the_seconds_of_its_model_load(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """The learned durations take `model_load_s` out of a task's run: the cold attempt reports it, within the
    seconds it held the device; the next (warm) one reports none."""
    data = {"prompt": "a lighthouse", "resolution": "32x32", "num_inference_steps": 2, "seed": 7}
    async with opened(MediaActivities, make_settings(tiny_models, tmp_path)) as acts:
        cold = await activity_env().env.run(acts.generate_image, task_input("generate_image", data))
        warm = await activity_env().env.run(acts.generate_image, task_input("generate_image", data))
    assert 0 < cold["metadata"]["model_load_s"] <= cold["metadata"]["cpu_seconds"]
    assert "model_load_s" not in warm["metadata"] and warm["metadata"]["cpu_seconds"] > 0


async def test_model_path_that_does_not_load(tmp_path: Path) -> None:
    async with opened(
        MediaActivities, Settings(data_dir=tmp_path, torch_device="cpu", image_model=str(tmp_path / "nope"))
    ) as acts:
        with pytest.raises(ApplicationError) as caught:
            await activity_env().env.run(acts.generate_image, task_input("generate_image", {"prompt": "x"}))
        assert caught.value.type == "ConfigurationError" and "IMAGE_MODEL" in str(caught.value)


async def test_invalid_task_data(media: MediaActivities) -> None:
    for data in (
        {"prompt": ""},
        {"prompt": "x", "resolution": "huge"},
        {"prompt": "x", "num_inference_steps": 0},
    ):
        with pytest.raises(ApplicationError) as caught:
            await activity_env().env.run(media.generate_image, task_input("generate_image", data))
        assert caught.value.type == "InvalidInput" and caught.value.non_retryable


async def test_huge_input_image_is_refused_before_decoding(
    media: MediaActivities, tiny_models: dict[str, Path], tmp_path: Path, http_server: StaticFileServer
) -> None:
    png = huge_png()
    assert len(png) < 100_000
    data = {"prompt": "x", "reference_images": [http_server.put("/huge.png", png, "image/png")]}
    with pytest.raises(ApplicationError) as caught:
        await activity_env().env.run(media.generate_image, task_input("generate_image", data))
    assert caught.value.type == "InvalidInput" and caught.value.non_retryable
    assert "is 13000x13000 = 169,000,000 pixels, above MAX_INPUT_PIXELS = 40,000,000" in str(caught.value)
    # With MAX_INPUT_PIXELS raised past it, what PIL warns about as a decompression bomb is still refused.
    async with opened(MediaActivities, make_settings(tiny_models, tmp_path, max_input_pixels=10**9)) as acts:
        with pytest.raises(ApplicationError) as caught:
            await activity_env().env.run(acts.generate_image, task_input("generate_image", data))
    assert caught.value.type == "InvalidInput" and "a possible decompression bomb" in str(caught.value)
