"""The TypeScript SDK (clients/typescript): its committed types are what the live OpenAPI document generates,
and its own node:test suite passes against the real stack these tests start.

Node's packages come from the committed lock file (`npm ci`, which `make test` and `.ci/run` run): without
them these tests fail and say so, since skipping would let CI pass without testing the SDK.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.io.webhooks import sign
from taskservice.credential_formats import decode_webhook_secret
from tests.support.stack import API_KEYS, TENANT_WEBHOOK_SECRET, Stack
from tests.support.tasks import submit, wait_status
from tests.support.webhook_receiver import ReceivedWebhook, WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "clients" / "typescript"
# A second secret, as a rotation adds it before the old one (the service then signs with both).
NEW_SECRET = "whsec_" + base64.b64encode(b"task-service-rotated-secret-32by").decode()
STALE_S = 600


def _node_modules() -> Path:
    modules = SDK / "node_modules"
    if not (modules / ".package-lock.json").is_file():
        pytest.fail(
            "clients/typescript/node_modules is missing: run `npm ci --prefix clients/typescript` "
            "(`make test` and .ci/run do it)",
            pytrace=False,
        )
    return modules


def _run(command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output[-8000:]}"
    return output


def test_committed_types_are_the_live_documents(tmp_path: Path) -> None:
    """src/schema.ts is what `make ts-types` generates now (same script, same generator and flags)."""
    modules = _node_modules()
    document = tmp_path / "openapi.json"
    _run([sys.executable, "scripts/openapi_document.py", str(document)], ROOT, 120)
    package = json.loads((SDK / "package.json").read_text())
    flags = package["scripts"]["generate"].split()[2:-2]  # between the input and `-o <out>`
    generated = tmp_path / "schema.ts"
    _run(
        [str(modules / ".bin" / "openapi-typescript"), str(document), *flags, "-o", str(generated)], SDK, 120
    )
    committed = (SDK / "src" / "schema.ts").read_text()
    assert generated.read_text() == committed, (
        "clients/typescript/src/schema.ts differs from the API's OpenAPI document: run `make ts-types`"
    )


def _signed_copy(delivery: ReceivedWebhook, secrets: list[str], timestamp: int) -> dict[str, Any]:
    """The delivery as the service signs it with `secrets` (a rotation) at `timestamp`."""
    keys = [decode_webhook_secret(secret, "test") for secret in secrets]
    webhook_id = delivery.headers["webhook-id"]
    headers = delivery.headers | {
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(keys, webhook_id, timestamp, delivery.body_bytes),
    }
    return {"headers": headers, "body": delivery.body_bytes.decode()}


async def _captured_deliveries(api: httpx.AsyncClient, receiver: WebhookReceiver, out: Path) -> Path:
    """A webhook the stack really sent, and the same one re-signed as a rotation and as a stale replay."""
    task_id = await submit(
        api,
        "test_prompt",
        {"prompt_template": "signed"},
        project_id="ts-sdk-webhooks",
        callback_url=receiver.url(),
    )
    await wait_status(api, task_id, "completed")
    delivery = (await asyncio.to_thread(receiver.wait_for, 1, 60))[0]
    now = int(time.time())
    deliveries = {
        "secret": TENANT_WEBHOOK_SECRET,
        "real": {"headers": delivery.headers, "body": delivery.body_bytes.decode()},
        "rotated": _signed_copy(delivery, [NEW_SECRET, TENANT_WEBHOOK_SECRET], now)
        | {"secrets": [NEW_SECRET, TENANT_WEBHOOK_SECRET]},
        "stale": _signed_copy(delivery, [TENANT_WEBHOOK_SECRET], now - STALE_S),
    }
    out.write_text(json.dumps(deliveries))
    return out


async def test_sdk_suite_passes_against_the_stack(
    stack: Stack, api: httpx.AsyncClient, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """`npm test` (tsc, then node --test) with the stack's URL, a key and real signed deliveries."""
    _node_modules()
    deliveries = await _captured_deliveries(api, webhook_receiver, tmp_path / "deliveries.json")
    env = os.environ | {
        "TASK_SERVICE_URL": stack.api_url,
        "TASK_SERVICE_API_KEY": API_KEYS[0],
        "TS_SDK_WEBHOOK_DELIVERIES": str(deliveries),
    }
    command = ["npm", "test", "--silent"]
    done = await asyncio.create_subprocess_exec(
        *command, cwd=SDK, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output = (await asyncio.wait_for(done.communicate(), timeout=600))[0].decode()
    assert done.returncode == 0, f"npm test exited {done.returncode}:\n{output[-12000:]}"
    counts = {name: int(n) for name, n in re.findall(r"^ℹ (tests|pass|fail) (\d+)$", output, re.MULTILINE)}
    assert counts.get("fail") == 0 and counts.get("pass", 0) >= 20, output[-4000:]
