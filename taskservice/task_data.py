"""Pydantic models of `task_data`, one per task type, validated at submit (400 on failure)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

_RESOLUTION = re.compile(r"^(\d{2,5})x(\d{2,5})$")
_TEMPLATE_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/?#]+", value, flags=re.IGNORECASE):
        raise ValueError("must be an http(s) URL")
    return value


def _resolution(value: str) -> str:
    match = _RESOLUTION.match(value)
    if not match:
        raise ValueError("must look like WIDTHxHEIGHT, e.g. 1024x576")
    width, height = int(match.group(1)), int(match.group(2))
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise ValueError("width and height must be between 16 and 4096")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Resolution = Annotated[str, AfterValidator(_resolution)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class TaskData(BaseModel):
    """Base of every task_data model: unknown keys are kept (Aladdin sends extra context)."""

    model_config = ConfigDict(extra="allow")


class CharacterPosition(BaseModel):
    model_config = ConfigDict(extra="allow")
    character_id: str
    position: str | None = None
    action: str | None = None


class GenerateVideoData(TaskData):
    storyboard_images: list[HttpUrl] = Field(default_factory=list, max_length=16)
    scene_description: str = Field(min_length=1, max_length=4000)
    camera_angle: str | None = None
    lighting: str | None = None
    character_positions: list[CharacterPosition] = Field(default_factory=list)
    duration: float = Field(7.0, ge=1, le=30, description="Seconds, 1-30.")
    fps: int = Field(24, ge=1, le=60)
    resolution: Resolution = "1280x720"
    seed: Seed | None = None
    negative_prompt: str | None = None


Quality = Literal["draft", "standard", "high", "ultra"]


class GenerateImageData(TaskData):
    prompt: str = Field(min_length=1, max_length=4000)
    style_guide: HttpUrl | None = None
    reference_images: list[HttpUrl] = Field(default_factory=list, max_length=8)
    character_id: str | None = None
    pose: str | None = None
    lighting: str | None = None
    resolution: Resolution = "1024x1024"
    quality: Quality = "standard"
    seed: Seed | None = None
    negative_prompt: str | None = None


class RenderAnimationData(TaskData):
    character_reference_image: HttpUrl | None = None
    action: str = Field(min_length=1, max_length=2000, description="What the character does.")
    character_id: str | None = None
    style: str | None = None
    duration: float = Field(4.0, ge=1, le=30)
    fps: int = Field(12, ge=1, le=60)
    resolution: Resolution = "512x512"
    seed: Seed | None = None
    negative_prompt: str | None = None


Emotion = Literal[
    "neutral", "happy", "sad", "angry", "fearful", "surprised", "mysterious", "calm", "excited", "whisper"
]
Pace = Literal["slow", "normal", "fast"]
AudioFormat = Literal["mp3", "wav", "ogg", "flac"]
SampleRate = Literal[8000, 16000, 22050, 24000, 32000, 44100, 48000]


def _ambience(value: str) -> str:
    name = value.removesuffix("_ambience").removesuffix("_noise")
    if name not in ("none", "rain", "crowd", "wind", "room"):
        raise ValueError("must be one of none, rain, crowd, wind, room (a `_ambience` suffix is accepted)")
    return name


class GenerateCharacterVoiceData(TaskData):
    text: str = Field(min_length=1, max_length=5000)
    character_voice_profile: HttpUrl | None = None
    emotion: Emotion = "neutral"
    pace: Pace = "normal"
    background_noise: Annotated[str, AfterValidator(_ambience)] = "none"
    output_format: AudioFormat = "mp3"
    sample_rate: SampleRate = 44100


class TrimSpec(BaseModel):
    start_s: float = Field(0.0, ge=0)
    end_s: float | None = Field(None, gt=0)


class AudioTrack(BaseModel):
    url: HttpUrl
    gain_db: float = Field(0.0, ge=-60, le=24)
    offset_s: float = Field(0.0, ge=0, le=3600)
    fade_in_s: float | None = Field(None, ge=0, le=60)
    fade_out_s: float | None = Field(None, ge=0, le=60)
    trim: TrimSpec | None = None


class NormalizeOp(BaseModel):
    type: Literal["normalize"]
    target_lufs: float = Field(-16.0, ge=-40, le=-5)


class DenoiseOp(BaseModel):
    type: Literal["denoise"]
    strength: Literal["light", "medium", "strong"] = "medium"


class CompressOp(BaseModel):
    type: Literal["compress"]
    preset: Literal["gentle", "voice", "broadcast"] = "voice"


class EqOp(BaseModel):
    type: Literal["eq"]
    preset: Literal["voice", "warm", "bright", "bass_boost", "telephone"] = "voice"


class TrimSilenceOp(BaseModel):
    type: Literal["trim_silence"]
    threshold_db: float = Field(-50.0, ge=-90, le=-10)


AudioOperation = Annotated[
    NormalizeOp | DenoiseOp | CompressOp | EqOp | TrimSilenceOp, Field(discriminator="type")
]


class ProcessAudioData(TaskData):
    tracks: list[AudioTrack] = Field(min_length=1, max_length=16)
    operations: list[AudioOperation] = Field(default_factory=list, max_length=16)
    output_format: AudioFormat = "mp3"
    sample_rate: SampleRate = 44100

    @model_validator(mode="before")
    @classmethod
    def _bare_operation_names(cls, data: Any) -> Any:
        """Accept `"normalize"` as shorthand for `{"type": "normalize"}`."""
        if isinstance(data, dict) and isinstance(data.get("operations"), list):
            data = {
                **data,
                "operations": [{"type": o} if isinstance(o, str) else o for o in data["operations"]],
            }
        return data


class GatherItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    content: str = Field(max_length=50_000)
    summary: str | None = None
    context: str | None = None


class PreviousEvaluation(BaseModel):
    model_config = ConfigDict(extra="allow")
    department: str
    rating: int | None = Field(None, ge=0, le=100)
    summary: str | None = None


class EvaluateDepartmentData(TaskData):
    department_slug: str = Field(min_length=1, max_length=100)
    department_number: int = Field(ge=1, le=12)
    gather_data: list[GatherItem] = Field(max_length=500)
    previous_evaluations: list[PreviousEvaluation] = Field(default_factory=list)
    threshold: int = Field(80, ge=0, le=100)


class AutomatedGatherCreationData(TaskData):
    department_slug: str = Field(min_length=1, max_length=100)
    department_number: int | None = Field(None, ge=1, le=12)
    project_title: str | None = Field(None, max_length=500)
    project_brief: str = Field(min_length=1, max_length=20_000, description="What the project is about.")
    existing_gather_data: list[GatherItem] = Field(default_factory=list, max_length=200)
    focus_areas: list[str] = Field(default_factory=list, max_length=20)
    target_items: int = Field(5, ge=1, le=20, description="How many gather items to create.")


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)


class RunLLMInferenceData(TaskData):
    """Seed 004's run_llm_inference: a chat completion through the OpenAI-compatible client."""

    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=200)
    prompt: str | None = Field(None, max_length=100_000, description="Shorthand for one user message.")
    model: str | None = Field(None, description="Overrides LLM_MODEL.")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=32_000)

    @model_validator(mode="after")
    def _messages_or_prompt(self) -> RunLLMInferenceData:
        if not self.messages and not self.prompt:
            raise ValueError("give `messages` or `prompt`")
        return self

    def chat(self) -> list[dict[str, str]]:
        if self.messages:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]


