"""Domain commands: what a surface asks the service to do, in the service's own terms (no REST body, no
GraphQL input, no HTTP header)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from api.domain.caller import Caller
from taskservice.priority import TaskPriority
from taskservice.render_cache import CacheMode

# A project is a name within its tenant.
PROJECT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
MAX_CALLBACK_URL_LENGTH = 2048
# At most a week from submission.
MAX_DEADLINE_S = 7 * 24 * 3600


@dataclass(frozen=True)
class StartTask:
    """Start one task: a submit, an item of a batch, or a retry (`retry_of`), whichever surface asks.

    `task_data` is the task type's input as given; the start path validates it against the catalog.
    """

    tenant: str
    # The JWT `sub` that creates it (tasks it creates are its own), None for a tenant-wide credential.
    user: str | None
    project_id: str
    task_type: str
    task_data: dict[str, Any]
    priority: TaskPriority = TaskPriority.NORMAL
    callback_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Seconds from submission (a `Cancel-After` header is already resolved into it).
    deadline_s: float | None = None
    # Refuse the task (deadline_unreachable) when its predicted p90 completion is past its deadline.
    strict_deadline: bool = False
    # Which webhooks to send; None: the default (`completed` only).
    webhook_events: tuple[str, ...] | None = None
    # Who asks: an idempotency key is theirs (their tenant's, or their own as a user), and a replay of it
    # must be a task they may read. None: a start on no one's behalf (tools, benchmarks), without a key.
    caller: Caller | None = None
    idempotency_key: str | None = None
    # The task this one runs again (a retry is no request of its own: no idempotency, no request hash).
    retry_of: str | None = None
    # The render cache's mode; None: `auto`.
    cache: CacheMode | None = None

    def request_hash(self) -> str | None:
        """The request's fingerprint: an idempotent replay must repeat the request it names."""
        if self.retry_of is not None:
            return None
        # The submit body's fields by their REST names: the hashes of tasks started before stay valid.
        fields = {
            "project_id": self.project_id,
            "task_type": self.task_type,
            "task_data": self.task_data,
            "priority": self.priority.value,
            "callback_url": self.callback_url,
            "metadata": self.metadata,
            "deadline_s": self.deadline_s,
            "webhook_events_filter": list(self.webhook_events) if self.webhook_events is not None else None,
        }
        if self.cache is not None:
            # Counted only when given: bodies hash as they did before the field existed.
            fields["cache"] = self.cache.value
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
