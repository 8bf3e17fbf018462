"""The task catalog: every task type declared once.

API validation, the workflow's plan, worker registration and the README derive from this table.
Adding a task type means one entry here, one activity module, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from taskservice.contracts import RetrySpec, TaskPlan
from taskservice.queues import Queue
from taskservice.task_data import (
    AutomatedGatherCreationData,
    EvaluateDepartmentData,
    GenerateCharacterVoiceData,
    GenerateImageData,
    GenerateVideoData,
    ProcessAudioData,
    RenderAnimationData,
    RunImageToTextInferenceData,
    RunLLMInferenceData,
    TestPromptData,
)

# Error `type`s raised by activities for permanent failures; never retried.
NON_RETRYABLE_ERRORS = [
    "InvalidInput",
    "AuthenticationFailed",
    "UpstreamClientError",
    "ConfigurationError",
]

# Model loading can hold the GIL for seconds on a busy CPU host: model-running types get more slack.
MODEL_HEARTBEAT_TIMEOUT_S = 30.0

# Queue timeouts from the seed's queue table (hard limit, seconds); soft = 90 % of hard.
QUEUE_HARD_TIMEOUT_S = {
    Queue.GPU_HEAVY: 600.0,
    Queue.GPU_MEDIUM: 300.0,
    Queue.CPU_INTENSIVE: 600.0,
    Queue.DEFAULT: 120.0,
}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    input_model: type[BaseModel]
    queue: Queue
    activity_module: str
    estimated_duration_s: int
    soft_timeout_s: float
    hard_timeout_s: float
    # Worker death is noticed after this long; cancels still arrive within ~1 s (heartbeat throttle).
    heartbeat_timeout_s: float = 10.0
    max_attempts: int = 4
    # The activity that runs it, when several task types share one (seed 004's aliases).
    activity: str | None = None
    # Seed 002's cluster-wide caps: at most N tasks of a group run at once (IMAGE_/VIDEO_MAX_CONCURRENT).
    concurrency_group: str | None = None

    @property
    def activity_name(self) -> str:
        return self.activity or self.name

    def plan(self, retry_initial_interval_s: float) -> TaskPlan:
        return TaskPlan(
            activity=self.activity_name,
            queue=self.queue.value,
            soft_timeout_s=self.soft_timeout_s,
            hard_timeout_s=self.hard_timeout_s,
            heartbeat_timeout_s=self.heartbeat_timeout_s,
            retry=RetrySpec(
                initial_interval_s=retry_initial_interval_s,
                maximum_attempts=self.max_attempts,
                non_retryable_error_types=list(NON_RETRYABLE_ERRORS),
            ),
        )


def _soft(queue: Queue) -> float:
    return QUEUE_HARD_TIMEOUT_S[queue] * 0.9


CATALOG: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="generate_video",
            description="Video segment from a scene description and storyboard frames.",
            input_model=GenerateVideoData,
            queue=Queue.GPU_HEAVY,
            activity_module="activities.media",
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=300,
            soft_timeout_s=540,
            hard_timeout_s=600,
            concurrency_group="video",
        ),
        TaskSpec(
            name="render_animation",
            description="Character animation clip from a reference image and an action.",
            input_model=RenderAnimationData,
            queue=Queue.GPU_HEAVY,
            activity_module="activities.media",
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=240,
            soft_timeout_s=_soft(Queue.GPU_HEAVY),
            hard_timeout_s=QUEUE_HARD_TIMEOUT_S[Queue.GPU_HEAVY],
            concurrency_group="video",
        ),
        TaskSpec(
            name="generate_image",
            description="Character design, concept art or environment image.",
            input_model=GenerateImageData,
            queue=Queue.GPU_MEDIUM,
            activity_module="activities.media",
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=60,
            soft_timeout_s=270,
            hard_timeout_s=300,
            concurrency_group="image",
        ),
        TaskSpec(
            name="generate_character_voice",
            description="Character dialogue synthesised from text and a voice profile.",
            input_model=GenerateCharacterVoiceData,
            queue=Queue.CPU_INTENSIVE,
            activity_module="activities.audio",
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=20,
            soft_timeout_s=_soft(Queue.CPU_INTENSIVE),
            hard_timeout_s=QUEUE_HARD_TIMEOUT_S[Queue.CPU_INTENSIVE],
        ),
        TaskSpec(
            name="process_audio",
            description="Mix tracks and apply normalize/denoise/compress/eq/trim_silence.",
            input_model=ProcessAudioData,
            queue=Queue.CPU_INTENSIVE,
            activity_module="activities.audio",
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=25,
            soft_timeout_s=_soft(Queue.CPU_INTENSIVE),
            hard_timeout_s=QUEUE_HARD_TIMEOUT_S[Queue.CPU_INTENSIVE],
        ),
        TaskSpec(
            name="evaluate_department",
            description="LLM rating of a department's gathered content against a threshold.",
            input_model=EvaluateDepartmentData,
            queue=Queue.CPU_INTENSIVE,
            activity_module="activities.llm",
            estimated_duration_s=75,
            soft_timeout_s=270,
            hard_timeout_s=300,
        ),
        TaskSpec(
            name="automated_gather_creation",
            description="LLM-generated gather items for a department, produced in steps.",
            input_model=AutomatedGatherCreationData,
            queue=Queue.CPU_INTENSIVE,
            activity_module="activities.llm",
            estimated_duration_s=240,
            soft_timeout_s=540,
            hard_timeout_s=600,
        ),
        TaskSpec(
            name="test_prompt",
            description="Render a prompt template and run it once through the LLM.",
            input_model=TestPromptData,
            queue=Queue.DEFAULT,
            activity_module="activities.llm",
            estimated_duration_s=10,
            soft_timeout_s=_soft(Queue.DEFAULT),
            hard_timeout_s=QUEUE_HARD_TIMEOUT_S[Queue.DEFAULT],
        ),
        # Seed 004 (task-manager) names: thin types over the same activities.
        TaskSpec(
            name="run_llm_inference",
            description="One chat completion (messages in, message out) on the configured LLM.",
            input_model=RunLLMInferenceData,
            queue=Queue.DEFAULT,
            activity_module="activities.llm",
            estimated_duration_s=10,
            soft_timeout_s=_soft(Queue.DEFAULT),
            hard_timeout_s=QUEUE_HARD_TIMEOUT_S[Queue.DEFAULT],
        ),
        TaskSpec(
            name="run_sd_inference",
            description="Alias of generate_image (seed 004).",
            input_model=GenerateImageData,
            queue=Queue.GPU_MEDIUM,
            activity_module="activities.media",
            activity="generate_image",
            estimated_duration_s=60,
            soft_timeout_s=270,
            hard_timeout_s=300,
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            concurrency_group="image",
        ),
        TaskSpec(
            name="run_tts_inference",
            description="Alias of generate_character_voice (seed 004).",
            input_model=GenerateCharacterVoiceData,
            queue=Queue.CPU_INTENSIVE,
            activity_module="activities.audio",
            activity="generate_character_voice",
            estimated_duration_s=20,
            soft_timeout_s=_soft(Queue.CPU_INTENSIVE),
            hard_timeout_s=QUEUE_HARD_TIMEOUT_S[Queue.CPU_INTENSIVE],
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
        ),
        TaskSpec(
            name="run_image_to_text_inference",
            description="Caption of an image (URL or base64), optionally continuing a prompt (seed 004).",
            input_model=RunImageToTextInferenceData,
            queue=Queue.GPU_MEDIUM,
            activity_module="activities.vision",
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=10,
            soft_timeout_s=_soft(Queue.GPU_MEDIUM),
            hard_timeout_s=QUEUE_HARD_TIMEOUT_S[Queue.GPU_MEDIUM],
        ),
    )
}


# Every capped group (the catalog's own plus the cluster-wide total); each has a *_MAX_CONCURRENT setting.
CONCURRENCY_GROUPS = (
    *sorted({spec.concurrency_group for spec in CATALOG.values() if spec.concurrency_group}),
    "total",
)


def specs_for_queue(queue: Queue) -> list[TaskSpec]:
    return [spec for spec in CATALOG.values() if spec.queue == queue]