# Base64 images travel inside the workflow's input, which Temporal caps at 2 MB: larger ones go by URL.
IMAGE_BASE64_MAX_CHARS = 1_500_000
_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,", flags=re.IGNORECASE)


def _base64_image(value: str) -> str:
    """Accept plain or `data:image/...;base64,` text (line breaks allowed); keep the bare base64."""
    value = "".join(_DATA_URL.sub("", value.strip(), count=1).split())
    try:
        decoded = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("must be base64 (optionally a data:image/...;base64, URL)") from None
    if not decoded:
        raise ValueError("is empty")
    return value


Base64Image = Annotated[str, Field(max_length=IMAGE_BASE64_MAX_CHARS), AfterValidator(_base64_image)]


class RunImageToTextInferenceData(TaskData):
    """Seed 004's run_image_to_text_inference: a caption of one image, by CAPTION_MODEL."""

    image_url: HttpUrl | None = Field(None, description="The image to caption (fetched like media inputs).")
    image_base64: Base64Image | None = Field(
        None, description="The image itself, base64 (or a data: URL); larger ones by `image_url`."
    )
    prompt: str | None = Field(
        None, max_length=500, description="Start of the caption (conditional captioning), e.g. 'a photo of'."
    )
    max_new_tokens: int = Field(40, ge=1, le=256, description="Most tokens generated after the prompt.")

    @model_validator(mode="after")
    def _one_image(self) -> RunImageToTextInferenceData:
        if (self.image_url is None) == (self.image_base64 is None):
            raise ValueError("give exactly one of `image_url` or `image_base64`")
        return self


class TestPromptData(TaskData):
    __test__ = False  # not a pytest class, despite the name

    prompt_id: str | None = None
    prompt_template: str = Field(min_length=1, max_length=50_000)
    agent_type: str | None = None
    test_parameters: dict[str, Any] = Field(default_factory=dict)
    test_result_id: str | None = None
    system_prompt: str | None = Field(None, max_length=20_000)
    model: str | None = Field(None, description="Overrides LLM_MODEL for this test.")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=32_000)

    @model_validator(mode="after")
    def _every_variable_has_a_value(self) -> TestPromptData:
        missing = [v for v in template_variables(self.prompt_template) if v not in self.test_parameters]
        if missing:
            raise ValueError(
                f"test_parameters lacks a value for {', '.join('{{' + m + '}}' for m in missing)}"
            )
        return self


def template_variables(template: str) -> list[str]:
    """Names of `{{var}}` placeholders, in order of first appearance."""
    return list(dict.fromkeys(_TEMPLATE_VAR.findall(template)))


def render_template(template: str, parameters: dict[str, Any]) -> str:
    return _TEMPLATE_VAR.sub(lambda m: str(parameters[m.group(1)]), template)
