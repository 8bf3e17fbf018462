"""Request and response bodies of the REST API (field names follow seed 001)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from api.domain.commands import MAX_CALLBACK_URL_LENGTH, MAX_DEADLINE_S, PROJECT_ID_PATTERN
from api.rest.pipeline_schemas import StepOf
from api.service.alerts import Alert, CacheSavings, TaskMetrics
from taskservice.catalog import CATALOG
from taskservice.contracts import TaskStatus
from taskservice.priority import TaskPriority
from taskservice.render_cache import CacheMode


class SubmitTaskRequest(BaseModel):
    """A task to run: its type, its inputs (`task_data`, one schema per `task_type`) and how to run it."""

    # Unknown top-level keys are ignored, as the Celery service did: Aladdin's clients send extras.
    model_config = ConfigDict(extra="ignore")

    project_id: str = Field(
        pattern=PROJECT_ID_PATTERN, description="Project the task belongs to (a name within the tenant)."
    )
    task_type: str = Field(
        description="One of the catalog's task types.", json_schema_extra={"enum": list(CATALOG)}
    )
    task_data: dict[str, Any] = Field(description="Inputs of the task type (its `...Data` schema).")
    priority: Annotated[
        TaskPriority,
        BeforeValidator(TaskPriority.parse),
        # Documented as what is accepted (the parser above decides): seed 001's numbers, seed 003's names.
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "enum": [1, 2, 3]},
                    {"type": "string", "enum": [p.value for p in TaskPriority]},
                ]
            }
        ),
    ] = Field(
        TaskPriority.NORMAL,
        description="1 (high), 2 (normal), 3 (low), or LOW | NORMAL | HIGH | URGENT (any case): the order "
        "of each queue's backlog.",
    )
    callback_url: str | None = Field(
        None,
        max_length=MAX_CALLBACK_URL_LENGTH,
        description="http(s) URL POSTed the seed's webhook when the task ends.",
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Passed back in webhooks (≤ 16 KiB).")
    deadline_s: float | None = Field(
        None,
        gt=0,
        le=MAX_DEADLINE_S,
        description="Seconds from submission: not started by then → cancelled without running; still "
        "running then → cancelled. The `Cancel-After` header (`90`, `90s`, `5m`, `1h30m`) does the same.",
    )
    webhook_events_filter: list[Literal["start", "progress", "preview", "completed"]] | None = Field(
        None,
        max_length=4,
        description="Which webhooks to send to callback_url: `start` (first attempt began), `progress` "
        "(every 10 %), `preview` (each new live preview of an image, video or animation render: "
        "`preview_url`, `preview_at`), `completed` (the final one, whatever the outcome). Default: "
        "`completed` only.",
    )
    deadline_policy: Literal["accept", "reject"] = Field(
        "accept",
        description="`reject`: refuse (422 `deadline_unreachable`) a task whose predicted p90 completion "
        "is after `deadline_s`, before it starts (as `Prefer: handling=strict`). `accept`: run it, cancel "
        "at the deadline.",
    )
    cache: CacheMode | None = Field(
        None,
        description="Render cache: `auto` (default: reuse an earlier identical task's result when the output "
        "is deterministic: media with an explicit `seed`, `process_audio` and `assemble_clip` always, LLM "
        "types never), `reuse` (reuse even when not deterministic), `refresh` (render again and replace the "
        "entry), `off`. "
        "Scoped to the caller's tenant; a reused result carries `result.cache.hit = true`.",
        examples=["auto"],
    )


class TaskEstimateBody(BaseModel):
    """A task's run and wait, learned (the catalog's prior before ETA_MIN_SAMPLES); no wait: see `reason`."""

    duration_p50_s: float
    duration_p90_s: float
    wait_p50_s: float | None
    completion_p90_at: datetime | None
    basis: Literal["learned", "prior"]
    samples: int
    reason: str | None = None


class EstimatedTimes(BaseModel):
    """When the task should start and finish (null once finished, or with no worker for its queue)."""

    estimated_start_at: datetime | None = None
    estimated_completion_at: datetime | None = None
    estimate: TaskEstimateBody | None = None


class TaskQuoteResponse(EstimatedTimes):
    """What a submit of this body would be told about time and cost, without starting it."""

    task_type: str
    queue: str
    estimated_duration: int


class SubmitTaskResponse(EstimatedTimes):
    task_id: str
    status: TaskStatus
    project_id: str
    task_type: str
    estimated_duration: int
    queue_position: int
    created_at: datetime


class TaskStatusResponse(StepOf, EstimatedTimes):
    task_id: str
    project_id: str
    task_type: str
    status: TaskStatus
    progress: float
    current_step: str | None
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    processing_time: float | None
    attempt: int
    retry_of: str | None = None
    preview_url: str | None = Field(None, description="The render's latest live preview (signed URL).")
    preview_at: datetime | None = None


class FinishedSubmitResponse(TaskStatusResponse):
    """A submit with `Prefer: wait=N` whose task finished within N seconds: the finished task's status,
    with the submit answer's own fields."""

    estimated_duration: int
    queue_position: int


