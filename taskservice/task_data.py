"""Pydantic models of `task_data`, one per task type, validated at submit (400 on failure)."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from taskservice.audio_operations import AudioOperation

_RESOLUTION = re.compile(r"^(\d+)x(\d+)$")
_TEMPLATE_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/?#]+", value, flags=re.IGNORECASE):
        raise ValueError("must be an http(s) URL")
    return value


def _resolution(value: str) -> str:
    match = _RESOLUTION.match(value)
    if not match:
        raise ValueError("must look like WIDTHxHEIGHT, e.g. 1024x576")
    # One message for every size out of range, however many digits it has (100000x100000 as 8192x8192).
    width, height = (int(digits) if len(digits) <= 6 else 10**6 for digits in match.groups())
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise ValueError("width and height must each be between 16 and 4096, e.g. 1024x576")
    return value


# The documented shapes (the validators above decide, with their own messages).
HttpUrl = Annotated[
    str,
    AfterValidator(_http_url),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#]+"}),
]
Resolution = Annotated[
    str, AfterValidator(_resolution), WithJsonSchema({"type": "string", "pattern": "^[0-9]{2,5}x[0-9]{2,5}$"})
]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
# Denoising effort of the media types: a quality level, or an explicit step count (a JSON integer) over it.
Quality = Literal["draft", "standard", "high", "ultra"]
MAX_INFERENCE_STEPS = 150
InferenceSteps = Annotated[
    StrictInt | None,
    Field(ge=1, le=MAX_INFERENCE_STEPS, description="Denoising steps (1-150); overrides `quality`."),
]
# Denoising steps per quality level (real checkpoints); `num_inference_steps` overrides.
QUALITY_STEPS: dict[Quality, int] = {"draft": 4, "standard": 20, "high": 30, "ultra": 50}
QUALITY = (
    f"Denoising effort: {', '.join(QUALITY_STEPS)} = {', '.join(map(str, QUALITY_STEPS.values()))} steps."
)
SEED = "Random seed (0 to 2^32-1): the same seed and inputs give the same output."
NEGATIVE = "What the output must not show."
RESOLUTION = "WIDTHxHEIGHT, each 16-4096 (rounded to a multiple of 8)."


class TaskData(BaseModel):
    """Base of every task_data model: unknown keys are kept (Aladdin sends extra context)."""

    model_config = ConfigDict(extra="allow")


class CharacterPosition(BaseModel):
    """Where a character stands in the scene and what it does."""

    model_config = ConfigDict(extra="allow")
    character_id: str = Field(description="The character's ID in the project.")
    position: str | None = Field(None, description="Place in the frame, e.g. `center_frame`.")
    action: str | None = Field(None, description="What it does, e.g. `walking_slowly`.")


class DiffusionData(TaskData):
    """What every diffusion task takes beside its own inputs: the seed, what to avoid, and the effort."""

    quality: Quality = Field("standard", description=QUALITY)
    num_inference_steps: InferenceSteps = None
    seed: Seed | None = Field(None, description=SEED)
    negative_prompt: str | None = Field(None, description=NEGATIVE)

    def denoising_steps(self) -> int:
        """Steps for `quality`, unless `num_inference_steps` names them."""
        return QUALITY_STEPS[self.quality] if self.num_inference_steps is None else self.num_inference_steps

    def run_seed(self) -> int:
        """The seed, or a random one (reported in the result, so the output can be made again)."""
        return secrets.randbelow(2**32) if self.seed is None else self.seed


class ClipData(DiffusionData):
    """A diffusion task that renders clips: its effort is per clip."""

    quality: Quality = Field("standard", description=QUALITY + " Per clip.")


class GenerateVideoData(ClipData):
    """Inputs of `generate_video`: a video segment from a scene description and storyboard frames."""

    storyboard_images: list[HttpUrl] = Field(
        default_factory=list, max_length=16, description="Storyboard frames that condition the clips (≤ 16)."
    )
    scene_description: str = Field(min_length=1, max_length=4000, description="What happens in the scene.")
    camera_angle: str | None = Field(None, description="E.g. `wide_shot`.")
    lighting: str | None = Field(None, description="E.g. `noir_dramatic`.")
    character_positions: list[CharacterPosition] = Field(default_factory=list, description="Who is where.")
    duration: float = Field(7.0, ge=1, le=30, description="Seconds, 1-30.")
    fps: int = Field(24, ge=1, le=60, description="Frames per second of the file, 1-60.")
    resolution: Resolution = Field("1280x720", description=RESOLUTION)


class GenerateImageData(DiffusionData):
    """Inputs of `generate_image` (and `run_sd_inference`): character designs, concept art, environments."""

    prompt: str = Field(min_length=1, max_length=4000, description="What the image shows.")
    style_guide: HttpUrl | None = Field(None, description="Image whose style to follow (img2img).")
    reference_images: list[HttpUrl] = Field(
        default_factory=list, max_length=8, description="Images to start from (img2img, ≤ 8)."
    )
    character_id: str | None = Field(None, description="The character's ID in the project.")
    pose: str | None = Field(None, description="E.g. `standing_confident`.")
    lighting: str | None = Field(None, description="E.g. `dramatic_shadow`.")
    resolution: Resolution = Field("1024x1024", description=RESOLUTION)


class RenderAnimationData(ClipData):
    """Inputs of `render_animation`: a character animation clip from a reference image and an action."""

    character_reference_image: HttpUrl | None = Field(None, description="The character to animate.")
    action: str = Field(min_length=1, max_length=2000, description="What the character does.")
    character_id: str | None = Field(None, description="The character's ID in the project.")
    style: str | None = Field(None, description="Visual style, e.g. `cel_shaded`.")
    duration: float = Field(4.0, ge=1, le=30, description="Seconds, 1-30.")
    fps: int = Field(12, ge=1, le=60, description="Frames per second of the file, 1-60.")
    resolution: Resolution = Field("512x512", description=RESOLUTION)


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
    """Inputs of `generate_character_voice` (and `run_tts_inference`): dialogue in a character's voice."""

    text: str = Field(min_length=1, max_length=5000, description="What the character says.")
    character_voice_profile: HttpUrl | None = Field(
        None, description="URL of the voice profile JSON (docs/audio.md); default voice without it."
    )
    emotion: Emotion = Field("neutral", description="Delivery: changes rate, pitch and energy.")
    pace: Pace = Field("normal", description="Speaking rate.")
    background_noise: Annotated[str, AfterValidator(_ambience)] = Field(
        "none", description="Ambience bed: none, rain, crowd, wind or room (`rain_ambience` also works)."
    )
    output_format: AudioFormat = Field("mp3", description="Container of the file.")
    sample_rate: SampleRate = Field(44100, description="Hz.")


