"""Credentials of tenants, checked by real API processes: JWTs need `exp` (and `iss`/`aud` where set) and name
a valid tenant, a short JWT_SECRET, a short API or admin key or a malformed API_KEYS entry stops the process
at start without printing the secret, and API_KEYS_FILE may hold a key as its SHA-256 digest."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr, ValidationError

from taskservice.credential_formats import MIN_API_KEY_LENGTH
from taskservice.settings import Settings
from tests.support.processes import ROOT
from tests.support.stack import API_KEYS, JWT_SECRET, OTHER_KEYS, Stack
from tests.support.tasks import submit, wait_status

PROBE = "/api/v1/tasks/metrics"


def _jwt(secret: str = JWT_SECRET, **claims: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


async def _status_with(url: str, token: str) -> int:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        response = await client.get(PROBE)
    if response.status_code == 401:
        assert response.json()["error"] == "authentication_failed"
    return response.status_code


def _refused_start(tmp_path: Path, **env: str) -> str:
    """A real API process with `env`: it must exit before serving; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "api"],
        cwd=ROOT,
        env={
            **os.environ,
            "TEMPORAL_ADDRESS": "127.0.0.1:9",  # never reached: the process stops before connecting
            "DATA_DIR": str(tmp_path),
            "API_PORT": "9",
            "API_KEY": "start-check-key-0123",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    return done.stdout + done.stderr


# --- JWT ---------------------------------------------------------------------------------------------------


async def test_jwt_needs_sub_and_exp_signed_with_the_secret(stack: Stack) -> None:
    later = int(time.time()) + 300
    assert await _status_with(stack.api_url, _jwt(sub="u1", exp=later)) == 200
    refused = {
        "no exp": _jwt(sub="u1"),
        "expired": _jwt(sub="u1", exp=int(time.time()) - 30),
        "no sub": _jwt(exp=later),
        "another secret": _jwt("not-the-stack-secret-but-long-enough-0123", sub="u1", exp=later),
        "unsigned": jwt.encode({"sub": "u1", "exp": later}, key="", algorithm="none"),
    }
    for label, token in refused.items():
        assert await _status_with(stack.api_url, token) == 401, label
    # Without JWT_ISSUER / JWT_AUDIENCE, whatever a token says of them is not checked.
    assert await _status_with(stack.api_url, _jwt(sub="u1", exp=later, iss="anyone", aud="anything")) == 200


@pytest.fixture(scope="module")
def claims_api(stack: Stack) -> Any:
    process, url = stack.start_api(
        "api-jwt-claims", JWT_ISSUER="https://issuer.example", JWT_AUDIENCE="task-service"
    )
    yield url
    process.stop()


async def test_issuer_and_audience_are_checked_when_set(claims_api: str) -> None:
    base = {"sub": "u1", "exp": int(time.time()) + 300}
    right = {"iss": "https://issuer.example", "aud": "task-service"}
    assert await _status_with(claims_api, _jwt(**base, **right)) == 200
    assert await _status_with(claims_api, _jwt(**base, **right | {"aud": ["other", "task-service"]})) == 200
    refused = {
        "wrong issuer": right | {"iss": "https://evil.example"},
        "no issuer": {"aud": "task-service"},
        "wrong audience": right | {"aud": "another-service"},
        "no audience": {"iss": "https://issuer.example"},
    }
    for label, claims in refused.items():
        assert await _status_with(claims_api, _jwt(**base, **claims)) == 401, label


@pytest.mark.parametrize("secret", ["short-secret", "x" * 31, "é" * 15])  # é is two bytes: 30 bytes
def test_short_jwt_secret_stops_the_api_at_start(tmp_path: Path, secret: str) -> None:
    output = _refused_start(tmp_path, JWT_SECRET=secret)
    assert "JWT_SECRET must be at least 32 bytes long" in output
    assert secret not in output


async def test_jwt_secret_of_32_bytes_is_enough(stack: Stack) -> None:
    secret = "s" * 32
    process, url = stack.start_api("api-jwt-32", JWT_SECRET=secret)
    try:
        token = _jwt(secret, sub="u1", exp=int(time.time()) + 300)
        assert await _status_with(url, token) == 200
    finally:
        process.stop()


# --- API keys ----------------------------------------------------------------------------------------------


async def test_api_keys_file_with_a_digest_entry(stack: Stack, tmp_path: Path) -> None:
    """`beta=sha256:<hex>` accepts the key whose digest it is (and not the digest itself); the file's tenants
    are tenants like any other: a task of beta is beta's, with either of its keys, and no one else's."""
    digest = hashlib.sha256(b"beta-tenant-key-1").hexdigest()
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(
        f"# tenants of this deployment\nbeta=sha256:{digest.upper()}  # the digest only\n"
        "gamma=gamma-tenant-key-1, beta=beta-tenant-key-2\n"
    )
    process, url = stack.start_api("api-keys-file", API_KEYS_FILE=str(keys_file))
    try:
        clients = {
            key: httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=30)
            for key in (
                "beta-tenant-key-1",
                "beta-tenant-key-2",
                "gamma-tenant-key-1",
                API_KEYS[0],
                OTHER_KEYS[0],
            )
        }
        for refused in (f"sha256:{digest}", digest, "beta-tenant-key-3"):
            async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": refused}) as client:
                assert (await client.get(PROBE)).status_code == 401, refused
        task_id = await submit(clients["beta-tenant-key-1"], "test_prompt", {"prompt_template": "beta's own"})
        assert (await wait_status(clients["beta-tenant-key-2"], task_id))["status"] == "completed"
        for other in ("gamma-tenant-key-1", API_KEYS[0], OTHER_KEYS[0]):
            response = await clients[other].get(f"/api/v1/tasks/{task_id}/status")
            assert response.status_code == 404 and response.json()["error"] == "task_not_found", other
        for client in clients.values():
            await client.aclose()
    finally:
        process.stop()


