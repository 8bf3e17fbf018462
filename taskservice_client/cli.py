"""``taskctl``: the task service from a shell (typer + rich).

Global options come before the command (``taskctl --json --url http://host:8001 status ID``); ``--json`` is
also accepted after it. The URL and key default to ``TASK_SERVICE_URL`` and ``TASK_SERVICE_API_KEY`` (or
``CELERY_TASK_API_KEY``).

Exit codes: 0 success; 1 the task failed / was cancelled / timed out, or the service answered an error or
could not be reached; 2 usage errors and requests the service rejected as invalid (400, 422).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from rich import box
from rich.console import Console
from rich.json import JSON
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from taskservice_client.client import TaskServiceClient, __version__
from taskservice_client.errors import (
    ConflictError,
    TaskCancelledError,
    TaskFailedError,
    TaskServiceError,
    ValidationError,
    WaitTimeoutError,
)
from taskservice_client.models import TaskState, TaskStatus

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
STATE_STYLE = {
    TaskState.QUEUED: "yellow",
    TaskState.PROCESSING: "cyan",
    TaskState.COMPLETED: "green",
    TaskState.FAILED: "red",
    TaskState.CANCELLED: "magenta",
}
PIPE_WIDTH = 160
HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "warning": "yellow"}

app = typer.Typer(
    name="taskctl",
    help="Submit, follow and manage tasks of the task service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output (no colour).")]
TaskIdArg = Annotated[str, typer.Argument(help="Task ID.", show_default=False)]
TimeoutOption = Annotated[
    float | None, typer.Option("--timeout", help="Give up after this many seconds (default: no limit).")
]
IntervalOption = Annotated[float, typer.Option("--interval", help="Seconds between polls.", min=0.05)]


class UsageError(Exception):
    """Bad command-line input found by taskctl itself (exit code 2)."""


@dataclass
class Settings:
    url: str | None = None
    api_key: str | None = None
    json: bool = False
    http_timeout: float = 30.0


@dataclass
class Output:
    """Human (rich) or machine (JSON) output."""

    as_json: bool

    @property
    def console(self) -> Console:
        # Piped output is not cut to 80 columns (task IDs and steps stay whole); COLUMNS still wins.
        wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
        return Console(highlight=False, width=PIPE_WIDTH if wide else None)

    def data(self, value: Any, *, compact: bool = False) -> None:
        """Print a model, list of models or plain value as JSON (only used with --json)."""
        typer.echo(json.dumps(_plain(value), indent=None if compact else 2, ensure_ascii=False))

    def error(self, err: TaskServiceError | UsageError) -> None:
        if self.as_json:
            body = (
                err.to_dict()
                if isinstance(err, TaskServiceError)
                else {"error": "usage", "message": str(err)}
            )
            typer.echo(json.dumps(body, ensure_ascii=False), err=True)
        else:
            Console(stderr=True, highlight=False).print(Text(f"Error: {err}", style="red"), soft_wrap=True)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _exit_code(err: TaskServiceError | UsageError) -> int:
    return EXIT_USAGE if isinstance(err, UsageError | ValidationError | ConflictError) else EXIT_FAILURE


@contextmanager
def _session(ctx: typer.Context, as_json: bool) -> Iterator[tuple[TaskServiceClient, Output]]:
    """The client and output of one command; maps SDK errors to a one-line message and an exit code."""
    settings: Settings = ctx.ensure_object(Settings)
    out = Output(as_json=as_json or settings.json)
    try:
        with TaskServiceClient(settings.url, settings.api_key, timeout=settings.http_timeout) as client:
            yield client, out
    except (TaskServiceError, UsageError) as err:
        out.error(err)
        raise typer.Exit(_exit_code(err)) from None


def _load_json_object(value: str, option: str) -> dict[str, Any]:
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


def _when(value: datetime | None, *, short: bool = False) -> str:
    return value.astimezone().strftime("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S") if value else "-"


def _state(state: TaskState) -> Text:
    return Text(state.value, style=STATE_STYLE.get(state, ""))


def _print_status(out: Output, status: TaskStatus, *, with_result: bool = True) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("task_id", status.task_id)
    table.add_row("project", status.project_id)
    table.add_row("type", status.task_type)
    table.add_row("status", _state(status.status))
    table.add_row("progress", f"{status.progress * 100:.0f}%")
    if status.current_step and status.current_step != status.status.value:
        table.add_row("step", status.current_step)
    table.add_row("attempt", str(status.attempt))
    if status.retry_of:
        table.add_row("retry_of", status.retry_of)
    table.add_row("created", _when(status.created_at))
    table.add_row("started", _when(status.started_at))
    table.add_row("completed", _when(status.completed_at))
    if status.processing_time is not None:
        table.add_row("took", f"{status.processing_time:.2f} s")
    if status.error:
        table.add_row("error", Text(status.error, style="red"))
    console = out.console
    console.print(table)
    if with_result and status.result is not None:
        console.print(JSON.from_data(status.result))


def _follow(
    client: TaskServiceClient,
    out: Output,
    task_id: str,
    *,
    timeout: float | None,
    interval: float,
    live: bool,
) -> NoReturn:
    """Follow a task to its end (live progress bar, NDJSON lines with --json, or quietly); exit 0 when it
    completed, 1 when it failed, was cancelled or the timeout passed."""
    final: TaskStatus
    try:
        if out.as_json or not live:
            on_progress = (lambda s: out.data(s, compact=True)) if (out.as_json and live) else None
            final = client.wait(task_id, timeout=timeout, poll_interval=interval, on_progress=on_progress)
        else:
            final = _follow_with_bar(client, out, task_id, timeout=timeout, interval=interval)
    except (TaskFailedError, TaskCancelledError) as err:
        final = err.status
    except WaitTimeoutError as err:
        out.error(err)
        raise typer.Exit(EXIT_FAILURE) from None
    except KeyboardInterrupt:
        out.error(
            TaskServiceError(f"Stopped following {task_id}; the task itself goes on", error="interrupted")
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if out.as_json:
        if not live:
            out.data(final)
    else:
        _print_status(out, final)
    raise typer.Exit(EXIT_OK if final.status is TaskState.COMPLETED else EXIT_FAILURE)


def _follow_with_bar(
    client: TaskServiceClient, out: Output, task_id: str, *, timeout: float | None, interval: float
) -> TaskStatus:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out.console, transient=False) as progress:
        bar = progress.add_task(task_id, total=100)

        def show(status: TaskStatus) -> None:
            step = (
                f" · {status.current_step}" if status.current_step not in (None, status.status.value) else ""
            )
            attempt = f" (attempt {status.attempt})" if status.attempt > 1 else ""
            style = STATE_STYLE.get(status.status, "")
            description = f"{status.task_type} [{style}]{status.status.value}[/{style}]{attempt}{step}"
            progress.update(bar, completed=status.progress * 100, description=description)

        return client.wait(task_id, timeout=timeout, poll_interval=interval, on_progress=show)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"taskctl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option("--url", help="API base URL (env TASK_SERVICE_URL; default http://localhost:8001)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="API key (env TASK_SERVICE_API_KEY, else CELERY_TASK_API_KEY)."),
    ] = None,
    as_json: JsonOption = False,
    http_timeout: Annotated[float, typer.Option("--http-timeout", help="Seconds per HTTP request.")] = 30.0,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_version)
    ] = False,
) -> None:
    """Submit, follow and manage tasks of the task service."""
    ctx.obj = Settings(url=url, api_key=api_key, json=as_json, http_timeout=http_timeout)


@app.command()
def submit(
    ctx: typer.Context,
    task_type: Annotated[str, typer.Argument(help="Task type, e.g. test_prompt, generate_video.")],
    project: Annotated[str, typer.Option("--project", "-p", help="Project ID.", show_default=False)],
    data: Annotated[
        str, typer.Option("--data", "-d", help="task_data: JSON object, @file.json, or @- for stdin.")
    ] = "{}",
    priority: Annotated[int, typer.Option(min=1, max=3, help="1 high, 2 normal, 3 low.")] = 2,
    callback_url: Annotated[str | None, typer.Option(help="Webhook called when the task ends.")] = None,
    metadata: Annotated[str | None, typer.Option(help="Metadata: JSON object or @file.json.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Repeat-safe submit: the same key returns the same task.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Then follow the task to its end (like watch).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the task ID.")] = False,
    timeout: TimeoutOption = None,
    interval: IntervalOption = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Submit a task; with --wait, follow it to its end."""
    with _session(ctx, as_json) as (client, out):
        task_data = _load_json_object(data, "--data")
        meta = _load_json_object(metadata, "--metadata") if metadata is not None else None
        result = client.submit(
            project,
            task_type,
            task_data,
            priority=priority,
            callback_url=callback_url,
            metadata=meta,
            idempotency_key=idempotency_key,
        )
        if quiet and not wait:
            typer.echo(result.task_id)
        elif out.as_json and not wait:
            out.data(result)
        elif not out.as_json:
            replay = " (existing task: idempotent replay)" if result.replayed else ""
            out.console.print(
                f"Submitted [bold]{result.task_id}[/bold] ({task_type}, {_state(result.status).markup}, "
                f"~{result.estimated_duration} s, queue position {result.queue_position}){replay}"
            )
        if wait:
            _follow(client, out, result.task_id, timeout=timeout, interval=interval, live=not out.as_json)