class TrimSpec(BaseModel):
    """The part of a track to keep."""

    start_s: float = Field(0.0, ge=0, description="Seconds cut from the start.")
    end_s: float | None = Field(None, gt=0, description="Where the kept part ends, seconds (default: end).")


class AudioTrack(BaseModel):
    """One input of the mix."""

    url: HttpUrl = Field(description="Audio file (any format ffmpeg reads).")
    gain_db: float = Field(0.0, ge=-60, le=24, description="Level change, dB.")
    offset_s: float = Field(0.0, ge=0, le=3600, description="Where the track starts in the mix, seconds.")
    fade_in_s: float | None = Field(None, ge=0, le=60, description="Fade-in length, seconds.")
    fade_out_s: float | None = Field(None, ge=0, le=60, description="Fade-out length, seconds.")
    trim: TrimSpec | None = Field(None, description="Keep only part of the track.")


class ProcessAudioData(TaskData):
    """Inputs of `process_audio`: tracks mixed, then the operations applied in order."""

    tracks: list[AudioTrack] = Field(min_length=1, max_length=16, description="Tracks to mix (1-16).")
    operations: list[AudioOperation] = Field(
        default_factory=list,
        max_length=16,
        description='Applied in order after mixing; a bare name (`"normalize"`) means its defaults.',
    )
    output_format: AudioFormat = Field("mp3", description="Container of the file.")
    sample_rate: SampleRate = Field(44100, description="Hz.")

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
    """A piece of gathered content of a department."""

    model_config = ConfigDict(extra="allow")
    content: str = Field(max_length=50_000, description="The content itself.")
    summary: str | None = Field(None, description="One line on what it is.")
    context: str | None = Field(None, description="Where it fits, e.g. the genre.")


class PreviousEvaluation(BaseModel):
    """An earlier department's evaluation, as context."""

    model_config = ConfigDict(extra="allow")
    department: str = Field(description="Department slug.")
    rating: int | None = Field(None, ge=0, le=100, description="Its rating, 0-100.")
    summary: str | None = Field(None, description="Its summary.")


class EvaluateDepartmentData(TaskData):
    """Inputs of `evaluate_department`: an LLM rating of a department's content against a threshold."""

    department_slug: str = Field(min_length=1, max_length=100, description="E.g. `story`, `character`.")
    department_number: int = Field(ge=1, le=12, description="Sequential department number, 1-12.")
    gather_data: list[GatherItem] = Field(max_length=500, description="The content to evaluate (≤ 500).")
    previous_evaluations: list[PreviousEvaluation] = Field(default_factory=list, description="For context.")
    threshold: int = Field(80, ge=0, le=100, description="Lowest passing rating, 0-100.")


