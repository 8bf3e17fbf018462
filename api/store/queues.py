"""Task queues as Temporal sees them (backlog, live pollers), cached for a second across requests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, DescribeTaskQueueResponse
from temporalio.client import Client

from api.store.shared_reads import SharedReads
from taskservice.queues import WORKFLOW_QUEUE, Queue

# A poller that has not polled for this long is gone (killed workers stay listed for minutes).
POLLER_FRESHNESS = timedelta(seconds=70)
# Every queued task's status names its queue's backlog and pollers; one DescribeTaskQueue per queue per
# this long serves them all (status polling of queued tasks was a third of the frontend's requests).
QUEUE_STATE_TTL_S = 1.0


@dataclass
class QueueState:
    name: str
    backlog: int
    pollers: list[str] = field(default_factory=list)


def _live_pollers(response: DescribeTaskQueueResponse) -> list[str]:
    fresh_after = datetime.now(UTC) - POLLER_FRESHNESS
    return [p.identity for p in response.pollers if p.last_access_time.ToDatetime(tzinfo=UTC) > fresh_after]


class QueueStates:
    """Activity queues' backlog and pollers; concurrent readers share one in-flight request per queue."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._states: SharedReads[str, QueueState] = SharedReads(QUEUE_STATE_TTL_S)

    async def get(self, queue: str) -> QueueState:
        """At most QUEUE_STATE_TTL_S old."""
        return await self._states.get(queue, lambda: self._describe(queue))

    async def all(self) -> dict[str, QueueState]:
        states = await asyncio.gather(*(self.get(q.value) for q in Queue))
        return {s.name: s for s in states}

    async def queued_step(self, queue: str) -> str:
        """What a queued task waits for: a worker at all, or its turn in the backlog."""
        state = await self.get(queue)
        if not state.pollers:
            return f"waiting_for_worker: no worker is polling queue '{queue}'"
        return f"queued: {state.backlog} task(s) waiting on '{queue}', {len(state.pollers)} worker(s) polling"

    async def has_workflow_worker(self) -> bool:
        response = await self._client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self._client.namespace,
                task_queue=TaskQueue(name=WORKFLOW_QUEUE),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        return bool(_live_pollers(response))

    async def _describe(self, queue: str) -> QueueState:
        response = await self._client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self._client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                report_stats=True,
            )
        )
        return QueueState(
            name=queue, backlog=int(response.stats.approximate_backlog_count), pollers=_live_pollers(response)
        )
