"""The catalog is the one place a task type is declared: timeouts, inputs, caps and worker registration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from activities.resources import WorkerResources
from taskservice.catalog import (
    CATALOG,
    LLM_ACTIVITIES,
    QUEUE_HARD_TIMEOUT_S,
    ConcurrencyGroup,
    TaskSpec,
    specs_for_queue,
)
from taskservice.queues import Queue
from taskservice.settings import Settings
from taskservice.task_data import GenerateVideoData, RenderAnimationData, TestPromptData
from workers.registry import MissingActivityError, build_queue_activities

# (soft, hard) seconds of every type as the seeds' queue table sets them.
TIMEOUTS = {
    "generate_video": (540, 600),
    "render_animation": (540, 600),
    "generate_image": (270, 300),
    "generate_character_voice": (540, 600),
    "process_audio": (540, 600),
    "assemble_clip": (540, 600),
    "evaluate_department": (270, 300),
    "automated_gather_creation": (540, 600),
    "test_prompt": (108, 120),
    "translate_dialogue": (108, 120),
    "run_llm_inference": (108, 120),
    "run_sd_inference": (270, 300),
    "run_tts_inference": (540, 600),
    "run_image_to_text_inference": (270, 300),
}


@pytest.fixture
async def resources(tmp_path: Path) -> AsyncIterator[WorkerResources]:
    async with WorkerResources.open(Settings(data_dir=tmp_path)) as opened:
        yield opened


def test_timeouts_default_from_the_queue() -> None:
    assert {name: (spec.soft_timeout_s, spec.hard_timeout_s) for name, spec in CATALOG.items()} == TIMEOUTS
    for spec in CATALOG.values():
        if spec.hard_timeout_override_s is None:
            assert spec.hard_timeout_s == QUEUE_HARD_TIMEOUT_S[spec.queue]
        assert spec.soft_timeout_s == pytest.approx(0.9 * spec.hard_timeout_s)
    plan = CATALOG["evaluate_department"].plan(60.0)
    assert (plan.soft_timeout_s, plan.hard_timeout_s, plan.queue) == (270, 300, "cpu_intensive")


def test_video_inputs_are_declared_and_checked_at_submit() -> None:
    for model, required in ((GenerateVideoData, "scene_description"), (RenderAnimationData, "action")):
        assert {"quality", "num_inference_steps"} <= set(model.model_fields)
        data = model.model_validate({required: "x"})
        assert (data.quality, data.num_inference_steps) == ("standard", None)
        assert model.model_validate({required: "x", "quality": "draft", "num_inference_steps": 150})
        for bad in ({"quality": "perfect"}, {"num_inference_steps": 0}, {"num_inference_steps": 151},
                    {"num_inference_steps": 2.0}, {"num_inference_steps": True}):  # fmt: skip
            with pytest.raises(ValidationError):
                model.model_validate({required: "x", **bad})


def test_a_concurrency_group_names_a_settings_field() -> None:
    assert ConcurrencyGroup("image", "image_max_concurrent").limit(Settings(image_max_concurrent=7)) == 7
    with pytest.raises(ValueError, match="no field 'image_max_concurent'"):
        ConcurrencyGroup("image", "image_max_concurent")


@pytest.mark.parametrize("queue", list(Queue))
async def test_every_entry_of_a_queue_has_its_activity(resources: WorkerResources, queue: Queue) -> None:
    built = build_queue_activities(resources, specs_for_queue(queue))
    try:
        names = {function.__name__ for function in built.functions}
        assert names == {spec.activity_name for spec in specs_for_queue(queue)}
    finally:
        await built.aclose()


async def test_worker_refuses_an_entry_without_activity(resources: WorkerResources) -> None:
    orphan = TaskSpec(
        name="summarize_text",
        description="An entry whose activity was never written.",
        input_model=TestPromptData,
        queue=Queue.DEFAULT,
        activity_class=LLM_ACTIVITIES,
        estimated_duration_s=10,
    )
    with pytest.raises(MissingActivityError) as caught:
        build_queue_activities(resources, [*specs_for_queue(Queue.DEFAULT), orphan])
    message = str(caught.value)
    assert "'summarize_text'" in message and "queue 'default'" in message
    assert "activity 'summarize_text'" in message and LLM_ACTIVITIES in message

    misplaced = TaskSpec(
        name="test_prompt_v2",
        description="An entry naming a class its module does not define.",
        input_model=TestPromptData,
        queue=Queue.DEFAULT,
        activity_class="activities.llm.activities:PromptActivities",
        estimated_duration_s=10,
        activity="test_prompt",
    )
    with pytest.raises(MissingActivityError, match="no TaskActivities class 'PromptActivities'"):
        build_queue_activities(resources, [misplaced])
