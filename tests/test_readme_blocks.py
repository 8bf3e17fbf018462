"""The README's Python and TypeScript blocks, as written: the Python ones run (the SDK block against the test
stack, the webhook receiver answering a signed delivery), the TypeScript ones type-check in an app that
installed the SDK as the README says (`npm pack`, then `npm install` of that file).

The shell blocks run in tests/test_readme_session.py. Node's packages come from the SDK's lock file (`npm ci
--prefix clients/typescript`, as `make test` and .ci/run do).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from activities.io.webhooks import sign
from taskservice.credential_formats import decode_webhook_secret
from tests.support.processes import ROOT
from tests.support.stack import API_KEYS, TENANT_WEBHOOK_SECRET, Stack

README = (ROOT / "README.md").read_text()
SDK = ROOT / "clients" / "typescript"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def _run(command: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-6000:]}"
    )
    return done.stdout


def test_the_sdk_block_runs_against_the_stack(stack: Stack, tmp_path: Path) -> None:
    block = next(b for b in _blocks("python") if "TaskServiceClient()" in b)
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_TASK_API_KEY",)}
    env |= {"TASK_SERVICE_URL": stack.api_url, "TASK_SERVICE_API_KEY": API_KEYS[0]}
    out = _run([sys.executable, "-c", block], tmp_path, env=env)
    assert "100% completed" in out and "FAKE-LLM: Create a character" in out, out


def _delivery(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    webhook_id, timestamp = f"msg_{payload['task_id']}_completed", int(time.time())
    keys = [decode_webhook_secret(TENANT_WEBHOOK_SECRET, "test")]
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(keys, webhook_id, timestamp, body),
        "content-type": "application/json",
    }
    return body, headers


def test_the_webhook_receiver_block_runs_and_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    block = next(b for b in _blocks("python") if "webhook_verifier" in b)
    monkeypatch.setenv("TASK_SERVICE_WEBHOOK_SECRET", TENANT_WEBHOOK_SECRET)
    namespace: dict[str, Any] = {"__name__": "readme_webhook_receiver"}
    exec(compile(block, "README.md", "exec"), namespace)
    task_id = str(uuid.uuid4())
    body, headers = _delivery({"task_id": task_id, "project_id": "p", "status": "completed"})
    with TestClient(namespace["app"]) as client:
        for path in ("/api/webhooks/task-complete", "/any-framework"):
            assert client.post(path, content=body, headers=headers).status_code == 200, path
            forged = {**headers, "webhook-signature": "v1,bm9wZQ=="}
            refused = client.post(path, content=body, headers=forged)
            assert refused.status_code == 400, (path, refused.text)
        client.post("/api/webhooks/task-complete", content=body, headers=headers)  # a retried delivery
    assert namespace["seen"] == {headers["webhook-id"]}


def _installed_app(tmp_path: Path) -> Path:
    """An app that installed the SDK the README's way: `npm pack` of the built SDK, then `npm install`."""
    if not (SDK / "node_modules" / ".package-lock.json").is_file():
        pytest.fail("run `npm ci --prefix clients/typescript` first (`make test` does)", pytrace=False)
    _run(["npm", "run", "--prefix", str(SDK), "build"], ROOT)
    packed = _run(["npm", "pack", str(SDK), "--pack-destination", str(tmp_path)], ROOT).split()[-1]
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "app", "private": True, "type": "module"}))
    _run(["npm", "install", "--prefer-offline", "--no-audit", "--no-fund", str(tmp_path / packed)], app)
    return app


def test_the_typescript_blocks_type_check_in_an_app(tmp_path: Path) -> None:
    app = _installed_app(tmp_path)
    blocks = _blocks("typescript")
    assert len(blocks) >= 2
    for index, block in enumerate(blocks):
        (app / f"block{index}.ts").write_text(block)
    tsconfig = {
        "compilerOptions": {
            "target": "ES2022",
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "strict": True,
            "noEmit": True,
            "skipLibCheck": True,
            "types": ["node"],
            "typeRoots": [str(SDK / "node_modules" / "@types")],
        },
        "include": ["block*.ts"],
    }
    (app / "tsconfig.json").write_text(json.dumps(tsconfig))
    _run([str(SDK / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.json"], app)
