"""No credential reaches a log line: under every name the service accepts one (headers, query parameters,
connection_init and Socket.IO auth fields), in the forms a log line may hold it (URL, header, dict, JSON)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from taskservice.credential_formats import CREDENTIAL_PARAMETERS
from taskservice.logs import configure_logging, scrub

SECRET = "s3cret-credential-value"
SPELLINGS = {"api_key": ("api_key", "apiKey", "APIKEY", "api-key"), "x-api-key": ("X-API-Key", "x_api_key")}


def _spellings() -> list[str]:
    names: list[str] = []
    for name in CREDENTIAL_PARAMETERS:
        names += [name, *SPELLINGS.get(name, ())]
    return names


def _forms(name: str) -> list[str]:
    return [
        f"GET /api/v1/stream?{name}={SECRET}&x=1",
        f"{name}: {SECRET}",
        f'{{"{name}": "{SECRET}"}}',
        f"{{'{name}': '{SECRET}'}}",
        f"{name}=Bearer {SECRET}",
    ]


@pytest.mark.parametrize("name", _spellings())
def test_every_accepted_credential_name_is_scrubbed(name: str) -> None:
    for line in _forms(name):
        assert SECRET not in scrub(line), line


def test_bearer_tokens_signatures_and_webhook_secrets_are_scrubbed() -> None:
    for line in (
        f"Authorization: Bearer {SECRET}",
        f"https://bucket.example/o?X-Amz-Credential={SECRET}&X-Amz-Signature={SECRET}",
        f"whsec_{SECRET}",
        f"https://cdn.example/o?Expires=1&Signature={SECRET}",
    ):
        assert SECRET not in scrub(line), line
    # Words that merely contain a name are left alone.
    assert (
        scrub("max_tokens=500 tokens=5 model_signature: v2") == "max_tokens=500 tokens=5 model_signature: v2"
    )


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    configure_logging("scrub-test")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    captured = io.StringIO()
    previous = handler.setStream(captured)
    yield captured
    handler.setStream(previous)
    structlog.reset_defaults()


def test_log_lines_hold_no_credential(log_lines: io.StringIO) -> None:
    """Through the real processors: in the message, in a field's value, and as a field named like one."""
    logger = logging.getLogger("taskservice.scrub-test")
    logger.warning("Refused connection_init %s", {"apiKey": SECRET, "token": SECRET})
    logger.warning(
        "Request", extra={"url": f"/socket.io/?apiKey={SECRET}", "api_key": SECRET, "token": SECRET}
    )
    structlog.get_logger("scrub-test").warning("bound", authorization=f"Bearer {SECRET}", x_api_key=SECRET)
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert len(lines) == 3, lines
    assert SECRET not in log_lines.getvalue()
    assert lines[1]["api_key"] == "[redacted]" and lines[1]["url"] == "/socket.io/?apiKey=[redacted]"