MALFORMED_KEYS = {
    "no tenant": ({"API_KEYS": "acme-s3cret-without-tenant"}, "API_KEYS entry 1 must be tenant=key"),
    "bad tenant name": (
        {"API_KEYS": "ok=k-one-long-enough,bad tenant!=s3cret-bad-tenant"},
        "API_KEYS entry 2 must be",
    ),
    "empty key": ({"API_KEYS": "acme="}, "API_KEYS entry 1 must be tenant=key"),
    "short digest": (
        {"API_KEYS": "acme=sha256:abc123s3cret"},
        "API_KEYS entry 1: a sha256: key must be 64 hex digits",
    ),
}


@pytest.mark.parametrize("case", MALFORMED_KEYS)
def test_malformed_api_keys_stop_the_api_without_echoing_them(tmp_path: Path, case: str) -> None:
    env, reason = MALFORMED_KEYS[case]
    output = _refused_start(tmp_path, **env)
    assert reason in output
    for secret in ("s3cret-without-tenant", "s3cret-bad-tenant", "abc123s3cret"):
        assert secret not in output


def test_malformed_or_missing_api_keys_file_stops_the_api(tmp_path: Path) -> None:
    keys_file = tmp_path / "api-keys"
    keys_file.write_text("beta=fine-key\nfile-s3cret-without-tenant\n")
    output = _refused_start(tmp_path, API_KEYS_FILE=str(keys_file))
    assert "API_KEYS_FILE entry 2 must be tenant=key" in output and "file-s3cret" not in output
    missing = _refused_start(tmp_path, API_KEYS_FILE=str(tmp_path / "nowhere"))
    assert "API_KEYS_FILE cannot be read" in missing


# --- tenant names and key lengths --------------------------------------------------------------------------


async def test_a_jwt_must_name_a_valid_tenant(stack: Stack) -> None:
    """A tenant named `org/team` would make the `tenant/project` scope ambiguous: such a token is refused."""
    later = int(time.time()) + 300
    assert await _status_with(stack.api_url, _jwt(sub="u1", exp=later, tenant="org-team.eu_1")) == 200
    for bad in ("org/team", "../acme", "has space", "x" * 65, "-leading-dash"):
        assert await _status_with(stack.api_url, _jwt(sub="u1", exp=later, tenant=bad)) == 401, bad


def test_jwt_default_tenant_must_be_a_tenant_name() -> None:
    with pytest.raises(ValidationError, match="JWT_DEFAULT_TENANT must be a tenant name"):
        Settings(jwt_default_tenant="org/team")


SHORT = "short-s3cret-key"[: MIN_API_KEY_LENGTH - 1]
SHORT_KEYS = {
    "API_KEY or CELERY_TASK_API_KEY": {"api_key": SecretStr(f"{API_KEYS[0]},{SHORT}")},
    "API_KEY or CELERY_TASK_API_KEY ": {"celery_task_api_key": SecretStr(SHORT)},
    "API_KEYS or API_KEYS_FILE": {"api_keys": SecretStr(f"acme={SHORT}")},
    "ADMIN_API_KEY": {"admin_api_key": SecretStr(SHORT)},
}


@pytest.mark.parametrize("variable", SHORT_KEYS)
def test_short_api_and_admin_keys_are_refused(variable: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**SHORT_KEYS[variable])
    message = str(refused.value)
    assert f"{variable.strip()}: every key must be at least {MIN_API_KEY_LENGTH} characters long" in message
    assert SHORT not in message


def test_a_short_key_stops_the_api_and_a_digest_entry_is_not_measured(tmp_path: Path) -> None:
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"beta=sha256:{hashlib.sha256(b'x').hexdigest()}\ngamma={SHORT}\n")
    output = _refused_start(tmp_path, API_KEYS_FILE=str(keys_file))
    assert "API_KEYS or API_KEYS_FILE: every key must be at least" in output and SHORT not in output
    keys_file.write_text(f"beta=sha256:{hashlib.sha256(b'x').hexdigest()}\n")
    assert Settings(api_keys_file=keys_file).tenant_keys()[0][0] == "beta"
