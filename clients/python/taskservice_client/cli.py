"""``taskctl``: the task service from a shell (typer + rich). Global options come before the command
(``taskctl --json --url http://host:8001 status ID``; ``--json`` also after it); URL and key default to
``TASK_SERVICE_URL`` and ``TASK_SERVICE_API_KEY`` (or ``CELERY_TASK_API_KEY``). Exit codes: 0 success;
1 the task failed / was cancelled / timed out, or the service answered an error or could not be reached;
2 usage errors and requests the service rejected as invalid (400, 422). ``pipeline …``: cli_pipelines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from pydantic import BaseModel

from taskservice_client.cli_download import save_media
from taskservice_client.cli_output import Output, state_text
from taskservice_client.cli_pipelines import pipeline_app
from taskservice_client.cli_session import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    JsonOption,
    Settings,
    TimeoutOption,
)
from taskservice_client.cli_session import load_json_object as _load_json_object
from taskservice_client.cli_session import session as _session
from taskservice_client.client import TaskServiceClient
from taskservice_client.errors import (
    TaskCancelledError,
    TaskFailedError,
    TaskServiceError,
    WaitTimeoutError,
)
from taskservice_client.models import RetryResult, SubmitResult, TaskState, TaskStatus
from taskservice_client.version import __version__

Shown = TypeVar("Shown", bound=BaseModel)


app = typer.Typer(
    name="taskctl",
    help="Submit, follow and manage tasks of the task service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

TaskIdArg = Annotated[str, typer.Argument(help="Task ID.", show_default=False)]
IntervalOption = Annotated[float, typer.Option("--interval", help="Seconds between polls.", min=0.05)]


@dataclass
class Following:
    """How a command follows a task: ``--timeout`` and ``--interval``."""

    timeout: float | None
    interval: float


def _follow(client: TaskServiceClient, out: Output, task_id: str, how: Following, *, live: bool) -> NoReturn:
    """Follow a task to its end (live progress bar, NDJSON lines with --json, or quietly); exit 0 when it
    completed, 1 when it failed, was cancelled or the timeout passed."""
    final: TaskStatus
    try:
        if out.as_json or not live:
            on_progress = (lambda s: out.data(s, compact=True)) if (out.as_json and live) else None
            final = client.wait(
                task_id, timeout=how.timeout, poll_interval=how.interval, on_progress=on_progress
            )
        else:
            with out.progress_bar(task_id) as show:
                final = client.wait(
                    task_id, timeout=how.timeout, poll_interval=how.interval, on_progress=show
                )
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
        out.status(final)
    raise typer.Exit(EXIT_OK if final.status is TaskState.COMPLETED else EXIT_FAILURE)


def _started(
    client: TaskServiceClient,
    out: Output,
    result: SubmitResult | RetryResult,
    line: str,
    follow: Following | None,
) -> None:
    """What submit and retry show of the task they started (its JSON, or ``line``), then with --wait follow
    it (its statuses then stand for it in JSON)."""
    if not out.as_json:
        out.console.print(line)
    elif follow is None:
        out.data(result)
    if follow is not None:
        task_id = result.task_id if isinstance(result, SubmitResult) else result.new_task_id
        _follow(client, out, task_id, follow, live=not out.as_json)


def _show(
    ctx: typer.Context,
    as_json: bool,
    fetch: Callable[[TaskServiceClient], Shown],
    render: Callable[[Output, Shown], None],
) -> Shown:
    """Fetch one thing and print it: as JSON with --json, else with ``render``; returns it."""
    with _session(ctx, as_json) as (client, out):
        result = fetch(client)
        if out.as_json:
            out.data(result)
        else:
            render(out, result)
    return result


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
    cache: Annotated[
        str | None, typer.Option(help="Render cache: auto (default), reuse, refresh or off.")
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
            cache=cache,
        )
        if quiet and not wait:
            typer.echo(result.task_id)
            return
        replay = " (existing task: idempotent replay)" if result.replayed else ""
        line = (
            f"Submitted [bold]{result.task_id}[/bold] ({task_type}, {state_text(result.status).markup}, "
            f"~{result.estimated_duration} s, queue position {result.queue_position}){replay}"
        )
        _started(client, out, result, line, Following(timeout, interval) if wait else None)


@app.command()
def status(ctx: typer.Context, task_id: TaskIdArg, as_json: JsonOption = False) -> None:
    """Show a task's status, progress, result or error."""
    _show(ctx, as_json, lambda client: client.status(task_id), Output.status)


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
        _follow(client, out, task_id, Following(timeout, interval), live=True)


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
        _follow(client, out, task_id, Following(timeout, interval), live=False)


@app.command()
def cancel(ctx: typer.Context, task_id: TaskIdArg, as_json: JsonOption = False) -> None:
    """Cancel a queued or running task."""
    with _session(ctx, as_json) as (client, out):
        result = client.cancel(task_id)
        if out.as_json:
            out.data(result)
        else:
            out.console.print(
                f"Cancelled [bold]{result.task_id}[/bold] (was {state_text(result.previous_state).markup}): "
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
        line = (
            f"Retrying [bold]{result.original_task_id}[/bold] as [bold]{result.new_task_id}[/bold] "
            f"({state_text(result.status).markup})"
        )
        _started(client, out, result, line, Following(timeout, interval) if wait else None)


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
        else:
            out.task_list(project, tasks)


@app.command()
def download(
    ctx: typer.Context,
    task_id: TaskIdArg,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder to save into.")] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Save a completed task's result file (result.media_url) as DIR/<task_id>.<ext>; print its path."""
    with _session(ctx, as_json) as (client, out):
        saved = save_media(client.status(task_id), client.base_url, output_dir)
        if out.as_json:
            shown = {"path": str(saved.path), "media_url": saved.media_url, "bytes": saved.size}
            out.data({"task_id": task_id, **shown})
        else:
            typer.echo(saved.path)


@app.command()
def health(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Service health: Temporal, workers, queue backlogs, load; exit 1 when unhealthy."""
    if _show(ctx, as_json, TaskServiceClient.health, Output.health).status == "unhealthy":
        raise typer.Exit(EXIT_FAILURE)


@app.command()
def metrics(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Cumulative task counters, success/failure rates and average durations."""
    _show(ctx, as_json, TaskServiceClient.metrics, Output.metrics)


@app.command()
def alerts(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Task-queue alerts (failure rate, long tasks, worker memory); exit 1 when critical."""
    if _show(ctx, as_json, TaskServiceClient.queue_health, Output.alerts).status == "critical":
        raise typer.Exit(EXIT_FAILURE)


app.add_typer(pipeline_app, name="pipeline")

if __name__ == "__main__":
    app()
