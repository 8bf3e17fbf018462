"""Image tasks batched on one pipeline call (IMAGE_MAX_BATCH), on the tiny SD pipeline, through the SDK's
ActivityEnvironment: same images as alone, own progress, one task cancelled or timed out while the rest
finish, a failing batch retried task by task."""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.media import batch as media_batch
from activities.media.activities import MediaActivities
from activities.media.tools import StepEvent
from tests.support.media import StepRecorder, activity_env, assert_progress, make_settings, task_input
from tests.support.worker_resources import opened

STEPS = 12
# Wide enough that four tasks started together always meet, even on a loaded 2-core machine.
WINDOW_MS = 400.0
PROMPTS = ["a red fox", "a blue whale in the deep", "a lighthouse", "an old oak tree"]


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batching")


@pytest.fixture(scope="module")
def batch_steps() -> StepRecorder:
    return StepRecorder()


@pytest.fixture(scope="module")
async def batching(
    tiny_models: dict[str, Path], batch_dir: Path, batch_steps: StepRecorder
) -> AsyncIterator[MediaActivities]:
    """Media activities of one worker process with batches of up to four."""
    settings = make_settings(tiny_models, batch_dir, image_max_batch=4, image_batch_window_ms=WINDOW_MS)
    async with opened(MediaActivities, settings, step_observer=batch_steps) as acts:
        yield acts


@pytest.fixture(autouse=True)
def _reset(batch_steps: StepRecorder) -> None:
    batch_steps.reset()


def _data(index: int, **extra: Any) -> dict[str, Any]:
    return {
        "prompt": PROMPTS[index],
        "resolution": "64x64",
        "num_inference_steps": STEPS,
        "seed": 1000 + index,
        **({"negative_prompt": "blurry"} if index == 1 else {}),
        **extra,
    }


def _pixels(batch_dir: Path, task_id: str) -> np.ndarray[Any, Any]:
    with Image.open(batch_dir / "media" / f"proj_media/generate_image/{task_id}.png") as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