@app.command()
def status(ctx: typer.Context, task_id: TaskIdArg, as_json: JsonOption = False) -> None:
    """Show a task's status, progress, result or error."""
    with _session(ctx, as_json) as (client, out):
        current = client.status(task_id)
        if out.as_json:
            out.data(current)
        else:
            _print_status(out, current)


@app.command()
def watch(
    ctx: typer.Context,
    task_id: TaskIdArg,
    timeout: TimeoutOption = None,
    interval: IntervalOption = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Follow a task with a live progress bar; exit 0 if it completed, 1 if it failed or was cancelled.

    With --json, prints one JSON status per line (each change), the last one being the final status."""
    with _session(ctx, as_json) as (client, out):
        _follow(client, out, task_id, timeout=timeout, interval=interval, live=True)


@app.command()
def wait(
    ctx: typer.Context,
    task_id: TaskIdArg,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up after this many seconds.")
    ] = 600.0,
    interval: IntervalOption = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Wait quietly for a task to end and print its final status; exit 0 if it completed, 1 otherwise."""
    with _session(ctx, as_json) as (client, out):
        _follow(client, out, task_id, timeout=timeout, interval=interval, live=False)


@app.command()
def cancel(ctx: typer.Context, task_id: TaskIdArg, as_json: JsonOption = False) -> None:
    """Cancel a queued or running task."""
    with _session(ctx, as_json) as (client, out):
        result = client.cancel(task_id)
        if out.as_json:
            out.data(result)
        else:
            out.console.print(
                f"Cancelled [bold]{result.task_id}[/bold] (was {_state(result.previous_state).markup}): "
                f"{result.message}"
            )


@app.command()
def retry(
    ctx: typer.Context,
    task_id: TaskIdArg,
    wait: Annotated[bool, typer.Option("--wait", help="Then follow the new task to its end.")] = False,
    timeout: TimeoutOption = None,
    interval: IntervalOption = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Run a finished task again as a new task."""
    with _session(ctx, as_json) as (client, out):
        result = client.retry(task_id)
        if out.as_json and not wait:
            out.data(result)
        elif not out.as_json:
            out.console.print(
                f"Retrying [bold]{result.original_task_id}[/bold] as [bold]{result.new_task_id}[/bold] "
                f"({_state(result.status).markup})"
            )
        if wait:
            _follow(client, out, result.new_task_id, timeout=timeout, interval=interval, live=not out.as_json)


@app.command("list")
def list_(
    ctx: typer.Context,
    project: Annotated[str, typer.Option("--project", "-p", help="Project ID.", show_default=False)],
    state: Annotated[TaskState | None, typer.Option("--status", help="Only tasks in this status.")] = None,
    task_type: Annotated[str | None, typer.Option("--type", help="Only tasks of this type.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="At most N tasks (0: all).")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List a project's tasks, newest first."""
    with _session(ctx, as_json) as (client, out):
        page_size = min(limit, 100) if limit else 100
        tasks = list(
            client.list_tasks(project, state, task_type, page_size=page_size, max_items=limit or None)
        )
        if out.as_json:
            out.data(tasks)
            return
        console = out.console
        table = Table(title=f"Tasks of {project}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("task_id", no_wrap=True, min_width=36)
        table.add_column("type", overflow="fold")
        table.add_column("status", no_wrap=True, min_width=10)
        # Narrow terminals get the essential columns only (the rest is one `taskctl status` away).
        optional = [(100, "created"), (112, "took"), (140, "error")]
        shown = {name for width, name in optional if console.width >= width}
        if "created" in shown:
            table.add_column("created", no_wrap=True)
        if "took" in shown:
            table.add_column("took", no_wrap=True, justify="right")
        if "error" in shown:
            table.add_column("error", overflow="ellipsis", no_wrap=True, max_width=console.width - 110)
        for task in tasks:
            row: list[str | Text] = [task.task_id, task.task_type, _state(task.status)]
            if "created" in shown:
                row.append(_when(task.created_at, short=True))
            if "took" in shown:
                took = (task.completed_at - task.created_at).total_seconds() if task.completed_at else None
                row.append("-" if took is None else f"{took:.1f} s")
            if "error" in shown:
                row.append(Text(task.error or "", style="red"))
            table.add_row(*row)
        console.print(table)
        console.print(f"{len(tasks)} task(s)")


@app.command()
def health(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Service health: Temporal, workers, queue backlogs, load; exit 1 when unhealthy."""
    with _session(ctx, as_json) as (client, out):
        result = client.health()
        if out.as_json:
            out.data(result)
        else:
            table = Table.grid(padding=(0, 2))
            table.add_column(style="bold")
            table.add_column()
            table.add_row("status", Text(result.status, style=HEALTH_STYLE.get(result.status, "red")))
            table.add_row("temporal", result.temporal_status)
            table.add_row("workers", str(result.worker_count))
            for queue, size in sorted(result.queue_sizes.items()):
                table.add_row(f"queue {queue}", f"{size} waiting")
            load = result.system_load
            table.add_row("cpu", f"{load.cpu_percent:.0f}%")
            table.add_row("memory", f"{load.memory_percent:.0f}%")
            if load.gpu_utilization:
                table.add_row("gpu", ", ".join(f"{g:.0f}%" for g in load.gpu_utilization))
            table.add_row("uptime", f"{result.uptime} s")
            out.console.print(table)
        if result.status == "unhealthy":
            raise typer.Exit(EXIT_FAILURE)


@app.command()
def metrics(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Cumulative task counters, success/failure rates and average durations."""
    with _session(ctx, as_json) as (client, out):
        result = client.metrics()
        if out.as_json:
            out.data(result)
            return
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(justify="right")
        for name in ("total_tasks", "completed_tasks", "failed_tasks", "cancelled_tasks", "retried_tasks"):
            table.add_row(name.removesuffix("_tasks"), str(getattr(result, name)))
        table.add_row("running", str(result.currently_running))
        table.add_row("success rate", f"{result.success_rate:.1f}%")
        table.add_row("failure rate", f"{result.failure_rate:.1f}%")
        for task_type, seconds in result.average_durations.items():
            table.add_row(f"avg {task_type}", f"{seconds:.2f} s")
        out.console.print(table)


@app.command()
def alerts(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Task-queue alerts (failure rate, long tasks, worker memory); exit 1 when critical."""
    with _session(ctx, as_json) as (client, out):
        result = client.queue_health()
        if out.as_json:
            out.data(result)
        else:
            out.console.print(Text(result.status, style=HEALTH_STYLE.get(result.status, "red")))
            for alert in result.alerts:
                style = "red" if alert.severity == "critical" else "yellow"
                out.console.print(Text(f"[{alert.severity}] {alert.message}", style=style))
        if result.status == "critical":
            raise typer.Exit(EXIT_FAILURE)


if __name__ == "__main__":
    app()