class ProjectTaskItem(StepOf):
    task_id: str
    project_id: str
    task_type: str
    status: TaskStatus
    task_data: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class Pagination(BaseModel):
    page: int
    limit: int
    total: int
    total_pages: int


class ProjectTasksResponse(BaseModel):
    tasks: list[ProjectTaskItem]
    pagination: Pagination


class CancelTaskResponse(BaseModel):
    success: bool = True
    task_id: str
    status: TaskStatus
    message: str
    previous_state: TaskStatus
    cancelled_at: datetime | None


class RetryTaskResponse(BaseModel):
    new_task_id: str
    original_task_id: str
    status: TaskStatus
    message: str


class SystemLoad(BaseModel):
    cpu_percent: float
    memory_percent: float
    gpu_utilization: list[float]


class HealthResponse(BaseModel):
    status: str
    temporal_status: str
    worker_count: int
    queue_sizes: dict[str, int]
    system_load: SystemLoad
    uptime: int


class MetricsResponse(BaseModel):
    metrics: TaskMetrics
    timestamp: datetime
    counted_until: datetime | None = Field(
        None, description="Finished tasks are counted up to this instant; later ones by the next scans."
    )
    stale_since: datetime | None = Field(
        None,
        description="Set when counting stopped moving (the metrics workflow makes no progress): the counts "
        "are those of this instant.",
    )
    cache: dict[str, CacheSavings] = Field(
        default_factory=dict,
        description="Render cache per task type (the caller's tenant): completed tasks answered from an "
        "entry (`hits`) or another task's render (`coalesced`), rendered with a key (`misses`), and the "
        "processing seconds the answers saved (`saved_seconds`, each its source task's).",
    )


class TaskQueueHealthResponse(BaseModel):
    status: str
    metrics: dict[str, Any]
    alerts: list[Alert]
    timestamp: datetime


class ErrorResponse(BaseModel):
    """The body of every error answer (seed 001's format); the fields past `message` depend on `error`."""

    error: str = Field(description="Machine-readable code, e.g. `validation_error`, `task_not_found`.")
    message: str = Field(description="What went wrong, in words.")
    details: dict[str, str] | None = Field(
        None, description="`validation_error`: a message per dotted field path."
    )
    retry_after: int | None = Field(
        None,
        description="`rate_limited`, `service_unavailable`: seconds to wait (as the `Retry-After` header).",
    )
    detail: str | None = Field(
        None, description="`invalid_task_state`: the message again (the Celery service's key)."
    )
    task_id: str | None = Field(None, description="`idempotency_key_reused`: the task the key already names.")
    limit_bytes: int | None = Field(None, description="`payload_too_large`: the most bytes accepted.")


class TaskError(BaseModel):
    type: str
    message: str


