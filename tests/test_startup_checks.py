"""What is refused at start, before anything connects: malformed WEBHOOK_SECRET values, production without
webhook signing (unless WEBHOOK_SIGNING=off), inconsistent Temporal TLS settings; and what `make dev` shows
of the API key."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from taskservice.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def secret_of(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


GOOD = secret_of(b"k" * 32)
MALFORMED = {
    "empty key": "whsec_",
    "23 bytes": secret_of(b"s" * 23),
    "65 bytes": secret_of(b"l" * 65),
    "not base64": "whsec_!!not*base64!!",
    "no prefix": base64.b64encode(b"p" * 32).decode(),
    "second of two": f"{GOOD},{secret_of(b'x' * 8)}",
}


# -- WEBHOOK_SECRET ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret", [secret_of(b"a" * 24), secret_of(b"b" * 64), f" {GOOD} ", f"{GOOD},{GOOD}"]
)
def test_well_formed_secrets_are_accepted(secret: str) -> None:
    keys = Settings(webhook_secret=secret).webhook_signing_keys()
    assert keys and all(24 <= len(key) <= 64 for key in keys)


@pytest.mark.parametrize("secret", ["", "   ", " , "])
def test_empty_secret_means_unsigned(secret: str) -> None:
    settings = Settings(webhook_secret=secret)
    assert settings.webhook_secret is None and settings.webhook_signing_keys() == []


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_secret_refused_without_printing_it(case: str) -> None:
    secret = MALFORMED[case]
    with pytest.raises(ValidationError) as refused:
        Settings(webhook_secret=secret)
    message = str(refused.value)
    assert "WEBHOOK_SECRET" in message
    for payload in (part.removeprefix("whsec_") for part in secret.split(",")):
        assert not payload or payload not in message


@pytest.mark.parametrize("entry_point", [["workers", "default"], ["api"]])
def test_process_with_malformed_secret_exits_with_the_reason(entry_point: list[str], tmp_path: Path) -> None:
    secret = MALFORMED["23 bytes"]
    env = {
        **os.environ,
        "WEBHOOK_SECRET": secret,
        "TEMPORAL_ADDRESS": "127.0.0.1:9",  # never reached: the process must stop before connecting
        "DATA_DIR": str(tmp_path),
        "API_PORT": "9",
    }
    done = subprocess.run(
        [sys.executable, "-m", *entry_point], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "WEBHOOK_SECRET decodes to 23 bytes; 24 to 64 are required" in done.stderr
    assert secret.removeprefix("whsec_") not in done.stdout + done.stderr


def test_validation_errors_never_show_inputs() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(environment="production", openai_api_key="sk-do-not-print-me")
    assert "sk-do-not-print-me" not in str(refused.value)


# -- webhook signing ----------------------------------------------------------------------------------------

PRODUCTION = {"environment": "production", "api_key": "a-production-key-0123456789", "storage_backend": "s3"}


def test_production_refuses_to_send_webhooks_unsigned_unless_told() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**PRODUCTION)
    assert "ENVIRONMENT=production requires WEBHOOK_SECRET (or WEBHOOK_SIGNING=off" in str(refused.value)
    assert Settings(**PRODUCTION, webhook_signing="off").webhook_signing_keys() == []
    assert len(Settings(**PRODUCTION, webhook_secret=GOOD).webhook_signing_keys()) == 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"webhook_signing": "on"}, "WEBHOOK_SIGNING=on requires WEBHOOK_SECRET"),
        (
            {"webhook_signing": "off", "webhook_secret": GOOD},
            "WEBHOOK_SIGNING is off, yet WEBHOOK_SECRET is set",
        ),
    ],
)
def test_inconsistent_webhook_signing_refused(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**fields)
    assert reason in str(refused.value)


def test_production_process_without_webhook_secret_exits_with_the_reason(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "API_KEY": "a-production-key-0123456789",
        "STORAGE_BACKEND": "s3",
        "TEMPORAL_ADDRESS": "127.0.0.1:9",  # never reached: the process must stop before connecting
        "DATA_DIR": str(tmp_path),
        "API_PORT": "9",
    }
    env.pop("WEBHOOK_SECRET", None)
    done = subprocess.run(
        [sys.executable, "-m", "api"], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode != 0
    assert "WEBHOOK_SIGNING=off" in done.stderr


# -- Temporal TLS settings ----------------------------------------------------------------------------------


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "some.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"temporal_tls_cert": "PEM"}, "TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together"),
        ({"temporal_tls_key": "PEM"}, "TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together"),
        ({"temporal_tls_ca": "/nonexistent/ca.pem"}, "TEMPORAL_TLS_CA: no such file: /nonexistent/ca.pem"),
        (
            {"temporal_tls_cert": "PEM", "temporal_tls_key": "/nonexistent/key.pem"},
            "TEMPORAL_TLS_KEY: no such file",
        ),
        ({"temporal_tls": "off", "temporal_tls_ca": "PEM"}, "TEMPORAL_TLS is off, yet TEMPORAL_TLS_CA set"),
    ],
)
def test_inconsistent_temporal_tls_refused(fields: dict[str, str], reason: str, pem: Path) -> None:
    values = {name: str(pem) if value == "PEM" else value for name, value in fields.items()}
    with pytest.raises(ValidationError, match=reason):
        Settings(**values)


def test_when_tls_is_on(pem: Path) -> None:
    assert not Settings().temporal_tls_enabled()
    assert Settings(temporal_tls="on").temporal_tls_enabled()
    assert Settings(temporal_api_key="key").temporal_tls_enabled()
    assert not Settings(temporal_api_key="key", temporal_tls="false").temporal_tls_enabled()
    assert Settings(temporal_tls_ca=pem).temporal_tls_enabled()
    assert Settings(temporal_tls_cert=pem, temporal_tls_key=pem).temporal_tls_enabled()
    # Compose passes `${VAR:-}`: empty values are unset ones.
    empty = Settings(temporal_tls="", temporal_tls_ca="", temporal_api_key="", temporal_tls_cert="")
    assert (
        not empty.temporal_tls_enabled() and empty.temporal_tls_ca is None and empty.temporal_api_key is None
    )


# -- make dev's banner ---------------------------------------------------------------------------------------


def dev_key(tmp_path: Path, **env: str) -> tuple[str, str, str]:
    """Banner key line, curl example's key and exported API_KEY, from scripts/dev_key.sh as dev.sh runs it."""
    (tmp_path / "data").mkdir(exist_ok=True)
    script = (
        f"source {ROOT}/scripts/dev_key.sh; dev_api_key; "
        'printf "%s\\n%s\\n%s" "$KEY_SHOWN" "$KEY_IN_CURL" "${API_KEY:-}"'
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "CELERY_TASK_API_KEY")}
    path = f"{Path(sys.executable).parent}:{clean.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env={**clean, "PATH": path, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    shown, in_curl, exported = done.stdout.split("\n")
    return shown, in_curl, exported