async def _alone(acts: MediaActivities, index: int, task_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await activity_env().env.run(
        acts.generate_image, task_input("generate_image", _data(index), task_id=task_id)
    )
    return result


def _recipe(metadata: dict[str, Any]) -> dict[str, Any]:
    measured = ("file_size", "storage_key", "cpu_seconds", "model_load_s", "provenance")
    recipe = {k: v for k, v in metadata.items() if k not in measured}
    recipe["provenance"] = {k: v for k, v in metadata["provenance"].items() if k != "output_sha256"}
    return recipe


def _assert_twins(batch_dir: Path, batched: str, alone: str) -> None:
    """A batched image equals its unbatched twin to float rounding (one level of 255 at most)."""
    difference = np.abs(_pixels(batch_dir, batched) - _pixels(batch_dir, alone))
    assert int(difference.max()) <= 1, f"{batched} differs from {alone} by up to {difference.max()}/255"


async def test_four_same_shape_tasks_run_as_one_batch_and_match_their_twins(
    batching: MediaActivities, batch_dir: Path, batch_steps: StepRecorder
) -> None:
    await _alone(batching, 0, "warm")  # load the pipeline first: the batch below measures only itself
    batches, batched_tasks = batching.images.batches, batching.images.batched_tasks
    runs = [activity_env() for _ in PROMPTS]
    results = await asyncio.gather(
        *(
            run.env.run(batching.generate_image, task_input("generate_image", _data(i), task_id=f"b{i}"))
            for i, run in enumerate(runs)
        )
    )
    assert (batching.images.batches, batching.images.batched_tasks) == (batches + 1, batched_tasks + 4)
    for run, result in zip(runs, results, strict=True):
        assert result["metadata"]["batch_size"] == 4
        assert_progress(run.heartbeats)
    # Each task reported its own steps, 1..N.
    for i in range(4):
        assert [e.step for e in batch_steps.events if e.task_id == f"b{i}"] == list(range(1, STEPS + 1))
    for i, result in enumerate(results):
        twin = await _alone(batching, i, f"alone{i}")
        assert twin["metadata"]["batch_size"] == 1
        # Exactly an unbatched task's result, plus batch_size; the same recipe in the provenance. What was
        # measured (file bytes, CPU time) and the output's own hash (pixels equal to one level) may differ.
        expected, got = _recipe(twin["metadata"]), _recipe(result["metadata"])
        assert got == {**expected, "batch_size": 4}
        _assert_twins(batch_dir, f"b{i}", f"alone{i}")


def _cancel_at(
    batch_steps: StepRecorder, task_id: str, step: int, env: ActivityEnvironment
) -> Callable[[StepEvent], None]:
    loop = asyncio.get_running_loop()
    fired: list[float] = []

    def on_event(event: StepEvent) -> None:
        if event.task_id == task_id and event.step == step and not fired:
            fired.append(event.at)
            loop.call_soon_threadsafe(env.cancel)

    return on_event


@pytest.mark.parametrize(
    ("scheduler", "cut"),
    [
        ("DDIMScheduler", True),  # the tiny model's own
        ("PNDMScheduler", True),  # keeps earlier model outputs: its state is cut too
        ("DPMSolverMultistepScheduler", True),
        ("EulerAncestralDiscreteScheduler", True),  # draws noise every step from each task's generator
        # A pipeline whose rows cannot be cut: the stopped task's sample is computed and dropped.
        ("DDIMScheduler", False),
    ],
)
async def test_a_cancelled_task_leaves_the_batch_and_the_others_complete(
    tiny_models: dict[str, Path],
    tmp_path: Path,
    batch_steps: StepRecorder,
    scheduler: str,
    cut: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not cut:
        monkeypatch.setattr(media_batch, "_ROW_CUTTABLE", frozenset())
    model = _with_scheduler(tiny_models["tiny-sd"], tmp_path / "model", scheduler)
    settings = make_settings(
        tiny_models, tmp_path, image_model=str(model), image_max_batch=4, image_batch_window_ms=WINDOW_MS
    )
    async with opened(MediaActivities, settings, step_observer=batch_steps) as acts:
        await _alone(acts, 0, "warm")
        runs = [activity_env() for _ in PROMPTS]
        batch_steps.on_event = _cancel_at(batch_steps, "c2", 3, runs[2].env)
        outcomes = await asyncio.gather(
            *(
                run.env.run(acts.generate_image, task_input("generate_image", _data(i), task_id=f"c{i}"))
                for i, run in enumerate(runs)
            ),
            return_exceptions=True,
        )
        assert isinstance(outcomes[2], asyncio.CancelledError), outcomes[2]
        batched = {i: [e.step for e in batch_steps.events if e.task_id == f"c{i}"] for i in (0, 1, 3)}
        for i in (0, 1, 3):
            result = outcomes[i]
            assert isinstance(result, dict), result
            assert result["metadata"]["batch_size"] == 4
        # The cancelled task left at the step after the one its cancel arrived in (the cancel reaches the
        # activity by heartbeat, within ~1 s: a few steps of this tiny model at most).
        cancelled = [e for e in batch_steps.events if e.task_id == "c2"]
        assert cancelled[-1].stopping and cancelled[-1].step < STEPS
        assert not (tmp_path / "media" / "proj_media/generate_image/c2.png").exists()
        batch_steps.reset()
        for i in (0, 1, 3):
            await _alone(acts, i, f"alone{i}")
            _assert_twins(tmp_path, f"c{i}", f"alone{i}")
            # Every step of the call reached the task, as alone (PNDM's schedule repeats its last step).
            assert batched[i] == [e.step for e in batch_steps.events if e.task_id == f"alone{i}"]
            assert batched[i][-1] == STEPS


def _with_scheduler(source: Path, target: Path, scheduler: str) -> Path:
    """A copy of the tiny pipeline whose scheduler is another diffusers class (same betas)."""
    import diffusers

    shutil.copytree(source, target)
    config_path = target / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    getattr(diffusers, scheduler).from_config(config).save_pretrained(target / "scheduler")
    index = json.loads((target / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", scheduler]
    (target / "model_index.json").write_text(json.dumps(index))
    return target


async def test_a_task_past_its_soft_limit_leaves_the_batch(
    batching: MediaActivities, batch_dir: Path, batch_steps: StepRecorder
) -> None:
    await _alone(batching, 0, "warm")
    # Time one step of a batch of four here and now, to set the soft limit a few steps into the next one.
    started = time.perf_counter()
    await asyncio.gather(*(_alone(batching, i, f"probe{i}") for i in range(4)))
    per_step = (time.perf_counter() - started - WINDOW_MS / 1000) / STEPS
    limit = WINDOW_MS / 1000 + 4 * per_step
    steps = 4 * STEPS
    tasks = [
        task_input(
            "generate_image",
            _data(i, num_inference_steps=steps),
            task_id=f"s{i}",
            soft_timeout_s=limit if i == 0 else 600.0,
        )
        for i in range(4)
    ]
    outcomes = await asyncio.gather(
        *(activity_env().env.run(batching.generate_image, task) for task in tasks), return_exceptions=True
    )
    timed_out = outcomes[0]
    assert isinstance(timed_out, ApplicationError) and timed_out.type == "SoftTimeLimitExceeded", timed_out
    own = [e.step for e in batch_steps.events if e.task_id == "s0"]
    assert own and own[-1] < steps, "the task was in the batch's call, and left it before the end"
    for outcome in outcomes[1:]:
        assert isinstance(outcome, dict) and outcome["metadata"]["batch_size"] == 4, outcome


async def test_a_failing_batch_runs_its_tasks_alone(
    batching: MediaActivities, batch_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One task whose input breaks the pipeline (here: as a batch of four breaks a too-small GPU) fails
    alone; its neighbours, retried one by one, complete."""
    await _alone(batching, 0, "warm")
    pipeline_class = type(batching.models.text_to_image(str(batching.models.loaded_models()[0])))
    original = pipeline_class.__call__

    @functools.wraps(original)
    def breaking(self: Any, *args: Any, **kwargs: Any) -> Any:
        prompts = kwargs["prompt"]
        if any("poison" in p for p in prompts):
            raise RuntimeError("CUDA out of memory (injected)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pipeline_class, "__call__", breaking)
    data = [_data(0), _data(1), _data(2, prompt="poison apple"), _data(3)]
    outcomes = await asyncio.gather(
        *(
            activity_env().env.run(batching.generate_image, task_input("generate_image", d, task_id=f"f{i}"))
            for i, d in enumerate(data)
        ),
        return_exceptions=True,
    )
    assert isinstance(outcomes[2], RuntimeError) and "injected" in str(outcomes[2])
    for i in (0, 1, 3):
        outcome = outcomes[i]
        assert isinstance(outcome, dict) and outcome["metadata"]["batch_size"] == 1, outcome
    monkeypatch.undo()
    for i in (0, 1, 3):
        await _alone(batching, i, f"alone{i}")
        _assert_twins(batch_dir, f"f{i}", f"alone{i}")
