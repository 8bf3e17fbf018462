"""The settings of the models a worker runs and how it runs them (the LLM's included, and what a task may ask
of it): part of Settings, declared apart."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModelSettings(BaseSettings):
    """Model ids or paths, the device, the model cache, image batching and the pipeline speed options."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    image_model: str | None = Field(None, description="Text-to-image diffusers model id or path.")
    image_reference_model: str | None = Field(
        None, description="Img2img model id or path (defaults to IMAGE_MODEL)."
    )
    video_model: str | None = Field(None, description="Text-to-video diffusers model id or path.")
    animation_model: str | None = Field(None, description="AnimateDiff-style model id or path.")
    caption_model: str | None = Field(
        None, description="Image captioning transformers model id or path (BLIP, GIT, ViT-GPT2, ...)."
    )
    torch_device: str = Field("auto", description="`auto` (cuda when present), `cuda`, `cpu`, ...")
    model_cache_max_gb: float = Field(12.0, description="Memory budget of a worker's model cache.")
    image_max_batch: int = Field(
        4, ge=1, description="Same-shape image tasks run as one pipeline call of at most this many (1: off)."
    )
    image_batch_window_ms: float = Field(
        40.0, ge=0, description="How long the first image task of a batch waits for others to join, ms."
    )
    torch_compile: bool = Field(
        False,
        description="torch.compile the denoiser of each warm pipeline (compile time is logged and reported).",
    )
    channels_last: bool = Field(
        False, description="Keep the denoiser's weights in channels-last memory format."
    )
    attention_backend: Literal["sdpa", "classic"] = Field(
        "sdpa",
        description="`sdpa`: torch's scaled-dot-product attention kernels; `classic`: diffusers' plain one.",
    )
    vae_slicing_above: int = Field(
        8,
        ge=0,
        description="Decode images or frames one at a time when one call decodes more than this (0: always).",
    )
    vae_tiling_above_pixels: int = Field(
        1024 * 1024, ge=0, description="Decode in tiles when one image or frame has more pixels than this."
    )
    model_cpu_offload: Literal["off", "model", "sequential"] = Field(
        "off",
        description="Keep models in CPU memory and move each part (`model`) or each layer (`sequential`) to "
        "the GPU when used: for GPUs smaller than the model.",
    )
    cancel_check_s: float = Field(
        1.0,
        gt=0,
        description="Longest stretch of media work between two looks for a cancel outside the denoising loop "
        "(frames decoded at once, s).",
    )
    cancel_grace_s: float = Field(
        30.0,
        gt=0,
        description="How long a cancelled task's work may take to stop before its worker is replaced, s.",
    )
    preview_decoder: Literal["tiny", "vae", "off"] = Field(
        "tiny",
        description="Live previews of image/video/animation renders: `tiny` (PREVIEW_MODEL_IMAGE/VIDEO), "
        "`vae` (the pipeline's own VAE), `off`.",
    )
    preview_interval_s: float = Field(
        2.0, gt=0, description="Shortest time between two previews of one render, s."
    )
    preview_model_image: str | None = Field(
        None,
        description="Tiny autoencoder (diffusers AutoencoderTiny, TAESD family) of the image models' latent "
        "space, id or path; unset: no `tiny` previews of images.",
    )
    preview_model_video: str | None = Field(
        None,
        description="Tiny autoencoder of the video and animation models' latent space, id or path; unset: no "
        "`tiny` previews of videos.",
    )
    tts_model: str | None = Field(None, description="Coqui TTS model name or local path; espeak-ng if unset.")
    llm_model: str = Field("gpt-4o-mini", description="Chat model used by the LLM task types.")
    llm_timeout_s: float = Field(60.0, description="Timeout of one chat completion request, seconds.")
    llm_allowed_models: str | None = Field(
        None,
        description="Models a task may name in `model`, comma-separated; LLM_MODEL always may be named. "
        "Unset: LLM_MODEL only.",
    )
    llm_max_tokens: int = Field(
        4096, ge=1, description="Largest `max_tokens` an LLM task may ask for (default of each type's cap)."
    )
    llm_max_tokens_run_llm_inference: int | None = Field(
        None, ge=1, description="Largest `max_tokens` of run_llm_inference; unset: LLM_MAX_TOKENS."
    )
    llm_max_tokens_test_prompt: int | None = Field(
        None, ge=1, description="Largest `max_tokens` of test_prompt; unset: LLM_MAX_TOKENS."
    )
    # What a rendered output is remembered and described by: the render cache and provenance records.
    cache_ttl_days: float = Field(
        30.0, gt=0, description="Render cache: days an entry answers repeats of its task (then a miss)."
    )
    build_commit: str | None = Field(
        None, description="The service's git commit in provenance records (unset: `git rev-parse HEAD`)."
    )

    def llm_models(self) -> list[str]:
        """The models a task may name: LLM_MODEL, then LLM_ALLOWED_MODELS."""
        listed = [m.strip() for m in (self.llm_allowed_models or "").split(",") if m.strip()]
        return list(dict.fromkeys([self.llm_model, *listed]))

    def llm_max_tokens_of(self, task_type: str) -> int:
        """The `max_tokens` cap of an LLM task type (LLM_MAX_TOKENS_<TYPE>, else LLM_MAX_TOKENS)."""
        cap = getattr(self, f"llm_max_tokens_{task_type}", None)
        return int(self.llm_max_tokens if cap is None else cap)
