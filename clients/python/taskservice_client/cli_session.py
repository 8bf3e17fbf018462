"""What every ``taskctl`` command shares: its settings, its session (client, output, errors as exit codes),
its common options, and reading a JSON option."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from taskservice_client.cli_output import Output, UsageError
from taskservice_client.client import TaskServiceClient
from taskservice_client.errors import AuthenticationError, ConflictError, TaskServiceError, ValidationError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output (no colour).")]
TimeoutOption = Annotated[
    float | None, typer.Option("--timeout", help="Give up after this many seconds (default: no limit).")
]


@dataclass
class Settings:
    url: str | None = None
    api_key: str | None = None
    json: bool = False
    http_timeout: float = 30.0


def exit_code(err: TaskServiceError | UsageError) -> int:
    return EXIT_USAGE if isinstance(err, UsageError | ValidationError | ConflictError) else EXIT_FAILURE


@contextmanager
def session(ctx: typer.Context, as_json: bool) -> Iterator[tuple[TaskServiceClient, Output]]:
    """The client and output of one command; maps SDK errors to a one-line message and an exit code."""
    settings: Settings = ctx.ensure_object(Settings)
    out = Output(as_json=as_json or settings.json)
    try:
        with TaskServiceClient(settings.url, settings.api_key, timeout=settings.http_timeout) as client:
            yield client, out
    except (TaskServiceError, UsageError) as err:
        out.error(err)
        if isinstance(err, AuthenticationError):
            out.hint(key_hint(settings))
        raise typer.Exit(exit_code(err)) from None


def key_hint(settings: Settings) -> str:
    """What to do about a refused key: where taskctl takes it from, and where `make dev` keeps its own."""
    given = (
        settings.api_key or os.environ.get("TASK_SERVICE_API_KEY") or os.environ.get("CELERY_TASK_API_KEY")
    )
    where = "--api-key, else TASK_SERVICE_API_KEY, else CELERY_TASK_API_KEY"
    found = "the key given was refused" if given else "no API key was given"
    dev = "make dev's key: export TASK_SERVICE_API_KEY=$(cat data/dev-api-key)"
    return f"Hint: {found}; taskctl reads {where} ({dev})"


def load_json_object(value: str, option: str) -> dict[str, Any]:
    """``--data``/``--metadata``: inline JSON, ``@file.json`` or ``@-`` (stdin); must be an object."""
    source = value
    if value.startswith("@"):
        name = value[1:]
        try:
            source = sys.stdin.read() if name == "-" else Path(name).read_text()
        except OSError as err:
            raise UsageError(f"{option}: cannot read {name}: {err.strerror or err}") from None
    try:
        parsed = json.loads(source)
    except ValueError as err:
        raise UsageError(f"{option} is not valid JSON: {err}") from None
    if not isinstance(parsed, dict):
        raise UsageError(f"{option} must be a JSON object")
    return parsed
