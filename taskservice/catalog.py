"""The task catalog: every task type declared once.

API validation, the workflow's plan, worker registration, concurrency caps and the README's task-type table
derive from this table. Adding a task type means its `task_data` model, one entry here and its activity
(an `@activity.defn` method named like the type, on the class the entry names), and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from taskservice import result_fields as rf
from taskservice.assemble_data import AssembleClipData
from taskservice.contracts import RetrySpec, TaskPlan
from taskservice.queues import Queue
from taskservice.render_cache import CachePolicy
from taskservice.settings import Settings
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
    TranslateDialogueData,
)

# Error `type`s raised by activities for permanent failures; never retried.
NON_RETRYABLE_ERRORS = [
    "InvalidInput",
    "AuthenticationFailed",
    "UpstreamClientError",
    "ConfigurationError",
    "OutOfMemory",
]

# Model loading can hold the GIL for seconds on a busy CPU host: model-running types get more slack.
MODEL_HEARTBEAT_TIMEOUT_S = 30.0

# Queue timeouts from the seed's queue table (hard limit, seconds).
QUEUE_HARD_TIMEOUT_S = {
    Queue.GPU_HEAVY: 600.0,
    Queue.GPU_MEDIUM: 300.0,
    Queue.CPU_INTENSIVE: 600.0,
    Queue.DEFAULT: 120.0,
}
# The soft limit (the activity stops itself) is this share of the hard one (Temporal ends the attempt).
SOFT_TIMEOUT_SHARE = 0.9

# The classes that hold the activities, imported by workers only (the API never imports torch).
MEDIA_ACTIVITIES = "activities.media.activities:MediaActivities"
AUDIO_ACTIVITIES = "activities.audio.activities:AudioActivities"
LLM_ACTIVITIES = "activities.llm.activities:LLMActivities"
VISION_ACTIVITIES = "activities.media.vision:VisionActivities"
# What decides an LLM task's answer besides its input (reused only with `cache: reuse`).
LLM_CACHE_SETTINGS = ("llm_model", "openai_base_url")


@dataclass(frozen=True)
class ConcurrencyGroup:
    """Seed 002's cluster-wide cap: at most N tasks of the group run at once (0: no cap)."""

    name: str
    # The Settings field holding N; its environment variable is the upper-cased name.
    limit_setting: str

    def __post_init__(self) -> None:
        if self.limit_setting not in Settings.model_fields:
            raise ValueError(f"concurrency group {self.name!r}: Settings has no field {self.limit_setting!r}")

    def limit(self, settings: Settings) -> int:
        return int(getattr(settings, self.limit_setting))


IMAGE_GROUP = ConcurrencyGroup("image", "image_max_concurrent")
VIDEO_GROUP = ConcurrencyGroup("video", "video_max_concurrent")
# Every task also holds a slot of this one: the cap on all tasks, whatever their type.
TOTAL_GROUP = ConcurrencyGroup("total", "max_concurrent_tasks")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    input_model: type[BaseModel]
    queue: Queue
    # "module:Class" of the class whose method `activity_name` runs the type; it gets the worker's resources.
    activity_class: str
    estimated_duration_s: int
    # Worker death is noticed after this long; cancels still arrive within ~1 s (heartbeat throttle).
    heartbeat_timeout_s: float = 10.0
    max_attempts: int = 4
    # The activity that runs it, when several task types share one (seed 004's aliases).
    activity: str | None = None
    concurrency_group: ConcurrencyGroup | None = None
    # Only where a type needs other limits than its queue's (hard) and SOFT_TIMEOUT_SHARE of that (soft).
    hard_timeout_override_s: float | None = None
    soft_timeout_override_s: float | None = None
    # The sibling contract that adds the type, when it is not seed 001's (shown in the README).
    origin: str | None = None
    # When `cache: auto` reuses a result (taskservice/render_cache.py), and the Settings fields that decide
    # the output besides task_data (part of the content key; model settings by the model's identity).
    cache_policy: CachePolicy = CachePolicy.NEVER
    cache_settings: tuple[str, ...] = ()
    # The top-level fields of its result and their kinds (taskservice/result_fields.py): what a pipeline
    # step may reference.
    result_fields: rf.ResultFields = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.cache_settings:
            if name not in Settings.model_fields:
                raise ValueError(f"task type {self.name!r}: Settings has no field {name!r}")

    @property
    def activity_name(self) -> str:
        return self.activity or self.name

    @property
    def hard_timeout_s(self) -> float:
        if self.hard_timeout_override_s is not None:
            return self.hard_timeout_override_s
        return QUEUE_HARD_TIMEOUT_S[self.queue]

    @property
    def soft_timeout_s(self) -> float:
        if self.soft_timeout_override_s is not None:
            return self.soft_timeout_override_s
        return self.hard_timeout_s * SOFT_TIMEOUT_SHARE

    def concurrency_limits(self, settings: Settings) -> list[tuple[str, int]]:
        """(group, limit) slots a task of this type holds while it runs: its own group, then the total."""
        groups = [self.concurrency_group] if self.concurrency_group else []
        limits = [(group.name, group.limit(settings)) for group in (*groups, TOTAL_GROUP)]
        return [(name, limit) for name, limit in limits if limit > 0]

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