class TaskDetail(StepOf, EstimatedTimes):
    """Seed 002's task resource: integer progress, error as an object; while unfinished, its estimate."""

    task_id: str
    project_id: str
    task_type: str
    status: TaskStatus
    progress: int = Field(ge=0, le=100)
    current_step: str | None
    message: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    result: dict[str, Any] | None
    error: TaskError | None
    priority: str
    attempt: int
    preview_url: str | None = None  # as /status's
    preview_at: datetime | None = None


class BatchSubmitRequest(BaseModel):
    """Up to 100 submit bodies; each is validated and started on its own."""

    tasks: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=100,
        description="Submit bodies (≤ 100), each as `POST /api/v1/tasks/submit` takes it.",
        # Parsed one by one by the service (a bad item fails alone); documented as what each item is.
        json_schema_extra={"items": {"$ref": "#/components/schemas/SubmitTaskRequest"}},
    )


class BatchItemResult(BaseModel):
    index: int
    success: bool
    task: SubmitTaskResponse | None = None
    error: ErrorResponse | None = None


class BatchSubmitResponse(BaseModel):
    created: int
    failed: int
    results: list[BatchItemResult]


class QueueStatus(BaseModel):
    # Read from the service's summary of the queue (`QueueSummary`), two fields by other names.
    model_config = ConfigDict(from_attributes=True)

    queue: str = Field(validation_alias="name")
    backlog: int
    running: int = Field(validation_alias="processing")
    pollers: list[str]
    worker_count: int
    configured_concurrency: int
    task_types: list[str]
    drain_s: float | None = Field(
        None,
        description="Predicted seconds until its present backlog has started (null: no worker polls it).",
    )
    drain_reason: str | None = Field(None, description="Why there is no `drain_s`.")


class QueuesResponse(BaseModel):
    queues: list[QueueStatus]
    timestamp: datetime


class StatisticsResponse(BaseModel):
    window_hours: float
    since: datetime
    total: int
    by_status: dict[str, int]
    by_type: dict[str, dict[str, int]]
    timestamp: datetime


class BulkFilter(BaseModel):
    project_id: str | None = Field(None, pattern=PROJECT_ID_PATTERN)
    task_type: str | None = None
    status: TaskStatus | None = None


class BulkResponse(BaseModel):
    matched: int
    affected: int
    task_ids: list[str]
    errors: dict[str, str] = Field(default_factory=dict)


class CleanupRequest(BaseModel):
    finished_older_than_hours: float = Field(24.0, gt=0, description="Delete finished tasks older than this.")
    cancel_queued_older_than_hours: float | None = Field(
        None, gt=0, description="Also cancel tasks still queued after this long (stale)."
    )
    dry_run: bool = False


class CleanupResponse(BaseModel):
    deleted: int
    cancelled: int
    dry_run: bool
    task_ids: list[str]


class WorkerInfo(BaseModel):
    identity: str
    queue: str
    host: str
    pid: int
    state: str
    alive: bool
    started_at: str
    last_seen: str
    tasks_done: int
    tasks_failed: int
    rss_mb: float
    gpu_memory_mb: list[float]
    loaded_models: list[str]
    concurrency: int
    model_cache_hits: int = Field(0, description="Tasks served by an already loaded model.")
    model_cache_misses: int = Field(0, description="Model loads (each a miss of the warm cache).")
    model_load_seconds: float = Field(0.0, description="Seconds spent loading models since it started.")
    image_batches: int = Field(0, description="Image pipeline calls (a batch of one counts).")
    image_batched_tasks: int = Field(0, description="Image tasks those calls held.")


class WorkersHealthResponse(BaseModel):
    status: str
    total: int
    alive: int
    by_queue: dict[str, int]
    workers: list[WorkerInfo]
    timestamp: datetime


class WorkersStatsResponse(BaseModel):
    workers: list[WorkerInfo]
    totals: dict[str, float]
    timestamp: datetime
