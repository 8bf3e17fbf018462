"""One Settings object, built in entry points from the environment and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskservice.queues import Queue


class Settings(BaseSettings):
    """Every knob of the service; env names are part of the contract (see README)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    api_host: str = Field("0.0.0.0", description="Interface the API binds to.")
    api_port: int = Field(8001, description="Port of the REST API.")
    environment: Literal["development", "production"] = Field(
        "development", description="`production` refuses to start without an API key."
    )
    temporal_address: str = Field("localhost:7233", description="Temporal frontend host:port.")
    temporal_namespace: str = Field("default", description="Temporal namespace of all task workflows.")
    api_key: SecretStr | None = Field(None, description="Accepted X-API-Key value(s), comma-separated.")
    celery_task_api_key: SecretStr | None = Field(
        None, description="Also accepted (the Celery service's name for the key), comma-separated."
    )
    admin_api_key: SecretStr | None = Field(
        None, description="Key for admin-only endpoints (cleanup); comma-separated list allowed."
    )
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 secret: `Authorization: Bearer <JWT>` is accepted beside X-API-Key."
    )
    openai_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint for the LLM task types."
    )
    openai_api_key: SecretStr | None = Field(None, description="Key for OPENAI_BASE_URL.")
    llm_model: str = Field("gpt-4o-mini", description="Chat model used by the LLM task types.")
    llm_timeout_s: float = Field(60.0, description="Timeout of one chat completion request, seconds.")
    task_retry_initial_interval: float = Field(
        60.0, description="First retry delay in seconds; doubles per attempt, 4 attempts in all."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="`whsec_…` secret; when set, webhooks are signed the Standard Webhooks way."
    )
    webhook_allow_private: bool = Field(
        False, description="Allow callback URLs that resolve to private or loopback addresses."
    )
    webhook_timeout_s: float = Field(30.0, description="Timeout of one webhook delivery attempt, seconds.")
    task_retention_hours: int = Field(
        24, description="How long finished tasks (and idempotency keys) stay queryable."
    )
    rate_limit_submit_per_min: int = Field(100, description="Submits per minute per API key.")
    rate_limit_status_per_min: int = Field(1000, description="Status reads per minute per API key.")
    max_concurrent_per_project: int = Field(50, description="Unfinished tasks allowed per project.")
    max_concurrent_tasks: int = Field(
        0, description="Tasks running at once across the cluster, any type (0: no cap); the rest wait queued."
    )
    image_max_concurrent: int = Field(
        3, description="Image tasks (generate_image, run_sd_inference) running at once (0: no cap)."
    )
    video_max_concurrent: int = Field(
        2, description="Video tasks (generate_video, render_animation) running at once (0: no cap)."
    )
    worker_max_tasks: int = Field(10, description="A worker process is recycled after this many tasks.")
    worker_max_memory_mb: int = Field(2048, description="A worker process is recycled above this RSS.")
    worker_concurrency_gpu_heavy: int = Field(2, description="Parallel activities of a gpu_heavy worker.")
    worker_concurrency_gpu_medium: int = Field(4, description="Parallel activities of a gpu_medium worker.")
    worker_concurrency_cpu_intensive: int = Field(
        4, description="Parallel activities of a cpu_intensive worker."
    )
    worker_concurrency_default: int = Field(8, description="Parallel activities of a default worker.")
    worker_report_interval_s: float = Field(
        10.0, description="How often a worker reports its health (RSS, tasks) to Temporal."
    )
    data_dir: Path = Field(Path("data"), description="Local state: dev server database, media files.")
    worker_metrics_port: int = Field(
        9100,
        description="Workers' Prometheus port base: gpu_heavy +0, gpu_medium +1, cpu_intensive +2, "
        "default +3; Temporal SDK metrics at +10 (0 disables).",
    )
    # Inputs fetched by media/audio tasks.
    allow_private_urls: bool = Field(False, description="Let tasks fetch input URLs on private addresses.")
    fetch_max_bytes: int = Field(50 * 1024 * 1024, description="Largest input file a task downloads.")
    fetch_timeout_s: float = Field(30.0, description="Timeout of one input download, seconds.")
    # Where results go.
    storage_backend: Literal["local", "s3"] = Field("local", description="`local` files or `s3` (R2/MinIO).")
    media_public_url: str = Field(
        "http://localhost:8001/media", description="URL base of files stored by the local backend."
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (R2, MinIO); AWS if unset.")
    s3_bucket: str = Field("task-media", description="Bucket for results.")
    s3_region: str = Field("auto", description="Region of the bucket (`auto` for R2).")
    aws_access_key_id: SecretStr | None = Field(None, description="S3 access key id.")
    aws_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    r2_public_url: str | None = Field(None, description="Public URL base of the bucket; else presigned URLs.")
    presign_expiry_s: int = Field(7 * 24 * 3600, description="Lifetime of presigned result URLs, seconds.")
    payload_api_url: str | None = Field(None, description="Payload CMS API base; results get registered.")
    payload_api_key: SecretStr | None = Field(None, description="Payload CMS API key.")
    # Models (ids or local paths; `make dev` and tests use tiny local ones).
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
    tts_model: str | None = Field(None, description="Coqui TTS model name or local path; espeak-ng if unset.")

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> Settings:
        if self.environment == "production" and not self.accepted_api_keys():
            raise ValueError("ENVIRONMENT=production requires API_KEY or CELERY_TASK_API_KEY to be set")
        return self

    def accepted_api_keys(self) -> list[str]:
        """All valid keys: either variable may hold one key or a comma-separated list."""
        keys: list[str] = []
        for secret in (self.api_key, self.celery_task_api_key):
            if secret is not None:
                keys.extend(k.strip() for k in secret.get_secret_value().split(",") if k.strip())
        return keys

    def worker_metrics_ports(self, queue: Queue) -> tuple[int, int] | None:
        """(our metrics port, Temporal SDK metrics port) of a queue's worker, or None when disabled."""
        if not self.worker_metrics_port:
            return None
        offset = list(Queue).index(queue)
        return self.worker_metrics_port + offset, self.worker_metrics_port + 10 + offset

    def concurrency_limits(self, group: str | None) -> list[tuple[str, int]]:
        """(group, limit) slots a task of `group` holds while it runs: its own group first, then the total."""
        limits = {"image": self.image_max_concurrent, "video": self.video_max_concurrent}
        slots = [(group, limits[group])] if group in limits else []
        slots.append(("total", self.max_concurrent_tasks))
        return [(name, limit) for name, limit in slots if limit > 0]

    def worker_concurrency(self, queue: Queue) -> int:
        return {
            Queue.GPU_HEAVY: self.worker_concurrency_gpu_heavy,
            Queue.GPU_MEDIUM: self.worker_concurrency_gpu_medium,
            Queue.CPU_INTENSIVE: self.worker_concurrency_cpu_intensive,
            Queue.DEFAULT: self.worker_concurrency_default,
        }[queue]
