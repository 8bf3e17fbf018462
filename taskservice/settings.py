"""One Settings object, built in entry points from the environment and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from taskservice.credential_formats import TENANT_NAME, comma_separated, require_key_length, tenant_key
from taskservice.media_budget import MediaBudget, MediaBudgetSettings, budget_device
from taskservice.model_settings import ModelSettings
from taskservice.priority import TaskPriority, tenant_max_priorities
from taskservice.queues import Queue
from taskservice.webhook_settings import WebhookSettings

MIN_JWT_SECRET_BYTES = 32


class Settings(MediaBudgetSettings, ModelSettings, WebhookSettings):
    """Every knob of the service; env names are part of the contract (see README)."""

    # Inputs stay out of validation errors: many of them are secrets, and the errors end up in logs.
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    api_host: str = Field("0.0.0.0", description="Interface the API binds to.")
    api_port: int = Field(8001, description="Port of the REST API.")
    environment: Literal["development", "production"] = Field(
        "development", description="`production` refuses to start without an API key."
    )
    temporal_address: str = Field("localhost:7233", description="Temporal frontend host:port.")
    temporal_namespace: str = Field("default", description="Temporal namespace of all task workflows.")
    temporal_tls: bool | None = Field(
        None,
        description="TLS to Temporal (`true`/`false`); unset: on when TEMPORAL_API_KEY or a TEMPORAL_TLS_* "
        "file is set.",
    )
    temporal_tls_ca: Path | None = Field(
        None, description="PEM file of the CA that signed Temporal's certificate (else the system's CAs)."
    )
    temporal_tls_cert: Path | None = Field(
        None, description="PEM client certificate for mTLS (with TEMPORAL_TLS_KEY)."
    )
    temporal_tls_key: Path | None = Field(None, description="PEM private key of TEMPORAL_TLS_CERT.")
    temporal_api_key: SecretStr | None = Field(
        None, description="Temporal Cloud API key (sent as a Bearer token; implies TLS)."
    )
    api_key: SecretStr | None = Field(None, description="Accepted X-API-Key value(s), comma-separated.")
    celery_task_api_key: SecretStr | None = Field(
        None, description="Also accepted (the Celery service's name for the key), comma-separated."
    )
    admin_api_key: SecretStr | None = Field(
        None, description="Key for admin-only endpoints (cleanup); comma-separated list allowed."
    )
    api_keys: SecretStr | None = Field(
        None,
        description="More tenants: `tenant=key` pairs, comma-separated (several keys per tenant allowed).",
    )
    api_keys_file: Path | None = Field(
        None,
        description="File of `tenant=key` pairs (one per line or comma-separated; `#` comments); a key "
        "may be given as `sha256:<hex digest>` so that the file holds no secret.",
    )
    jwt_secret: SecretStr | None = Field(
        None,
        description="HS256 secret (at least 32 bytes): `Authorization: Bearer <JWT>` is accepted beside "
        "X-API-Key; `exp` is required.",
    )
    jwt_tenant_claim: str = Field("tenant", description="JWT claim that names the caller's tenant.")
    jwt_default_tenant: str = Field(
        "default", description="Tenant of a JWT without the tenant claim (letters, digits, _.-)."
    )
    jwt_issuer: str | None = Field(None, description="Required `iss` of JWTs, when set.")
    jwt_audience: str | None = Field(None, description="Required `aud` of JWTs, when set.")
    openai_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint for the LLM task types."
    )
    openai_api_key: SecretStr | None = Field(None, description="Key for OPENAI_BASE_URL.")
    task_retry_initial_interval: float = Field(
        60.0, description="First retry delay in seconds; doubles per attempt, 4 attempts in all."
    )
    task_retention_hours: int = Field(
        24, description="How long finished tasks (and idempotency keys) stay queryable."
    )
    rate_limit_submit_per_min: int = Field(
        100, description="Tasks submitted per minute per tenant (a batch of N costs N)."
    )
    rate_limit_status_per_min: int = Field(
        1000, description="Reads per minute per tenant (listings and statistics cost one per Temporal query)."
    )
    max_streams_per_tenant: int = Field(
        20, description="Open SSE/WebSocket streams, GraphQL and Socket.IO subscriptions per tenant."
    )
    max_waits_per_tenant: int = Field(
        200,
        description="Requests that wait at once per tenant (`/status?wait=`, `Prefer: wait` on submit); "
        "beyond it a status wait answers 429 and a submit answers without waiting.",
    )
    max_request_bytes: int = Field(1024 * 1024, description="Largest request body accepted (413 above).")
    max_concurrent_per_project: int = Field(
        50,
        description="Unfinished tasks allowed per project (a project is a name within a tenant); counted in "
        "Temporal at most about once a second per project and API replica, at the cap before each refusal.",
    )
    max_unfinished_per_tenant: int = Field(
        1000, description="Unfinished tasks per tenant (queued or running), counted as a project's are."
    )
    tenant_weights: str | None = Field(
        None, description="`tenant=weight` pairs: a tenant's share of each queue under load (default 1)."
    )
    tenant_max_priority: str | None = Field(
        None, description="`tenant=PRIORITY` pairs (`*`: any tenant): the most a tenant may ask for (HIGH)."
    )
    idempotency_secret: SecretStr | None = Field(
        None,
        description="Key of the HMAC that derives task IDs from Idempotency-Keys (set it in production; "
        "unset, a key in the source: the IDs can be computed offline).",
    )
    max_concurrent_tasks: int = Field(
        0, description="Tasks running at once across the cluster, any type (0: no cap); the rest wait queued."
    )
    image_max_concurrent: int = Field(
        3, description="Image tasks (generate_image, run_sd_inference) running at once (0: no cap)."
    )
    video_max_concurrent: int = Field(
        2, description="Video tasks (generate_video, render_animation) running at once (0: no cap)."
    )
    worker_max_tasks: int = Field(
        10,
        description="A worker process is recycled after this many tasks (0: never). Default of the queues "
        "whose workers hold no models; see WORKER_MAX_TASKS_<QUEUE>.",
    )
    worker_max_memory_mb: int = Field(
        2048,
        description="A worker process is recycled above this RSS (0: never); for a worker holding models, "
        "above this growth of RSS once they are loaded (a leak). Default of WORKER_MAX_MEMORY_MB_<QUEUE>.",
    )
    worker_max_tasks_gpu_heavy: int | None = Field(
        None,
        ge=0,
        description="WORKER_MAX_TASKS of gpu_heavy workers (0: never); unset: 0 (its models stay warm).",
    )
    worker_max_tasks_gpu_medium: int | None = Field(
        None,
        ge=0,
        description="WORKER_MAX_TASKS of gpu_medium workers (0: never); unset: 0 (its models stay warm).",
    )
    worker_max_tasks_cpu_intensive: int | None = Field(
        None,
        ge=0,
        description="WORKER_MAX_TASKS of cpu_intensive workers (0: never); unset: WORKER_MAX_TASKS.",
    )
    worker_max_tasks_default: int | None = Field(
        None, ge=0, description="WORKER_MAX_TASKS of default workers (0: never); unset: WORKER_MAX_TASKS."
    )
    worker_max_memory_mb_gpu_heavy: int | None = Field(
        None,
        ge=0,
        description="WORKER_MAX_MEMORY_MB of gpu_heavy workers, as growth after model loads (0: never).",
    )
    worker_max_memory_mb_gpu_medium: int | None = Field(
        None,
        ge=0,
        description="WORKER_MAX_MEMORY_MB of gpu_medium workers, as growth after model loads (0: never).",
    )
    worker_max_memory_mb_cpu_intensive: int | None = Field(
        None, ge=0, description="WORKER_MAX_MEMORY_MB of cpu_intensive workers (0: never)."
    )
    worker_max_memory_mb_default: int | None = Field(
        None, ge=0, description="WORKER_MAX_MEMORY_MB of default workers (0: never)."
    )
    worker_overlap_recycle: bool | None = Field(
        None,
        description="A recycled worker's replacement starts polling while the old process drains. Unset: on "
        "when the draining worker's device has room for a second copy of its models (always, for workers "
        "that hold none).",
    )
    worker_concurrency_gpu_heavy: int = Field(2, description="Parallel activities of a gpu_heavy worker.")
    eta_min_samples: int = Field(
        5, ge=1, description="Finished tasks of a type before its learned duration is used."
    )
    worker_concurrency_gpu_medium: int = Field(
        8,
        description="Parallel activities of a gpu_medium worker: 2 × IMAGE_MAX_BATCH, one batch denoising "
        "while the previous one encodes and uploads.",
    )
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
    worker_metrics_host: str = Field(
        "127.0.0.1", description="Interface the workers' metrics ports bind to (they have no auth)."
    )
    # Inputs fetched by media/audio tasks.
    allow_private_urls: bool = Field(False, description="Let tasks fetch input URLs on private addresses.")
    fetch_max_bytes: int = Field(
        50 * 1024 * 1024,
        description="Largest input file a task downloads, counted after any Content-Encoding is undone.",
    )
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
    presign_expiry_s: int = Field(
        7 * 24 * 3600, description="Lifetime of presigned (S3) and signed (local) result URLs, seconds."
    )
    media_signing_key: SecretStr | None = Field(
        None,
        description="Signs the local backend's /media URLs; required in production with "
        "STORAGE_BACKEND=local (development keeps one in DATA_DIR).",
    )
    payload_api_url: str | None = Field(None, description="Payload CMS API base; results get registered.")
    payload_api_key: SecretStr | None = Field(None, description="Payload CMS API key.")
    # Models (ids or local paths; `make dev` and tests use tiny local ones).

    @field_validator(
        "temporal_tls", "temporal_tls_ca", "temporal_tls_cert", "temporal_tls_key",
        "temporal_api_key", "api_keys", "api_keys_file", "jwt_secret", "jwt_issuer", "jwt_audience",
        "admin_api_key", "media_signing_key", "tenant_weights", "tenant_max_priority", "idempotency_secret",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_means_unset(cls, value: Any) -> Any:
        # Compose passes `${VAR:-}`: an empty value is an unset one, never an empty key or the path ".".
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _production_signs_media(self) -> Settings:
        if (
            self.environment == "production"
            and self.storage_backend == "local"
            and not self.media_signing_key
        ):
            raise ValueError("ENVIRONMENT=production with STORAGE_BACKEND=local requires MEDIA_SIGNING_KEY")
        return self

    @model_validator(mode="after")
    def _production_signs_webhooks(self) -> Settings:
        if self.environment == "production" and self.webhook_secret is None and self.webhook_signing != "off":
            raise ValueError(
                "ENVIRONMENT=production requires WEBHOOK_SECRET "
                "(or WEBHOOK_SIGNING=off to send webhooks unsigned)"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> Settings:
        if self.environment == "production" and not (self.accepted_api_keys() or self.tenant_keys()):
            raise ValueError(
                "ENVIRONMENT=production requires API_KEY, CELERY_TASK_API_KEY, API_KEYS or API_KEYS_FILE"
            )
        return self

    @model_validator(mode="after")
    def _credentials_are_well_formed(self) -> Settings:
        self.tenant_keys()  # raises on a malformed entry
        self.weights()
        if not TENANT_NAME.fullmatch(self.jwt_default_tenant):
            raise ValueError("JWT_DEFAULT_TENANT must be a tenant name (letters, digits, _.-; at most 64)")
        self._keys_are_long_enough()
        tenant_max_priorities(self.tenant_max_priority)
        if (
            self.jwt_secret is not None
            and len(self.jwt_secret.get_secret_value().encode()) < MIN_JWT_SECRET_BYTES
        ):
            raise ValueError(f"JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes long")
        return self

    def _keys_are_long_enough(self) -> None:
        plain = [k for _, k in self.tenant_keys() if not k.startswith("sha256:")]  # a digest holds no key
        admin = comma_separated(self.admin_api_key) if self.admin_api_key else []
        require_key_length("API_KEY or CELERY_TASK_API_KEY", self.accepted_api_keys())
        require_key_length("API_KEYS or API_KEYS_FILE", plain)
        require_key_length("ADMIN_API_KEY", admin)

    def tenant_keys(self) -> list[tuple[str, str]]:
        """(tenant, key or `sha256:<hex>`) from API_KEYS and API_KEYS_FILE; ValueError on a bad entry."""
        entries: list[tuple[str, str]] = []
        sources = [("API_KEYS", self.api_keys.get_secret_value() if self.api_keys else "")]
        if self.api_keys_file is not None:
            try:
                text = self.api_keys_file.read_text()
            except OSError as err:
                raise ValueError(f"API_KEYS_FILE cannot be read: {err.strerror}") from None
            lines = (line.split("#", 1)[0] for line in text.splitlines())
            sources.append(("API_KEYS_FILE", ",".join(lines)))
        for name, text in sources:
            for number, item in enumerate((i.strip() for i in text.split(",")), start=1):
                if item:
                    entries.append(tenant_key(name, number, item))
        return entries

    def max_priority(self, tenant: str) -> TaskPriority:
        """The highest priority the tenant may ask for: its own entry, else `*`'s, else HIGH."""
        configured = tenant_max_priorities(self.tenant_max_priority)
        return configured.get(tenant, configured.get("*", TaskPriority.HIGH))

    def weights(self) -> dict[str, int]:
        """TENANT_WEIGHTS as {tenant: weight}."""
        weights: dict[str, int] = {}
        for number, item in enumerate((i.strip() for i in (self.tenant_weights or "").split(",")), start=1):
            if not item:
                continue
            tenant, _, weight = item.partition("=")
            if not TENANT_NAME.fullmatch(tenant.strip()) or not weight.strip().isdigit() or int(weight) < 1:
                raise ValueError(f"TENANT_WEIGHTS entry {number} must be tenant=weight (a whole number ≥ 1)")
            weights[tenant.strip()] = int(weight)
        return weights

    @model_validator(mode="after")
    def _temporal_tls_is_consistent(self) -> Settings:
        files = {
            "TEMPORAL_TLS_CA": self.temporal_tls_ca,
            "TEMPORAL_TLS_CERT": self.temporal_tls_cert,
            "TEMPORAL_TLS_KEY": self.temporal_tls_key,
        }
        given = [name for name, path in files.items() if path is not None]
        if self.temporal_tls is False and given:
            raise ValueError(f"TEMPORAL_TLS is off, yet {' and '.join(given)} set: remove one or the other")
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (mTLS): set both or neither")
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        return self

    def temporal_tls_enabled(self) -> bool:
        """TLS as TEMPORAL_TLS says; unset, on when an API key or a certificate file asks for it."""
        if self.temporal_tls is not None:
            return self.temporal_tls
        return self.temporal_api_key is not None or any(
            path is not None for path in (self.temporal_tls_ca, self.temporal_tls_cert, self.temporal_tls_key)
        )

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

    def worker_recycle_limits(self, queue: Queue, *, holds_models: bool) -> tuple[int, int]:
        """(tasks, memory MB) after which a queue's worker is recycled; 0 turns a rule off.

        A worker that holds models keeps them unless its own WORKER_MAX_TASKS_<QUEUE> says otherwise: each
        recycle reloads them. Its memory limit is measured as growth above the RSS after its models loaded.
        """
        name = queue.value
        tasks = getattr(self, f"worker_max_tasks_{name}")
        memory = getattr(self, f"worker_max_memory_mb_{name}")
        if tasks is None:
            tasks = 0 if holds_models else self.worker_max_tasks
        return int(tasks), int(self.worker_max_memory_mb if memory is None else memory)

    def media_budget(self) -> MediaBudget:
        """The budgets of media requests, for the device MEDIA_BUDGET_DEVICE names (or `auto` finds: the API
        cannot see the workers' device; production runs them on GPUs; a `cuda` TORCH_DEVICE says so too)."""
        gpu = self.environment == "production" or self.torch_device.startswith("cuda")
        return self.budget_for(budget_device(self.media_budget_device, gpu_workers=gpu))

    def worker_concurrency(self, queue: Queue) -> int:
        """WORKER_CONCURRENCY_<QUEUE>: the queue's activity slots per worker process."""
        return int(getattr(self, f"worker_concurrency_{queue.value}"))


def load_settings() -> Settings:
    """Settings from the environment for an entry point: a refused value ends the process with its reason."""
    try:
        return Settings()
    except ValidationError as err:
        raise SystemExit(f"Refusing to start, invalid configuration: {err}") from None
