"""Submitting tasks and waiting on them through the REST API, and counting them in Temporal."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.client import Client

from workflows.bookkeeping import SCAN_EVERY, VISIBILITY_LAG

TERMINAL = frozenset({"completed", "failed", "cancelled"})
TASKS = 'WorkflowType = "TaskWorkflow"'
OPEN_TASKS = f'{TASKS} AND ExecutionStatus = "Running"'


async def submit(api: httpx.AsyncClient, task_type: str, task_data: dict[str, Any], **extra: Any) -> str:
    body = {
        "project_id": extra.pop("project_id", "proj_test"),
        "task_type": task_type,
        "task_data": task_data,
    }
    body.update(extra)
    response = await api.post("/api/v1/tasks/submit", json=body)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def wait_status(
    api: httpx.AsyncClient, task_id: str, statuses: set[str] | str = TERMINAL, timeout: float = 60
) -> dict[str, Any]:
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await api.get(f"/api/v1/tasks/{task_id}/status")
        if response.status_code == 503:  # Temporal restarting (fault tests): keep polling
            await asyncio.sleep(0.2)
            continue
        assert response.status_code == 200, response.text
        last = response.json()
        if last["status"] in wanted:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} did not reach {wanted} in {timeout}s; last: {last}")


async def count_workflows(temporal: Client, query: str, expected: int, timeout: float = 10) -> int:
    """Visibility's count for `query`, read again while it differs from `expected` (it lags a little)."""
    deadline = time.monotonic() + timeout
    while True:
        count = (await temporal.count_workflows(query)).count
        if count == expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.2)


async def no_open_tasks(temporal: Client, timeout: float = 60) -> None:
    """Wait until the client's namespace has no running task workflow."""
    deadline = time.monotonic() + timeout
    while (await temporal.count_workflows(OPEN_TASKS)).count:
        assert time.monotonic() < deadline, "the namespace still has open tasks"
        await asyncio.sleep(0.2)


async def task_ids(temporal: Client, query: str) -> set[str]:
    return {execution.id async for execution in temporal.list_workflows(f"{TASKS} AND {query}")}


async def settled_metrics(api: httpx.AsyncClient, temporal: Client, timeout: float = 60) -> dict[str, Any]:
    """`/api/v1/tasks/metrics` once every task of the namespace has finished and been counted.

    The metrics workflow counts tasks that closed more than VISIBILITY_LAG ago, every SCAN_EVERY: once the
    namespace has no open task and its last close is older than both (and a margin), nothing is pending.
    """
    await no_open_tasks(temporal, timeout)
    last_close = datetime.min.replace(tzinfo=UTC)
    async for execution in temporal.list_workflows(f'{TASKS} AND ExecutionStatus != "Running"'):
        if execution.close_time is not None:
            last_close = max(last_close, execution.close_time)
    counted_by = last_close + VISIBILITY_LAG + SCAN_EVERY
    await asyncio.sleep(max(0.0, (counted_by - datetime.now(UTC)).total_seconds()) + 1.5)
    response = await api.get("/api/v1/tasks/metrics")
    assert response.status_code == 200, response.text
    metrics: dict[str, Any] = response.json()["metrics"]
    return metrics


async def worker_identities(temporal: Client, task_id: str) -> list[str]:
    """The identity (`queue@host:pid`) of the worker that started each activity attempt of the task."""
    history = await temporal.get_workflow_handle(task_id).fetch_history()
    return [
        event.activity_task_started_event_attributes.identity
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
    ]
