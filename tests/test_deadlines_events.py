"""Per-task deadlines (deadline_s / Cancel-After) and webhook_events_filter (start, progress, completed)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from tests.support.stack import Stack
from tests.support.tasks import submit, wait_status
from tests.support.webhook_receiver import WebhookReceiver


async def test_running_past_the_deadline_is_cancelled(api: httpx.AsyncClient, stack: Stack) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "too slow [[sleep=20]]"}, deadline_s=2)
    status = await wait_status(api, task_id, {"completed", "failed", "cancelled"}, timeout=15)
    assert status["status"] == "cancelled"
    assert status["error"].startswith("DeadlineExceeded")


async def test_cancel_after_header_cancels_a_task_that_never_started(api: httpx.AsyncClient) -> None:
    # Two sleepers fill the default worker's two slots; the third cannot start before its deadline.
    blockers = [
        await submit(api, "test_prompt", {"prompt_template": f"blocker {i} [[sleep=6]]"}) for i in range(2)
    ]
    for task_id in blockers:
        await wait_status(api, task_id, "processing")
    response = await api.post(
        "/api/v1/tasks/submit",
        json={
            "project_id": "proj_test",
            "task_type": "test_prompt",
            "task_data": {"prompt_template": "late"},
        },
        headers={"Cancel-After": "1500ms"},
    )
    task_id = response.json()["task_id"]
    status = await wait_status(api, task_id, {"completed", "failed", "cancelled"}, timeout=15)
    assert status["status"] == "cancelled" and status["started_at"] is None
    assert status["error"].startswith("DeadlineExceeded")
    bad = await api.post(
        "/api/v1/tasks/submit",
        json={"project_id": "proj_test", "task_type": "test_prompt", "task_data": {"prompt_template": "x"}},
        headers={"Cancel-After": "soon"},
    )
    assert bad.status_code == 400 and "Cancel-After" in bad.json()["details"]
    for task_id in blockers:
        await api.delete(f"/api/v1/tasks/{task_id}")


async def test_a_task_within_its_deadline_completes(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "quick enough"}, deadline_s=30)
    assert (await wait_status(api, task_id, "completed"))["status"] == "completed"


async def test_start_progress_and_completed_webhooks(
    api: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    path = f"/events/{uuid.uuid4().hex}"
    task_id = await submit(
        api,
        "automated_gather_creation",
        {"department_slug": "story", "project_brief": "A heist in Monaco.", "target_items": 3},
        callback_url=webhook_receiver.url(path),
        webhook_events_filter=["start", "progress", "completed"],
    )
    await wait_status(api, task_id, "completed")
    deadline = time.monotonic() + 10
    while not any(
        h.json and h.json["status"] == "completed" for h in webhook_receiver.received if h.path == path
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    hooks = [h for h in webhook_receiver.received if h.path == path]
    events = [h.json.get("event", h.json["status"]) for h in hooks if h.json]
    assert events[0] == "started"
    assert events[-1] == "completed"
    assert "progress" in events
    progress = [h.json["progress"] for h in hooks if h.json and h.json.get("event") == "progress"]
    assert progress == sorted(progress)
    assert len({h.headers["webhook-id"] for h in hooks}) == len(hooks), "each event has its own webhook-id"


async def test_completed_only_is_the_default(
    api: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    path = f"/events/{uuid.uuid4().hex}"
    task_id = await submit(
        api, "test_prompt", {"prompt_template": "default events"}, callback_url=webhook_receiver.url(path)
    )
    await wait_status(api, task_id, "completed")
    await asyncio.sleep(1)
    assert [h.json["status"] for h in webhook_receiver.received if h.path == path] == ["completed"]


async def test_start_only_filter_sends_no_final_webhook(
    api: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    path = f"/events/{uuid.uuid4().hex}"
    task_id = await submit(
        api,
        "test_prompt",
        {"prompt_template": "start only"},
        callback_url=webhook_receiver.url(path),
        webhook_events_filter=["start"],
    )
    await wait_status(api, task_id, "completed")
    await asyncio.sleep(1)
    assert [h.json["event"] for h in webhook_receiver.received if h.path == path] == ["started"]
