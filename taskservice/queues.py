"""Task queue names, defined once."""

from __future__ import annotations

import os
import socket
from enum import StrEnum


class Queue(StrEnum):
    """Activity task queues; one worker process type per queue."""

    GPU_HEAVY = "gpu_heavy"
    GPU_MEDIUM = "gpu_medium"
    CPU_INTENSIVE = "cpu_intensive"
    DEFAULT = "default"


# Workflow tasks (orchestration, webhooks, bookkeeping) live on their own queue, polled by every
# worker process, so a task can be cancelled or reported on even while its activity queue has no worker.
WORKFLOW_QUEUE = "task-workflows"
# Webhook deliveries have a queue (and activity slots) of their own, also polled by every worker process:
# a slow receiver holds a delivery slot, never the limiter's or bookkeeping's activities.
WEBHOOK_QUEUE = "task-webhooks"

METRICS_WORKFLOW_ID = "task-service-metrics"
WORKER_REGISTRY_WORKFLOW_ID = "task-service-workers"


def limiter_workflow_id(group: str) -> str:
    """The workflow that hands out the cluster-wide slots of one concurrency group."""
    return f"task-service-limit-{group}"


def worker_identity(queue: str) -> str:
    """This process's identity as a worker of `queue` (`gpu_medium@host:pid`): its Temporal worker identity,
    and the `worker` its task attempts announce."""
    return f"{queue}@{socket.gethostname()}:{os.getpid()}"


def webhook_secret_workflow_id(tenant: str) -> str:
    """The workflow that holds a tenant's webhook secret generation (its rotations)."""
    return f"task-service-webhook-secret-{tenant}"


def webhook_record_workflow_id(task_id: str) -> str:
    """The workflow that records a task's final webhook once its delivery failed (and sends it again)."""
    return f"task-webhook-{task_id}"
