"""Webhooks per tenant, through the real stack: each tenant's secret from the API verifies its own deliveries
only (checked with the reference `standardwebhooks` library), a rotation signs with both secrets and is seen
by every API replica; a failed final webhook is recorded, listed, sent again and recorded as delivered; a
receiver that never answers does not hold up another tenant's webhook. Every route is tenant-isolated."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.stack import API_KEYS, ISOLATED_NAMESPACE, OTHER_KEYS, OTHER_TENANT, WEBHOOK_SECRET, Stack
from tests.support.tasks import submit, wait_status
from tests.support.tenancy import MISSING, token
from tests.support.webhook_receiver import ReceivedWebhook, WebhookReceiver


@pytest.fixture
async def acme(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"X-API-Key": OTHER_KEYS[0]}, timeout=60
    ) as c:
        yield c


def verifies(secret: str, hook: ReceivedWebhook) -> bool:
    try:
        Webhook(secret).verify(hook.body_bytes, hook.headers)
    except WebhookVerificationError:
        return False
    return True


async def secret_of(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/api/v1/webhooks/secret")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def delivered(client: httpx.AsyncClient, receiver: WebhookReceiver, path: str) -> ReceivedWebhook:
    task_id = await submit(
        client,
        "test_prompt",
        {"prompt_template": "signed"},
        project_id="tenant-hooks",
        callback_url=receiver.url(path),
    )
    await wait_status(client, task_id, "completed")
    for _ in range(200):
        hooks = [h for h in receiver.received if h.path == path]
        if hooks:
            return hooks[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no webhook on {path}")


async def test_each_tenant_verifies_its_deliveries_with_its_own_secret_only(
    api: httpx.AsyncClient, acme: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    ours, theirs = await secret_of(api), await secret_of(acme)
    assert ours["tenant"] == "default" and theirs["tenant"] == OTHER_TENANT
    assert ours["secret"] != theirs["secret"] and str(ours["secret"]).startswith("whsec_")
    assert WEBHOOK_SECRET not in (ours["secret"], theirs["secret"])
    our_hook = await delivered(api, webhook_receiver, "/default")
    their_hook = await delivered(acme, webhook_receiver, "/acme")
    assert verifies(str(ours["secret"]), our_hook) and verifies(str(theirs["secret"]), their_hook)
    assert not verifies(str(theirs["secret"]), our_hook) and not verifies(str(ours["secret"]), their_hook)
    assert not verifies(WEBHOOK_SECRET, our_hook)


async def test_rotation_signs_with_both_secrets_and_every_replica_sees_it(
    stack: Stack, webhook_receiver: WebhookReceiver
) -> None:
    tenant = f"rot{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {token('ops', tenant, role='service')}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as client:
        before = await secret_of(client)
        assert before["generation"] == 0 and before["previous_secret"] is None
        rotated = (await client.post("/api/v1/webhooks/secret/rotate")).json()
        assert rotated["generation"] == 1 and rotated["previous_secret"] == before["secret"]
        assert rotated["secret"] != before["secret"]
        until = datetime.fromisoformat(rotated["previous_valid_until"])
        assert 23.9 * 3600 < (until - datetime.now(until.tzinfo)).total_seconds() <= 24 * 3600
        assert await secret_of(client) == rotated
        hook = await delivered(client, webhook_receiver, "/rotated")
    assert len(hook.headers["webhook-signature"].split(" ")) == 2
    assert verifies(str(before["secret"]), hook) and verifies(str(rotated["secret"]), hook)
    # Another API replica (as after a restart) answers the same: the state lives in Temporal.
    replica, url = stack.start_api("api-webhook-secret")
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as other:
            assert await secret_of(other) == rotated
    finally:
        replica.stop()


async def _record(
    client: httpx.AsyncClient, task_id: str, status: str, timeout: float = 30
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/api/v1/tasks/{task_id}/webhooks")
        assert response.status_code == 200, response.text
        body = response.json()
        deliveries = body["deliveries"]
        assert isinstance(deliveries, list)
        if deliveries and deliveries[0]["status"] == status:
            record: dict[str, object] = deliveries[0]
            return record
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {status} delivery recorded for {task_id}: {body}")


async def test_a_failed_webhook_is_recorded_listed_and_redelivered(
    api: httpx.AsyncClient, acme: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    project = f"hooks-{uuid.uuid4().hex[:6]}"
    webhook_receiver.respond_sequence([(503, 0.0)] * 4)
    task_id = await submit(
        api,
        "test_prompt",
        {"prompt_template": "down"},
        project_id=project,
        callback_url=webhook_receiver.url(),
    )
    assert (await wait_status(api, task_id, "completed"))["status"] == "completed"
    failed = await _record(api, task_id, "failed")
    assert failed["attempts"] == 4 and failed["last_status_code"] == 503
    assert failed["webhook_id"] == f"msg_{task_id}_completed" and failed["next_attempt_at"] is None
    listed = (await api.get("/api/v1/webhooks/deliveries", params={"status": "failed"})).json()["deliveries"]
    assert listed[0]["task_id"] == task_id, "newest first"
    in_project = await api.get(
        "/api/v1/webhooks/deliveries", params={"status": "failed", "project_id": project}
    )
    assert [d["task_id"] for d in in_project.json()["deliveries"]] == [task_id]
    elsewhere = await api.get("/api/v1/webhooks/deliveries", params={"project_id": f"{project}-other"})
    assert elsewhere.json()["deliveries"] == []

    # Another tenant: the task does not exist, its record is not listed, nothing is sent.
    for method, path in (
        ("GET", f"/api/v1/tasks/{task_id}/webhooks"),
        ("POST", f"/api/v1/tasks/{task_id}/webhooks/redeliver"),
    ):
        theirs, missing = (
            await acme.request(method, path),
            await acme.request(method, path.replace(task_id, MISSING)),
        )
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["error"] == missing.json()["error"] == "task_not_found"
    their_list = (await acme.get("/api/v1/webhooks/deliveries", params={"status": "failed"})).json()[
        "deliveries"
    ]
    assert task_id not in {d["task_id"] for d in their_list}
    assert len(webhook_receiver.received) == 4

    redelivered = await api.post(f"/api/v1/tasks/{task_id}/webhooks/redeliver")
    assert redelivered.status_code == 200, redelivered.text
    assert redelivered.json()["status"] == "delivered" and redelivered.json()["attempts"] == 5
    first, *_, again = webhook_receiver.received
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert again.body_bytes == first.body_bytes
    assert again.headers["webhook-timestamp"] != first.headers["webhook-timestamp"]
    assert again.headers["webhook-signature"] != first.headers["webhook-signature"]
    assert verifies(str((await secret_of(api))["secret"]), again)
    assert (await _record(api, task_id, "delivered"))["last_status_code"] == 200
    still_failed = (await api.get("/api/v1/webhooks/deliveries", params={"status": "failed"})).json()
    assert task_id not in {d["task_id"] for d in still_failed["deliveries"]}


async def test_a_task_without_a_failed_webhook_has_nothing_to_redeliver(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "no hook"})
    await wait_status(api, task_id, "completed")
    assert (await api.get(f"/api/v1/tasks/{task_id}/webhooks")).json() == {
        "task_id": task_id,
        "deliveries": [],
    }
    refused = await api.post(f"/api/v1/tasks/{task_id}/webhooks/redeliver")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_task_state"


async def test_a_receiver_that_never_answers_does_not_delay_another_tenants_webhook(stack: Stack) -> None:
    """One worker with 4 delivery slots, at most 2 per receiver host: tenant `default` sends 10 webhooks to a
    receiver that accepts and never answers, then tenant acme's webhook (another host) arrives within a
    second of its task's end. With every slot held by the silent receiver, it would wait ~30 s."""
    limits = {"WEBHOOK_CONCURRENCY": "4", "WEBHOOK_HOST_CONCURRENCY": "2"}
    # The receivers close first: the silent one's open requests end, and the worker stops without waiting.
    async with stack.replica("webhook-slots", ISOLATED_NAMESPACE, **limits) as replica:
        with WebhookReceiver() as silent, WebhookReceiver(host="127.0.0.2") as live:
            silent.respond_with(200, delay_s=600)
            async with replica.client(API_KEYS[0]) as ours, replica.client(OTHER_KEYS[0]) as theirs:
                flood = [
                    await submit(
                        ours, "test_prompt", {"prompt_template": f"f{n}"}, callback_url=silent.url(f"/{n}")
                    )
                    for n in range(10)
                ]
                for task_id in flood:
                    await wait_status(ours, task_id, "completed")
                await asyncio.to_thread(silent.wait_for, 2, 30)
                task_id = await submit(
                    theirs, "test_prompt", {"prompt_template": "b"}, callback_url=live.url("/b")
                )
                status = await wait_status(theirs, task_id, "completed")
                [hook] = await asyncio.to_thread(live.wait_for, 1, 40)
                arrived = time.time() - (time.monotonic() - hook.received_at)
                ended = datetime.fromisoformat(status["completed_at"]).timestamp()
                assert arrived - ended < 1.0, (
                    f"acme's webhook came {arrived - ended:.1f} s after its task ended"
                )
