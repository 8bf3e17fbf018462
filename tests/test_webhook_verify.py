"""taskservice_client.webhooks.verify and its FastAPI dependency on a delivery the stack really sent: it
verifies; a tampered body, another secret, a stale timestamp or missing headers are refused; during a rotation
either secret verifies. The light SDK does not import FastAPI for it."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from activities.io.webhooks import sign
from taskservice_client.webhooks import WebhookVerificationError, verify, webhook_keys
from taskservice_client.webhooks_fastapi import VerifiedWebhook, webhook_verifier
from tests.support.stack import TENANT_WEBHOOK_SECRET
from tests.support.tasks import submit, wait_status
from tests.support.webhook_receiver import ReceivedWebhook, WebhookReceiver

NEW_SECRET = "whsec_" + base64.b64encode(b"task-service-rotated-secret-32by").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"someone-else's-secret-32-bytes!!").decode()


@pytest.fixture
async def delivery(api: httpx.AsyncClient, webhook_receiver: WebhookReceiver) -> ReceivedWebhook:
    task_id = await submit(
        api,
        "test_prompt",
        {"prompt_template": "verify me"},
        project_id="webhook-verify",
        callback_url=webhook_receiver.url(),
    )
    await wait_status(api, task_id, "completed")
    return (await asyncio.to_thread(webhook_receiver.wait_for, 1, 60))[0]


def _resigned(delivery: ReceivedWebhook, secrets: list[str], timestamp: int) -> dict[str, str]:
    """The delivery's headers as the service signs them with `secrets` at `timestamp`."""
    signature = sign(webhook_keys(secrets), delivery.headers["webhook-id"], timestamp, delivery.body_bytes)
    return delivery.headers | {"webhook-timestamp": str(timestamp), "webhook-signature": signature}


def _reason(headers: dict[str, str], body: bytes, secret: str | list[str]) -> str:
    with pytest.raises(WebhookVerificationError) as refused:
        verify(headers, body, secret)
    return refused.value.reason


async def test_a_real_delivery_verifies_and_forgeries_do_not(delivery: ReceivedWebhook) -> None:
    payload = verify(delivery.headers, delivery.body_bytes, TENANT_WEBHOOK_SECRET)
    assert payload["status"] == "completed" and payload["result"]["output"].startswith("FAKE-LLM:")
    assert delivery.headers["webhook-id"] == f"msg_{payload['task_id']}_completed"
    assert verify(delivery.headers, delivery.body_bytes.decode(), TENANT_WEBHOOK_SECRET) == payload
    capitalised = {name.title(): value for name, value in delivery.headers.items()}
    assert verify(capitalised, delivery.body_bytes, TENANT_WEBHOOK_SECRET) == payload

    tampered = delivery.body_bytes.replace(b'"completed"', b'"failed"')
    assert tampered != delivery.body_bytes
    assert _reason(delivery.headers, tampered, TENANT_WEBHOOK_SECRET) == "signature"
    assert _reason(delivery.headers, delivery.body_bytes, OTHER_SECRET) == "signature"
    unsigned = {k: v for k, v in delivery.headers.items() if k != "webhook-signature"}
    assert _reason(unsigned, delivery.body_bytes, TENANT_WEBHOOK_SECRET) == "missing_headers"


async def test_a_stale_delivery_is_refused_whatever_its_signature(delivery: ReceivedWebhook) -> None:
    now = int(time.time())
    stale = _resigned(delivery, [TENANT_WEBHOOK_SECRET], now - 301)
    assert _reason(stale, delivery.body_bytes, TENANT_WEBHOOK_SECRET) == "timestamp"
    assert _reason(
        _resigned(delivery, [TENANT_WEBHOOK_SECRET], now + 301), delivery.body_bytes, TENANT_WEBHOOK_SECRET
    ) == ("timestamp")
    # Inside the tolerance (and a tolerance of the receiver's choosing) it verifies.
    assert verify(
        _resigned(delivery, [TENANT_WEBHOOK_SECRET], now - 290), delivery.body_bytes, TENANT_WEBHOOK_SECRET
    )
    assert verify(stale, delivery.body_bytes, TENANT_WEBHOOK_SECRET, tolerance=600)


async def test_during_a_rotation_either_secret_verifies(delivery: ReceivedWebhook) -> None:
    rotated = _resigned(delivery, [NEW_SECRET, TENANT_WEBHOOK_SECRET], int(time.time()))
    assert len(rotated["webhook-signature"].split()) == 2
    for secret in (
        NEW_SECRET,
        TENANT_WEBHOOK_SECRET,
        f"{NEW_SECRET},{TENANT_WEBHOOK_SECRET}",
        [OTHER_SECRET, NEW_SECRET],
    ):
        assert verify(rotated, delivery.body_bytes, secret)["status"] == "completed"
    # A receiver that already holds both verifies a delivery still signed with the old one only.
    assert (
        verify(delivery.headers, delivery.body_bytes, [NEW_SECRET, TENANT_WEBHOOK_SECRET])["status"]
        == "completed"
    )
    with pytest.raises(ValueError):
        verify(delivery.headers, delivery.body_bytes, "whsec_not base64!")


async def test_fastapi_dependency_answers_200_to_a_real_delivery_and_400_to_a_forgery(
    delivery: ReceivedWebhook,
) -> None:
    app = FastAPI()
    seen: list[str] = []

    @app.post("/api/webhooks/task-complete")
    async def task_complete(
        webhook: Annotated[VerifiedWebhook, Depends(webhook_verifier(TENANT_WEBHOOK_SECRET))],
    ) -> dict[str, Any]:
        duplicate = webhook.id in seen
        seen.append(webhook.id)
        return {"received": True, "duplicate": duplicate, "task_id": webhook.payload["task_id"]}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as receiver:
        post = receiver.post
        url = "/api/webhooks/task-complete"
        first = await post(url, content=delivery.body_bytes, headers=delivery.headers)
        again = await post(url, content=delivery.body_bytes, headers=delivery.headers)
        forged = await post(url, content=delivery.body_bytes + b" ", headers=delivery.headers)
    task_id = json.loads(delivery.body_bytes)["task_id"]
    assert first.status_code == 200 and first.json() == {
        "received": True,
        "duplicate": False,
        "task_id": task_id,
    }
    assert again.json()["duplicate"] is True
    assert forged.status_code == 400
    assert forged.json()["detail"]["reason"] == "signature"
    with pytest.raises(ValueError):
        webhook_verifier("whsec_not base64!")


def test_the_light_sdk_verifies_without_fastapi() -> None:
    code = (
        "import sys, taskservice_client, taskservice_client.webhooks; "
        "assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules, 'FastAPI was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