def test_generated_key_is_printed(tmp_path: Path) -> None:
    shown, in_curl, exported = dev_key(tmp_path)
    stored = (tmp_path / "data" / "dev-api-key").read_text().strip()
    assert exported == stored and stored.startswith("dev-")
    assert stored in shown and in_curl == stored
    assert dev_key(tmp_path)[2] == stored  # kept across runs


@pytest.mark.parametrize(
    ("env", "variable", "masked"),
    [
        ({"API_KEY": "my-own-secret-api-key-1"}, "API_KEY", "my-o… (23 characters)"),
        ({"API_KEY": "first-key-of-two-keys,second-key-of-two"}, "API_KEY", "firs… (21 characters)"),
        ({"CELERY_TASK_API_KEY": "short"}, "CELERY_TASK_API_KEY", "****"),
    ],
)
def test_supplied_key_is_shown_masked(
    tmp_path: Path, env: dict[str, str], variable: str, masked: str
) -> None:
    shown, in_curl, _ = dev_key(tmp_path, **env)
    for key in env[variable].split(","):
        assert key not in shown and key not in in_curl
    assert masked in shown and in_curl == f"${variable}"
    assert not (tmp_path / "data" / "dev-api-key").exists()


def test_dev_banner_prints_only_what_dev_key_chose() -> None:
    script = (ROOT / "scripts" / "dev.sh").read_text()
    banner = script[script.index("<<BANNER") : script.index("\nBANNER")]
    assert "$KEY_SHOWN" in banner and "$KEY_IN_CURL" in banner
    assert "$API_KEY" not in banner and "$CELERY_TASK_API_KEY" not in banner
