"""``taskctl pipeline submit|status|watch``: a whole scene from a shell, with a per-step progress view."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Annotated

import typer
from rich import box
from rich.live import Live
from rich.table import Table

from taskservice_client.cli_output import STATE_STYLE, Output
from taskservice_client.cli_session import EXIT_FAILURE, JsonOption, TimeoutOption, load_json_object, session
from taskservice_client.models import TaskState
from taskservice_client.pipelines import Pipeline

pipeline_app = typer.Typer(help="Submit and follow pipelines (a whole scene, each step a task).")
PipelineIdArg = Annotated[str, typer.Argument(help="Pipeline ID (pl-…).", show_default=False)]


def _style(status: str) -> str:
    return STATE_STYLE.get(TaskState(status), "white") if status in set(TaskState) else "dim"


def pipeline_table(pipeline: Pipeline) -> Table:
    """The pipeline's steps: status, progress, cache hit or reuse, and the result's media URL or error."""
    title = (
        f"{pipeline.pipeline_id}  [{_style(pipeline.status)}]{pipeline.status}[/]  {pipeline.progress:.0%}"
    )
    table = Table(title=title, box=box.SIMPLE, title_justify="left")
    for column in ("step", "type", "status", "progress", "cache", "task_id", "output"):
        table.add_column(column, overflow="fold")
    for step in pipeline.steps:
        output = (step.result or {}).get("media_url") or step.error or ""
        cache = "reused" if step.reused else ("hit" if step.cache_hit else "")
        status = f"[{_style(step.status)}]{step.status}[/]"
        table.add_row(
            step.id, step.task_type, status, f"{step.progress:.0%}", cache, step.task_id, str(output)
        )
    return table


@pipeline_app.command("submit")
def submit(
    ctx: typer.Context,
    data: Annotated[
        str, typer.Option("--data", "-d", help="The pipeline body: JSON, @file.json or @- for stdin.")
    ],
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Project ID (else the body's).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Then follow it to its end (like watch).")] = False,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a pipeline; prints each step's task and what it will do (render, cache, reuse)."""
    with session(ctx, as_json) as (client, out):
        body = load_json_object(data, "--data")
        project_id = project or str(body.pop("project_id", ""))
        steps = body.pop("steps", [])
        submitted = client.pipelines.submit(project_id, steps, **body)
        if out.as_json and not wait:
            out.data(submitted)
        elif not out.as_json:
            for step in submitted.steps:
                out.console.print(f"{step.id:<12} {step.task_type:<26} {step.will:<7} {step.task_id}")
            out.console.print(
                f"Submitted [bold]{submitted.pipeline_id}[/bold] (~{submitted.estimated_duration_s:.0f} s)"
            )
        if wait and submitted.pipeline_id is not None:
            _watch(client.pipelines.get, out, submitted.pipeline_id, timeout)


@pipeline_app.command("status")
def status(ctx: typer.Context, pipeline_id: PipelineIdArg, as_json: JsonOption = False) -> None:
    """Show a pipeline: its status and each step's."""
    with session(ctx, as_json) as (client, out):
        pipeline = client.pipelines.get(pipeline_id)
        if out.as_json:
            out.data(pipeline)
        else:
            out.console.print(pipeline_table(pipeline))


@pipeline_app.command("watch")
def watch(
    ctx: typer.Context, pipeline_id: PipelineIdArg, timeout: TimeoutOption = None, as_json: JsonOption = False
) -> None:
    """Follow a pipeline step by step; exit 0 if it completed, 1 otherwise (--json: one line per change)."""
    with session(ctx, as_json) as (client, out):
        _watch(client.pipelines.get, out, pipeline_id, timeout)


def _watch(get: Callable[[str], Pipeline], out: Output, pipeline_id: str, timeout: float | None) -> None:
    """Show the pipeline at every change until it ends (a live table, or a JSON line per change)."""
    started, last = time.monotonic(), ""
    pipeline = get(pipeline_id)
    with Live(console=out.console, auto_refresh=False) if not out.as_json else nullcontext() as live:
        while True:
            if live is not None:
                live.update(pipeline_table(pipeline), refresh=True)
            elif pipeline.model_dump_json() != last:
                out.data(pipeline, compact=True)
                last = pipeline.model_dump_json()
            if pipeline.is_finished or (timeout is not None and time.monotonic() - started > timeout):
                break
            time.sleep(0.5)
            pipeline = get(pipeline_id)
    if pipeline.status != "completed":
        raise typer.Exit(EXIT_FAILURE)