class AutomatedGatherCreationData(TaskData):
    """Inputs of `automated_gather_creation`: gather items for a department, written by the LLM."""

    department_slug: str = Field(min_length=1, max_length=100, description="E.g. `story`, `character`.")
    department_number: int | None = Field(None, ge=1, le=12, description="Department number, 1-12.")
    project_title: str | None = Field(None, max_length=500, description="The project's title.")
    project_brief: str = Field(min_length=1, max_length=20_000, description="What the project is about.")
    existing_gather_data: list[GatherItem] = Field(
        default_factory=list, max_length=200, description="Items the department already has (≤ 200)."
    )
    focus_areas: list[str] = Field(default_factory=list, max_length=20, description="Topics to cover (≤ 20).")
    target_items: int = Field(5, ge=1, le=20, description="How many gather items to create.")


class ChatMessage(BaseModel):
    """One message of a chat."""

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)


class RunLLMInferenceData(TaskData):
    """Inputs of `run_llm_inference` (seed 004): one chat completion on the configured LLM."""

    messages: list[ChatMessage] | None = Field(
        None, min_length=1, max_length=200, description="The chat so far (give this or `prompt`)."
    )
    prompt: str | None = Field(None, max_length=100_000, description="Shorthand for one user message.")
    model: str | None = Field(None, description="Overrides LLM_MODEL.")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature, 0-2.")
    max_tokens: int | None = Field(None, ge=1, le=32_000, description="Most tokens of the answer.")

    @model_validator(mode="after")
    def _messages_or_prompt(self) -> RunLLMInferenceData:
        if not self.messages and not self.prompt:
            raise ValueError("give `messages` or `prompt`")
        return self

    def chat(self) -> list[dict[str, str]]:
        if self.messages:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]


class DialogueLine(BaseModel):
    """One line of the scene, in order."""

    character_id: str | None = Field(None, max_length=200, description="Who speaks it (kept in the result).")
    text: str = Field(min_length=1, max_length=4000, description="The line as written.")


class TranslateDialogueData(TaskData):
    """A scene's dialogue lines, translated line by line for dubbing and subtitles."""

    lines: list[DialogueLine] = Field(
        min_length=1, max_length=200, description="The scene's lines, in order (earlier ones are context)."
    )
    target_language: str = Field(min_length=2, max_length=50, description="e.g. `fr`, `Japanese`.")
    source_language: str | None = Field(None, max_length=50, description="Detected when absent.")
    style_notes: str | None = Field(
        None, max_length=2000, description="Tone, register, era: kept in every line's translation."
    )
    model: str | None = Field(None, description="Overrides LLM_MODEL.")


# Base64 images travel inside the workflow's input (and its memo), and the whole request body is capped at
# MAX_REQUEST_BYTES (1 MiB): capped below both, so a valid one never fails at Temporal; larger ones go by URL.
IMAGE_BASE64_MAX_CHARS = 1_000_000
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
    """Inputs of `run_image_to_text_inference` (seed 004): a caption of one image, by CAPTION_MODEL."""

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
    """Inputs of `test_prompt`: a prompt template rendered with `test_parameters` and run once."""

    __test__ = False  # not a pytest class, despite the name

    prompt_id: str | None = Field(None, description="The prompt's ID in the prompt manager.")
    prompt_template: str = Field(min_length=1, max_length=50_000, description="With `{{variable}}` slots.")
    agent_type: str | None = Field(None, description="The agent the prompt is for.")
    # Checked against the template here, not on the model: a missing value is reported at this field's path.
    test_parameters: dict[str, Any] = Field(
        default_factory=dict, validate_default=True, description="A value for every `{{variable}}`."
    )
    test_result_id: str | None = Field(None, description="Passed back in the result.")
    system_prompt: str | None = Field(None, max_length=20_000, description="System message sent first.")
    model: str | None = Field(None, description="Overrides LLM_MODEL for this test.")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature, 0-2.")
    max_tokens: int | None = Field(None, ge=1, le=32_000, description="Most tokens of the answer.")

    @field_validator("test_parameters")
    @classmethod
    def _every_variable_has_a_value(cls, parameters: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        template = info.data.get("prompt_template")
        missing = [v for v in template_variables(template or "") if v not in parameters]
        if missing:
            names = ", ".join("{{" + m + "}}" for m in missing)
            raise ValueError(f"test_parameters lacks a value for {names} (used in prompt_template)")
        return parameters


def template_variables(template: str) -> list[str]:
    """Names of `{{var}}` placeholders, in order of first appearance."""
    return list(dict.fromkeys(_TEMPLATE_VAR.findall(template)))


def render_template(template: str, parameters: dict[str, Any]) -> str:
    return _TEMPLATE_VAR.sub(lambda m: str(parameters[m.group(1)]), template)
