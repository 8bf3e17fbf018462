"""Per-tenant webhook signing at the activity, checked with the reference `standardwebhooks` library: a
tenant's delivery verifies with its own secret only, a rotation carries both generations' signatures for its
overlap, a failure's traceback names no host path (or is null). One receiver host cannot take every slot."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.io.webhooks import WebhookActivities
from taskservice.contracts import TaskStatus, WebhookDelivery, WebhookPayload
from taskservice.host_paths import scrub_host_paths
from taskservice.settings import Settings
from taskservice.timefmt import iso_z
from taskservice.webhook_secrets import SecretGeneration, tenant_secret
from tests.support.webhook_receiver import ReceivedWebhook, WebhookReceiver

MASTER_KEY = b"m" * 32
MASTER = "whsec_" + base64.b64encode(MASTER_KEY).decode()
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/activities/llm/activities.py", line 12, in run\n'
    '  File "/opt/venv/lib/python3.11/site-packages/httpx/_client.py", line 3, in send\n'
    "OSError: cannot open /home/deploy/models/weights.bin"
)


def delivery(url: str, tenant: str, **payload: Any) -> WebhookDelivery:
    return WebhookDelivery(
        url=url,
        payload=WebhookPayload(
            task_id=f"t-{tenant}",
            project_id="signing",
            task_type="test_prompt",
            status=TaskStatus.FAILED,
            failed_at="2026-01-01T00:00:00Z",
            **payload,
        ),
        webhook_id=f"msg_t-{tenant}_failed",
        task_id=f"t-{tenant}",
        project_id="signing",
        task_type="test_prompt",
        event="failed",
        tenant=tenant,
    )


def settings(**overrides: Any) -> Settings:
    return Settings(
        **{"webhook_timeout_s": 5.0, "webhook_secret": MASTER, "webhook_allow_private": True, **overrides}
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def send(activities: WebhookActivities, one: WebhookDelivery) -> int:
    result: int = await ActivityEnvironment().run(activities.deliver_webhook, one)
    return result


def verifies(secret: str, hook: ReceivedWebhook) -> bool:
    """What a receiver using the reference library with `secret` concludes."""
    try:
        Webhook(secret).verify(hook.body_bytes, hook.headers)
    except WebhookVerificationError:
        return False
    return True


async def test_each_tenant_verifies_only_with_its_own_secret(
    webhook_receiver: WebhookReceiver, http: httpx.AsyncClient
) -> None:
    activities = WebhookActivities(settings(), http)
    for tenant in ("acme", "globex"):
        assert await send(activities, delivery(webhook_receiver.url(f"/{tenant}"), tenant)) == 200
    hooks = {hook.path.strip("/"): hook for hook in webhook_receiver.received}
    acme, globex = (tenant_secret(MASTER_KEY, tenant, 0) for tenant in ("acme", "globex"))
    assert acme != globex
    assert verifies(acme, hooks["acme"]) and verifies(globex, hooks["globex"])
    assert not verifies(globex, hooks["acme"]) and not verifies(acme, hooks["globex"])
    # Neither the master secret nor a later generation of the tenant's own verifies.
    assert not verifies(MASTER, hooks["acme"]) and not verifies(
        tenant_secret(MASTER_KEY, "acme", 1), hooks["acme"]
    )


async def test_a_rotation_signs_with_both_generations_until_its_overlap_ends(
    webhook_receiver: WebhookReceiver, http: httpx.AsyncClient
) -> None:
    state = SecretGeneration(1, 0, iso_z(datetime.now(UTC) + timedelta(hours=24)))

    async def generations(tenant: str) -> SecretGeneration:
        return state if tenant == "acme" else SecretGeneration()

    activities = WebhookActivities(settings(), http, generations=generations)
    await send(activities, delivery(webhook_receiver.url("/during"), "acme"))
    state = SecretGeneration(1, 0, iso_z(datetime.now(UTC) - timedelta(seconds=1)))
    await send(activities, delivery(webhook_receiver.url("/after"), "acme"))
    during, after = webhook_receiver.received
    old, new = (tenant_secret(MASTER_KEY, "acme", generation) for generation in (0, 1))
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verifies(old, during) and verifies(new, during)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert verifies(new, after) and not verifies(old, after)


@pytest.mark.parametrize("include", [True, False])
async def test_failure_traceback_has_no_host_paths_or_is_null(
    include: bool, webhook_receiver: WebhookReceiver, http: httpx.AsyncClient
) -> None:
    activities = WebhookActivities(settings(webhook_include_traceback=include), http)
    await send(activities, delivery(webhook_receiver.url("/tb"), "acme", traceback=TRACEBACK, error="e"))
    [hook] = webhook_receiver.received
    assert hook.json is not None
    if not include:
        assert hook.json["traceback"] is None
        return
    sent = hook.json["traceback"]
    assert 'File "activities/llm/activities.py", line 12' in sent
    assert 'File "httpx/_client.py"' in sent
    assert "/srv" not in sent and "/opt" not in sent and "/home" not in sent
    assert verifies(tenant_secret(MASTER_KEY, "acme", 0), hook)


def test_host_paths_are_cut_and_urls_kept() -> None:
    text = "cannot read /data/models/tiny-sd/unet.bin (see https://example.com/a/b, s3://bucket/k/x.png)"
    assert scrub_host_paths(text) == (
        "cannot read …/unet.bin (see https://example.com/a/b, s3://bucket/k/x.png)"
    )
    assert scrub_host_paths('File "/usr/lib/python3.11/asyncio/tasks.py"') == 'File "asyncio/tasks.py"'
    assert scrub_host_paths(None) is None


async def test_a_busy_receiver_host_gets_no_more_slots_and_others_go_through(http: httpx.AsyncClient) -> None:
    """WEBHOOK_HOST_CONCURRENCY=1: while a delivery hangs on one host, the next to that host fails at once
    (a retryable attempt), and a delivery to another host is sent meanwhile."""
    with WebhookReceiver() as slow, WebhookReceiver(host="127.0.0.2") as other:
        slow.respond_with(200, delay_s=30)
        activities = WebhookActivities(settings(webhook_host_concurrency=1), http)
        hanging = asyncio.create_task(send(activities, delivery(slow.url("/hang"), "acme")))
        await asyncio.to_thread(slow.wait_for, 1, 10)
        started = time.monotonic()
        with pytest.raises(ApplicationError) as busy:
            await send(activities, delivery(slow.url("/second"), "acme"))
        assert "busy" in busy.value.message and not busy.value.non_retryable
        assert await send(activities, delivery(other.url("/elsewhere"), "globex")) == 200
        assert time.monotonic() - started < 1.0
        hanging.cancel()
        with pytest.raises((asyncio.CancelledError, ApplicationError, Exception)):
            await hanging
