"""Python SDK of the task service: ``TaskServiceClient`` (blocking), ``AsyncTaskServiceClient`` (asyncio),
typed models and exceptions. The ``taskctl`` command line lives in ``taskservice_client.cli``.

    from taskservice_client import TaskServiceClient

    with TaskServiceClient() as tasks:  # TASK_SERVICE_URL, TASK_SERVICE_API_KEY from the environment
        task = tasks.submit("detective_series_001", "test_prompt", {"prompt_template": "Hello"})
        done = tasks.wait(task.task_id, timeout=120, on_progress=lambda s: print(s.progress, s.current_step))
        print(done.result)
"""

from taskservice_client.client import AsyncTaskServiceClient, ProgressCallback, TaskServiceClient, __version__
from taskservice_client.errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    InvalidTaskStateError,
    RateLimitedError,
    ServerError,
    ServiceConnectionError,
    ServiceUnavailableError,
    TaskCancelledError,
    TaskFailedError,
    TaskNotFoundError,
    TaskServiceError,
    ValidationError,
    WaitTimeoutError,
)
from taskservice_client.models import (
    Alert,
    CancelResult,
    Health,
    Metrics,
    Pagination,
    QueueHealth,
    Quote,
    RetryResult,
    SubmitResult,
    SystemLoad,
    TaskEstimate,
    TaskListItem,
    TaskPage,
    TaskState,
    TaskStatus,
    WebhookSecret,
)
from taskservice_client.pipelines import Pipeline, PipelineStep, PlannedStep, SubmittedPipeline, ref
from taskservice_client.webhooks import WebhookVerificationError

__all__ = [
    "Alert",
    "AsyncTaskServiceClient",
    "AuthenticationError",
    "CancelResult",
    "ConflictError",
    "ForbiddenError",
    "Health",
    "InvalidTaskStateError",
    "Metrics",
    "Pagination",
    "Pipeline",
    "PipelineStep",
    "PlannedStep",
    "ProgressCallback",
    "QueueHealth",
    "Quote",
    "RateLimitedError",
    "RetryResult",
    "ServerError",
    "ServiceConnectionError",
    "ServiceUnavailableError",
    "SubmitResult",
    "SubmittedPipeline",
    "SystemLoad",
    "TaskCancelledError",
    "TaskFailedError",
    "TaskEstimate",
    "TaskListItem",
    "TaskNotFoundError",
    "TaskPage",
    "TaskServiceClient",
    "TaskServiceError",
    "TaskState",
    "TaskStatus",
    "ValidationError",
    "WaitTimeoutError",
    "WebhookSecret",
    "WebhookVerificationError",
    "__version__",
    "ref",
]