CATALOG: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="generate_video",
            description="Video segment from a scene description and storyboard frames.",
            input_model=GenerateVideoData,
            queue=Queue.GPU_HEAVY,
            activity_class=MEDIA_ACTIVITIES,
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=300,
            concurrency_group=VIDEO_GROUP,
            cache_policy=CachePolicy.SEEDED,
            cache_settings=("video_model", "torch_device"),
            result_fields=rf.MEDIA_RESULT,
        ),
        TaskSpec(
            name="render_animation",
            description="Character animation clip from a reference image and an action.",
            input_model=RenderAnimationData,
            queue=Queue.GPU_HEAVY,
            activity_class=MEDIA_ACTIVITIES,
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=240,
            concurrency_group=VIDEO_GROUP,
            cache_policy=CachePolicy.SEEDED,
            cache_settings=("animation_model", "torch_device"),
            result_fields=rf.MEDIA_RESULT,
        ),
        TaskSpec(
            name="generate_image",
            description="Character design, concept art or environment image.",
            input_model=GenerateImageData,
            queue=Queue.GPU_MEDIUM,
            activity_class=MEDIA_ACTIVITIES,
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=60,
            concurrency_group=IMAGE_GROUP,
            cache_policy=CachePolicy.SEEDED,
            cache_settings=("image_model", "image_reference_model", "torch_device"),
            result_fields=rf.MEDIA_RESULT,
        ),
        TaskSpec(
            name="generate_character_voice",
            description="Character dialogue synthesised from text and a voice profile.",
            input_model=GenerateCharacterVoiceData,
            queue=Queue.CPU_INTENSIVE,
            activity_class=AUDIO_ACTIVITIES,
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=20,
            cache_policy=CachePolicy.SEEDED,
            cache_settings=("tts_model",),
            result_fields=rf.AUDIO_RESULT,
        ),
        TaskSpec(
            name="process_audio",
            description="Mix tracks and apply normalize/denoise/compress/eq/trim_silence.",
            input_model=ProcessAudioData,
            queue=Queue.CPU_INTENSIVE,
            activity_class=AUDIO_ACTIVITIES,
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=25,
            cache_policy=CachePolicy.ALWAYS,
            cache_settings=(),
            result_fields=rf.AUDIO_RESULT,
        ),
        TaskSpec(
            name="assemble_clip",
            description="One MP4 (H.264 + AAC) of a video with tracks mixed under it, at its length.",
            input_model=AssembleClipData,
            queue=Queue.CPU_INTENSIVE,
            activity_class=AUDIO_ACTIVITIES,
            estimated_duration_s=30,
            cache_policy=CachePolicy.ALWAYS,
            cache_settings=(),
            result_fields=rf.MEDIA_RESULT,
        ),
        TaskSpec(
            name="evaluate_department",
            description="LLM rating of a department's gathered content against a threshold.",
            input_model=EvaluateDepartmentData,
            queue=Queue.CPU_INTENSIVE,
            activity_class=LLM_ACTIVITIES,
            estimated_duration_s=75,
            hard_timeout_override_s=300,
            cache_policy=CachePolicy.NEVER,
            cache_settings=LLM_CACHE_SETTINGS,
            result_fields=rf.EVALUATION_RESULT,
        ),
        TaskSpec(
            name="automated_gather_creation",
            description="LLM-generated gather items for a department, produced in steps.",
            input_model=AutomatedGatherCreationData,
            queue=Queue.CPU_INTENSIVE,
            activity_class=LLM_ACTIVITIES,
            estimated_duration_s=240,
            cache_policy=CachePolicy.NEVER,
            cache_settings=LLM_CACHE_SETTINGS,
            result_fields=rf.GATHER_RESULT,
        ),
        TaskSpec(
            name="test_prompt",
            description="Render a prompt template and run it once through the LLM.",
            input_model=TestPromptData,
            queue=Queue.DEFAULT,
            activity_class=LLM_ACTIVITIES,
            estimated_duration_s=10,
            cache_policy=CachePolicy.NEVER,
            cache_settings=LLM_CACHE_SETTINGS,
            result_fields=rf.TEST_PROMPT_RESULT,
        ),
        TaskSpec(
            name="translate_dialogue",
            description="Dialogue lines translated for dubbing and subtitles, in each speaker's voice.",
            input_model=TranslateDialogueData,
            queue=Queue.DEFAULT,
            activity_class=LLM_ACTIVITIES,
            estimated_duration_s=20,
            cache_policy=CachePolicy.NEVER,
            cache_settings=LLM_CACHE_SETTINGS,
            result_fields=rf.TRANSLATION_RESULT,
        ),
        # Seed 004 (task-manager) names: thin types over the same activities.
        TaskSpec(
            name="run_llm_inference",
            description="One chat completion (messages in, message out) on the configured LLM.",
            input_model=RunLLMInferenceData,
            queue=Queue.DEFAULT,
            activity_class=LLM_ACTIVITIES,
            estimated_duration_s=10,
            origin="seed 004",
            cache_policy=CachePolicy.NEVER,
            cache_settings=LLM_CACHE_SETTINGS,
            result_fields=rf.LLM_INFERENCE_RESULT,
        ),
        TaskSpec(
            name="run_sd_inference",
            description="Alias of generate_image (seed 004).",
            input_model=GenerateImageData,
            queue=Queue.GPU_MEDIUM,
            activity_class=MEDIA_ACTIVITIES,
            activity="generate_image",
            estimated_duration_s=60,
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            concurrency_group=IMAGE_GROUP,
            origin="seed 004",
            cache_policy=CachePolicy.SEEDED,
            cache_settings=("image_model", "image_reference_model", "torch_device"),
            result_fields=rf.MEDIA_RESULT,
        ),
        TaskSpec(
            name="run_tts_inference",
            description="Alias of generate_character_voice (seed 004).",
            input_model=GenerateCharacterVoiceData,
            queue=Queue.CPU_INTENSIVE,
            activity_class=AUDIO_ACTIVITIES,
            activity="generate_character_voice",
            estimated_duration_s=20,
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            origin="seed 004",
            cache_policy=CachePolicy.SEEDED,
            cache_settings=("tts_model",),
            result_fields=rf.AUDIO_RESULT,
        ),
        TaskSpec(
            name="run_image_to_text_inference",
            description="Caption of an image (URL or base64), optionally continuing a prompt (seed 004).",
            input_model=RunImageToTextInferenceData,
            queue=Queue.GPU_MEDIUM,
            activity_class=VISION_ACTIVITIES,
            heartbeat_timeout_s=MODEL_HEARTBEAT_TIMEOUT_S,
            estimated_duration_s=10,
            origin="seed 004",
            cache_policy=CachePolicy.NEVER,
            cache_settings=("caption_model", "torch_device"),
            result_fields=rf.CAPTION_RESULT,
        ),
    )
}


# Every capped group (the catalog's own plus the cluster-wide total); each has a limiter workflow.
CONCURRENCY_GROUPS = (
    *sorted({spec.concurrency_group.name for spec in CATALOG.values() if spec.concurrency_group}),
    TOTAL_GROUP.name,
)


def specs_for_queue(queue: Queue) -> list[TaskSpec]:
    return [spec for spec in CATALOG.values() if spec.queue == queue]
