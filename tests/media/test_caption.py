"""run_image_to_text_inference through the SDK's ActivityEnvironment, on the tiny BLIP captioner."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from temporalio.exceptions import ApplicationError

from activities.media.vision import VisionActivities
from activities.runtime import TaskInterrupted, TaskProgress
from taskservice.settings import Settings
from tests.support.file_server import StaticFileServer
from tests.support.media import (
    activity_env,
    assert_progress,
    make_settings,
    png_bytes,
    reference_caption,
    task_input,
)
from tests.support.worker_resources import opened

TASK = "run_image_to_text_inference"


@pytest.fixture(scope="module")
async def vision(tiny_models: dict[str, Path], media_dir: Path) -> AsyncIterator[VisionActivities]:
    """One VisionActivities for the module, like one gpu_medium worker: the caption model stays warm."""
    async with opened(VisionActivities, make_settings(tiny_models, media_dir)) as activities:
        yield activities


async def test_caption_from_url(
    vision: VisionActivities, http_server: StaticFileServer, tiny_models: dict[str, Path]
) -> None:
    url = http_server.put("/caption/photo.png", png_bytes((96, 80), (200, 30, 30)), "image/png")
    run = activity_env()
    data = {"image_url": url + "?token=secret", "max_new_tokens": 12}
    result = await run.env.run(vision.run_image_to_text_inference, task_input(TASK, data))

    assert set(result) == {"text", "prompt", "model", "image_width", "image_height", "image_source",
                           "generated_tokens", "max_new_tokens"}  # fmt: skip
    assert (result["image_width"], result["image_height"]) == (96, 80)  # read from the input image
    assert result["image_source"] == "url" and result["prompt"] is None
    assert result["model"] == str(tiny_models["tiny-blip"])
    expected, ids = await asyncio.to_thread(
        reference_caption, tiny_models["tiny-blip"], Image.new("RGB", (96, 80), (200, 30, 30)), None, 12
    )
    assert isinstance(result["text"], str) and result["text"] and result["text"] == expected
    # BLIP's output is the [DEC] start token then one token per generation step.
    assert result["generated_tokens"] == len(ids) - 1 and 1 <= result["generated_tokens"] <= 12
    assert result["max_new_tokens"] == 12
    assert_progress(run.heartbeats)

    # Warm cache: a second task loads nothing and, decoding greedily, writes the same caption.
    loads = vision.models.loads
    again = await activity_env().env.run(vision.run_image_to_text_inference, task_input(TASK, data))
    assert again["text"] == result["text"] and vision.models.loads == loads == 1
    assert vision.loaded_models() == [str(tiny_models["tiny-blip"])]


async def test_caption_base64_with_prompt(vision: VisionActivities, tiny_models: dict[str, Path]) -> None:
    image = png_bytes((50, 30), (20, 20, 200))
    data = {
        "image_base64": "data:image/png;base64," + base64.encodebytes(image).decode(),  # wrapped lines too
        "prompt": "A photo of",
        "max_new_tokens": 6,
    }
    result = await activity_env().env.run(vision.run_image_to_text_inference, task_input(TASK, data))
    assert (result["image_width"], result["image_height"], result["image_source"]) == (50, 30, "base64")
    same = Image.new("RGB", (50, 30), (20, 20, 200))
    expected, _ = await asyncio.to_thread(reference_caption, tiny_models["tiny-blip"], same, "A photo of", 6)
    # Conditional captioning: the caption continues the (lower-cased by BLIP's tokenizer) prompt.
    assert result["text"] == expected and result["text"].startswith("a photo of ")
    assert result["prompt"] == "A photo of" and 1 <= result["generated_tokens"] <= 6


class _RecordingProgress(TaskProgress):
    """Records every step; asks the run to stop once `stop_at` is reported."""

    def __init__(self, stop_at: str | None = None) -> None:
        super().__init__()
        self.steps: list[str] = []
        self._stop_at = stop_at

    def report(self, progress: float, step: str) -> None:
        super().report(progress, step)
        self.steps.append(step)
        if step == self._stop_at:
            self.request_stop("cancelled")


async def test_caption_reports_every_token_and_stops_within_one(
    vision: VisionActivities, tiny_models: dict[str, Path]
) -> None:
    model, image = str(tiny_models["tiny-blip"]), Image.new("RGB", (40, 40), (250, 250, 0))
    progress = _RecordingProgress()
    caption = await asyncio.to_thread(vision._caption, model, image, None, 8, progress)
    generating = [s for s in progress.steps if s.startswith("generating")]
    assert generating == [f"generating {i}/8" for i in range(1, caption.generated_tokens + 1)]
    assert caption.generated_tokens >= 4, "the tiny model should not end its caption this early"

    stopping = _RecordingProgress(stop_at="generating 3/8")
    with pytest.raises(TaskInterrupted):
        await asyncio.to_thread(vision._caption, model, image, None, 8, stopping)
    assert [s for s in stopping.steps if s.startswith("generating")][-1] == "generating 3/8"


async def test_caption_model_not_configured(tmp_path: Path, http_server: StaticFileServer) -> None:
    async with opened(
        VisionActivities, Settings(data_dir=tmp_path, torch_device="cpu", allow_private_urls=True)
    ) as acts:
        data = {"image_url": http_server.base_url + "/ref.png"}
        with pytest.raises(ApplicationError) as caught:
            await activity_env().env.run(acts.run_image_to_text_inference, task_input(TASK, data))
        assert caught.value.type == "ConfigurationError" and caught.value.non_retryable
        assert "CAPTION_MODEL" in str(caught.value)
        assert acts.loaded_models() == []


@pytest.mark.parametrize("model", ["missing-folder", "tiny-sd"])
async def test_caption_model_unusable(
    tiny_models: dict[str, Path], tmp_path: Path, http_server: StaticFileServer, model: str
) -> None:
    """A path that does not exist, or a model that is not a captioner (a diffusers pipeline)."""
    path = tiny_models[model] if model in tiny_models else tmp_path / model
    async with opened(
        VisionActivities, make_settings(tiny_models, tmp_path, caption_model=str(path))
    ) as acts:
        data = {"image_url": http_server.base_url + "/ref.png"}
        with pytest.raises(ApplicationError) as caught:
            await activity_env().env.run(acts.run_image_to_text_inference, task_input(TASK, data))
        assert caught.value.type == "ConfigurationError" and caught.value.non_retryable
        assert f"CAPTION_MODEL={str(path)!r}" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"image_url": "/missing.png?token=secret"}, "not found (HTTP 404)"),
        ({"image_url": "/not-an-image.png?token=secret"}, "not a decodable image"),
        ({"image_url": "/page.html?token=secret"}, "content type 'text/html'"),
        ({"image_base64": base64.b64encode(b"GIF89a, or so it says").decode()}, "image_base64 is not a"),
    ],
)
async def test_caption_bad_input_fails_cleanly(
    vision: VisionActivities, http_server: StaticFileServer, data: dict[str, str], fragment: str
) -> None:
    if "image_url" in data:
        data = {"image_url": http_server.base_url + data["image_url"]}
    with pytest.raises(ApplicationError) as caught:
        await activity_env().env.run(vision.run_image_to_text_inference, task_input(TASK, data))
    assert caught.value.type == "InvalidInput" and caught.value.non_retryable
    assert fragment in str(caught.value) and "secret" not in str(caught.value)


async def test_caption_private_url_refused(
    tiny_models: dict[str, Path], tmp_path: Path, http_server: StaticFileServer
) -> None:
    async with opened(
        VisionActivities, make_settings(tiny_models, tmp_path, allow_private_urls=False)
    ) as acts:
        data = {"image_url": http_server.base_url + "/ref.png"}
        with pytest.raises(ApplicationError) as caught:
            await activity_env().env.run(acts.run_image_to_text_inference, task_input(TASK, data))
        assert caught.value.type == "InvalidInput" and "private" in str(caught.value)
        assert acts.loaded_models() == []


def _tiny_vit_gpt2(blip_dir: Path, out: Path) -> Path:
    """A VisionEncoderDecoder (ViT + GPT-2) captioner saved like nlpconnect/vit-gpt2-image-captioning: an
    image processor and a tokenizer, but no processor class."""
    import torch
    from transformers import (
        AutoTokenizer,
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    torch.manual_seed(0)
    tokenizer: Any = AutoTokenizer.from_pretrained(blip_dir)
    tokenizer.save_pretrained(out)
    config_file = out / "tokenizer_config.json"
    config_file.write_text(
        json.dumps({k: v for k, v in json.loads(config_file.read_text()).items() if k != "processor_class"})
    )
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(out)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        ViTConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                  image_size=32, patch_size=8),
        GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=len(tokenizer), n_positions=16,
                   bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.sep_token_id),
    )  # fmt: skip
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.sep_token_id
    VisionEncoderDecoderModel(config=config).save_pretrained(out)
    return out


async def test_caption_vision_encoder_decoder_checkpoint(
    tiny_models: dict[str, Path], tmp_path: Path, http_server: StaticFileServer
) -> None:
    """ViT-GPT2-style checkpoints: image processor + tokenizer loaded apart, the prompt as decoder start,
    and max_new_tokens cut to the decoder's 16 positions."""
    folder = await asyncio.to_thread(_tiny_vit_gpt2, tiny_models["tiny-blip"], tmp_path / "vit-gpt2")
    async with opened(
        VisionActivities, make_settings(tiny_models, tmp_path, caption_model=str(folder))
    ) as acts:
        data = {"image_url": http_server.base_url + "/ref.png", "prompt": "a dog", "max_new_tokens": 40}
        result = await activity_env().env.run(acts.run_image_to_text_inference, task_input(TASK, data))
        assert (result["image_width"], result["image_height"]) == (96, 80)
        assert result["text"].startswith("a dog")
        assert result["max_new_tokens"] == 16 - 3  # [start] a dog → 13 positions left
        assert 1 <= result["generated_tokens"] <= 13
