"""The speed options on the tiny SD pipeline: applied when a pipeline loads (channels-last, attention, CPU
offload asked on a CPU), per call (VAE slicing and tiling by size), and the device gate's cancellable wait."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from activities.media.activities import MediaActivities
from activities.media.device import DeviceGate, SpeedOptions, prepare_call
from activities.runtime import TaskInterrupted
from tests.support.media import activity_env, make_settings, task_input
from tests.support.worker_resources import opened

DATA = {"prompt": "a fox", "resolution": "64x64", "num_inference_steps": 2, "seed": 3}


async def test_load_time_options_reach_the_denoiser(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import torch
    from diffusers.models.attention_processor import AttnProcessor

    settings = make_settings(
        tiny_models, tmp_path, channels_last=True, attention_backend="classic", model_cpu_offload="model"
    )
    async with opened(MediaActivities, settings) as acts:
        result = await activity_env().env.run(acts.generate_image, task_input("generate_image", DATA))
        assert result["metadata"]["batch_size"] == 1
        unet = acts.models.text_to_image(str(tiny_models["tiny-sd"])).unet
    convolution = unet.conv_in.weight
    assert convolution.is_contiguous(memory_format=torch.channels_last)
    assert all(isinstance(p, AttnProcessor) for p in unet.attn_processors.values())
    # Offload needs a GPU: on this CPU the pipeline simply runs there (a warning says so).
    assert convolution.device.type == "cpu"


async def test_vae_slicing_and_tiling_follow_what_each_call_decodes(tiny_models: dict[str, Path]) -> None:
    from diffusers import StableDiffusionPipeline

    pipe: Any = StableDiffusionPipeline.from_pretrained(tiny_models["tiny-sd"])
    options = SpeedOptions(vae_slicing_above=2, vae_tiling_above_pixels=64 * 64)
    prepare_call(pipe, options, images=3, width=72, height=64)
    assert (pipe.vae.use_slicing, pipe.vae.use_tiling) == (True, True)
    prepare_call(pipe, options, images=2, width=64, height=64)
    assert (pipe.vae.use_slicing, pipe.vae.use_tiling) == (False, False)


def test_a_task_waiting_for_the_device_stops_when_asked() -> None:
    gate = DeviceGate()
    stop = threading.Event()
    waits: list[str] = []
    with gate.hold(lambda: False):
        outcome: list[BaseException] = []

        def waiter() -> None:
            try:
                with gate.hold(stop.is_set, on_wait=lambda: waits.append("waiting")):
                    pass
            except TaskInterrupted as err:
                outcome.append(err)

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.2)
        stop.set()
        thread.join(2)
    assert waits == ["waiting"] and len(outcome) == 1
    with gate.hold(lambda: False):  # released by the holder, never by the waiter that gave up
        pass


@pytest.mark.heavy
async def test_torch_compile_compiles_once_per_shape_and_reports_it(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """TORCH_COMPILE on a CPU (needs a C++ compiler): minutes on a loaded machine, hence heavy."""
    settings = make_settings(tiny_models, tmp_path, torch_compile=True)
    async with opened(MediaActivities, settings) as acts:
        for seed in (1, 2):
            data = {**DATA, "seed": seed}
            task = task_input("generate_image", data, soft_timeout_s=1800)
            await activity_env().env.run(acts.generate_image, task)
            if seed == 1:
                first = acts.models.compile_seconds
        assert first > 0
        assert acts.models.compile_seconds == first  # same shape: compiled once
        assert acts.model_stats()["compile_seconds"] == first
