"""Completion webhooks: seed payloads, Standard Webhooks signatures, 1/2/4 s backoff, timeouts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import httpx

from tests.support.stack import TENANT_WEBHOOK_SECRET, Stack
from tests.support.tasks import submit, wait_status
from tests.support.webhook_receiver import ReceivedWebhook, WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]


def _verify(hook: ReceivedWebhook) -> None:
    """Verify as a Standard Webhooks receiver would."""
    key = base64.b64decode(TENANT_WEBHOOK_SECRET.removeprefix("whsec_"))
    signed = f"{hook.headers['webhook-id']}.{hook.headers['webhook-timestamp']}.".encode() + hook.body_bytes
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    versions = dict(part.split(",", 1) for part in hook.headers["webhook-signature"].split())
    assert hmac.compare_digest(versions["v1"], expected)
    assert abs(int(hook.headers["webhook-timestamp"]) - time.time()) < 60


def _hooks(receiver: WebhookReceiver, path: str) -> list[ReceivedWebhook]:
    return [h for h in receiver.received if h.path == path]


async def _wait_hooks(
    receiver: WebhookReceiver, path: str, count: int, timeout: float
) -> list[ReceivedWebhook]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hooks = _hooks(receiver, path)
        if len(hooks) >= count:
            return hooks
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} webhooks on {path}, got {len(_hooks(receiver, path))}")


def _path() -> str:
    return f"/hook/{uuid.uuid4().hex}"


async def test_success_webhook_payload_and_signature(
    api: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    path = _path()
    metadata = {"userId": "user-123", "testResultId": "result-456", "sessionId": "session-789"}
    task_id = await submit(
        api,
        "test_prompt",
        {"prompt_template": "hook me"},
        callback_url=webhook_receiver.url(path),
        metadata=metadata,
        project_id="detective_series_001",
    )
    [hook] = await _wait_hooks(webhook_receiver, path, 1, timeout=20)
    body = hook.json
    assert body["task_id"] == task_id
    assert body["project_id"] == "detective_series_001"
    assert body["status"] == "completed"
    assert body["result"]["output"] == "FAKE-LLM: hook me"
    assert body["metadata"] == metadata
    assert hook.headers["content-type"] == "application/json"
    assert hook.headers["webhook-id"] == f"msg_{task_id}_completed"
    _verify(hook)
    status = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
    assert status["status"] == "completed"
    # The webhook reports the outcome the task recorded.
    assert body["processing_time"] == status["processing_time"] > 0
    assert body["completed_at"] == status["completed_at"]


async def test_failure_webhook_payload(api: httpx.AsyncClient, webhook_receiver: WebhookReceiver) -> None:
    path = _path()
    task_id = await submit(
        api,
        "test_prompt",
        {"prompt_template": "doomed [[status=400]]"},
        callback_url=webhook_receiver.url(path),
        metadata={"userId": "u"},
    )
    [hook] = await _wait_hooks(webhook_receiver, path, 1, timeout=20)
    body = hook.json
    assert body["status"] == "failed"
    assert body["task_id"] == task_id
    assert body["error"].startswith("UpstreamClientError: LLM endpoint rejected the request (HTTP 400)")
    assert body["traceback"].startswith("Traceback (most recent call last):")
    assert "activities/llm/activities.py" in body["traceback"]
    # Project modules by relative path, libraries relative to their install folder: no host path.
    assert 'File "/' not in body["traceback"] and str(ROOT) not in body["traceback"]
    assert 'File "activities/llm/activities.py"' in body["traceback"]
    assert body["failed_at"].endswith("Z")
    assert body["metadata"] == {"userId": "u"}
    _verify(hook)
    status = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
    assert status["status"] == "failed" and body["failed_at"] == status["completed_at"]


async def test_cancelled_webhook_payload(api: httpx.AsyncClient, webhook_receiver: WebhookReceiver) -> None:
    path = _path()
    task_id = await submit(
        api,
        "test_prompt",
        {"prompt_template": "to cancel [[sleep=30]]"},
        callback_url=webhook_receiver.url(path),
    )
    await wait_status(api, task_id, "processing")
    await api.delete(f"/api/v1/tasks/{task_id}")
    [hook] = await _wait_hooks(webhook_receiver, path, 1, timeout=20)
    assert hook.json["status"] == "cancelled"
    assert hook.json["cancelled_at"]
    assert hook.headers["webhook-id"] == f"msg_{task_id}_cancelled"


async def test_receiver_down_gets_exactly_four_attempts_spaced_1_2_4(
    api: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    path = _path()
    webhook_receiver.respond_sequence([(503, 0.0)] * 4)
    task_id = await submit(
        api, "test_prompt", {"prompt_template": "receiver down"}, callback_url=webhook_receiver.url(path)
    )
    hooks = await _wait_hooks(webhook_receiver, path, 4, timeout=30)
    await asyncio.sleep(3)  # no fifth attempt comes
    hooks = _hooks(webhook_receiver, path)
    assert len(hooks) == 4
    gaps = [b.received_at - a.received_at for a, b in zip(hooks, hooks[1:], strict=False)]
    for gap, expected in zip(gaps, [1, 2, 4], strict=True):
        assert expected * 0.9 <= gap <= expected + 1.0, gaps
    assert len({h.headers["webhook-id"] for h in hooks}) == 1, "webhook-id must be stable across attempts"
    status = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
    assert status["status"] == "completed", "a failed delivery never changes the task's status"


async def test_slow_receiver_times_out_after_30s_and_is_retried(
    api: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    path = _path()
    webhook_receiver.respond_sequence([(200, 35.0)])
    await submit(
        api, "test_prompt", {"prompt_template": "slow receiver"}, callback_url=webhook_receiver.url(path)
    )
    hooks = await _wait_hooks(webhook_receiver, path, 2, timeout=50)
    gap = hooks[1].received_at - hooks[0].received_at
    assert 30 <= gap <= 34, gap
    await asyncio.sleep(1.5)
    assert len(_hooks(webhook_receiver, path)) == 2, "the retry succeeded, so no third attempt"


def _log_events(stack: Stack, task_id: str) -> list[str]:
    """The events the workers logged for this task (JSON lines carry its task_id)."""
    events = []
    for process in stack.workers.values():
        for line in process.log_text().splitlines():
            if line.startswith("{") and task_id in line:
                entry = json.loads(line)
                if entry.get("task_id") == task_id:
                    events.append(entry["event"])
    return events


async def test_webhook_log_lines(
    stack: Stack, webhook_receiver: WebhookReceiver, api: httpx.AsyncClient
) -> None:
    delivered, lost = _path() + "?token=s3cr3t", _path() + "?token=s3cr3t"
    ok = await submit(
        api, "test_prompt", {"prompt_template": "log lines"}, callback_url=webhook_receiver.url(delivered)
    )
    await _wait_hooks(webhook_receiver, delivered, 1, timeout=20)
    webhook_receiver.respond_with(503)
    down = await submit(
        api, "test_prompt", {"prompt_template": "log lines, down"}, callback_url=webhook_receiver.url(lost)
    )
    await _wait_hooks(webhook_receiver, lost, 4, timeout=30)
    deadline = time.monotonic() + 10
    while "Failed to send webhook after all retries" not in _log_events(stack, down):
        assert time.monotonic() < deadline, _log_events(stack, down)
        await asyncio.sleep(0.2)
    assert _log_events(stack, ok).count("Webhook sent successfully") == 1
    down_events = _log_events(stack, down)
    assert down_events.count("Webhook request failed") == 4
    assert down_events.count("Failed to send webhook after all retries") == 1
    assert "Webhook sent successfully" not in down_events
    # Seed 001's log: one line per failed attempt with its reason, one error after the last, no tracebacks
    # (any line that names the task counts, the SDK's own included).
    down_lines = [
        json.loads(line)
        for process in stack.workers.values()
        for line in process.log_text().splitlines()
        if line.startswith("{") and down in line
    ]
    assert not [entry for entry in down_lines if "exception" in entry or "Traceback" in json.dumps(entry)]
    failed = [entry for entry in down_lines if entry["event"] == "Webhook request failed"]
    assert [entry["error"] for entry in failed] == ["HTTP 503"] * 4
    assert [entry["event"] for entry in down_lines if entry.get("level") == "error"] == [
        "Failed to send webhook after all retries"
    ]
    logs = "".join(p.log_text() for p in stack.workers.values())
    assert "s3cr3t" not in logs, "query strings of callback URLs are not logged"
