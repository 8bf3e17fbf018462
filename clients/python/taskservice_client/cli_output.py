"""What ``taskctl`` prints: rich tables and a live progress bar for people, JSON with ``--json``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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

from taskservice_client.errors import TaskServiceError
from taskservice_client.models import Health, Metrics, QueueHealth, TaskListItem, TaskState, TaskStatus

STATE_STYLE = {
    TaskState.QUEUED: "yellow",
    TaskState.PROCESSING: "cyan",
    TaskState.COMPLETED: "green",
    TaskState.FAILED: "red",
    TaskState.CANCELLED: "magenta",
}
PIPE_WIDTH = 160
UNWRAPPED_WIDTH = 100_000
HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "warning": "yellow"}
# Narrow terminals get the essential columns of a task list only (the rest is one `taskctl status` away).
OPTIONAL_LIST_COLUMNS = [(100, "created"), (112, "took"), (140, "error")]


class UsageError(Exception):
    """Bad command-line input found by taskctl itself (exit code 2)."""


def state_text(state: TaskState) -> Text:
    return Text(state.value, style=STATE_STYLE.get(state, ""))


def _when(value: datetime | None, *, short: bool = False) -> str:
    return value.astimezone().strftime("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S") if value else "-"


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _two_columns(**value_column: Any) -> Table:
    """A borderless name/value table; ``value_column`` styles the values' column."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(**value_column)
    return table


@dataclass
class Output:
    """Human (rich) or machine (JSON) output."""

    as_json: bool

    @property
    def console(self) -> Console:
        # Output that is not a terminal never wraps a value: a media URL stays one line, whole, for grep,
        # copy and paste (a terminal's output is laid out to the terminal's width).
        return Console(highlight=False, width=None if sys.stdout.isatty() else UNWRAPPED_WIDTH)

    @property
    def layout_width(self) -> int:
        """The width that chooses a listing's columns: the terminal's, else COLUMNS, else PIPE_WIDTH."""
        piped_default = not sys.stdout.isatty() and "COLUMNS" not in os.environ
        return Console(width=PIPE_WIDTH if piped_default else None).width

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

    def hint(self, text: str) -> None:
        """A line on how to fix the error just shown (not in --json output, which stays one JSON object)."""
        if not self.as_json:
            Console(stderr=True, highlight=False).print(Text(text, style="yellow"), soft_wrap=True)

    def status(self, status: TaskStatus) -> None:
        table = _two_columns(overflow="fold")
        table.add_row("task_id", status.task_id)
        table.add_row("project", status.project_id)
        table.add_row("type", status.task_type)
        table.add_row("status", state_text(status.status))
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
        ready = ready_in(status, datetime.now(UTC))
        if ready:
            table.add_row("ready", ready)
        if status.cache_hit:
            cache = (status.result or {})["cache"]
            source = cache.get("source_task_id", "?")
            table.add_row("cache", f"hit: the result of {source} ({cache.get('saved_seconds', 0)} s saved)")
        if status.error:
            table.add_row("error", Text(status.error, style="red"))
        console = self.console
        console.print(table)
        if status.result is not None:
            console.print(JSON.from_data(status.result))

    def task_list(self, project: str, tasks: list[TaskListItem]) -> None:
        console = self.console
        table = Table(title=f"Tasks of {project}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("task_id", no_wrap=True, min_width=36)
        table.add_column("type", overflow="fold")
        table.add_column("status", no_wrap=True, min_width=10)
        layout_width = self.layout_width
        shown = {name for width, name in OPTIONAL_LIST_COLUMNS if layout_width >= width}
        if "created" in shown:
            table.add_column("created", no_wrap=True)
        if "took" in shown:
            table.add_column("took", no_wrap=True, justify="right")
        if "error" in shown:
            table.add_column("error", overflow="ellipsis", no_wrap=True, max_width=layout_width - 110)
        for task in tasks:
            row: list[str | Text] = [task.task_id, task.task_type, state_text(task.status)]
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

    def health(self, result: Health) -> None:
        table = _two_columns()
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
        self.console.print(table)

    def metrics(self, result: Metrics) -> None:
        table = _two_columns(justify="right")
        for name in ("total_tasks", "completed_tasks", "failed_tasks", "cancelled_tasks", "retried_tasks"):
            table.add_row(name.removesuffix("_tasks"), str(getattr(result, name)))
        table.add_row("running", str(result.currently_running))
        table.add_row("success rate", f"{result.success_rate:.1f}%")
        table.add_row("failure rate", f"{result.failure_rate:.1f}%")
        for task_type, seconds in result.average_durations.items():
            table.add_row(f"avg {task_type}", f"{seconds:.2f} s")
        self.console.print(table)

    def alerts(self, result: QueueHealth) -> None:
        self.console.print(Text(result.status, style=HEALTH_STYLE.get(result.status, "red")))
        for alert in result.alerts:
            style = "red" if alert.severity == "critical" else "yellow"
            self.console.print(Text(f"[{alert.severity}] {alert.message}", style=style))

    @contextmanager
    def progress_bar(self, task_id: str) -> Iterator[Callable[[TaskStatus], None]]:
        """A live bar for one task; yields the ``on_progress`` callback that moves it."""
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            bar = progress.add_task(task_id, total=100)

            def show(status: TaskStatus) -> None:
                shown_step = status.current_step not in (None, status.status.value)
                step = f" · {status.current_step}" if shown_step else ""
                attempt = f" (attempt {status.attempt})" if status.attempt > 1 else ""
                style = STATE_STYLE.get(status.status, "")
                description = f"{status.task_type} [{style}]{status.status.value}[/{style}]{attempt}{step}"
                progress.update(bar, completed=status.progress * 100, description=description)

            yield show


def _minutes(seconds: float) -> str:
    """`45 s` below a minute, else whole minutes (`3 min`)."""
    return f"{max(0, round(seconds))} s" if seconds < 60 else f"{max(1, round(seconds / 60))} min"


def ready_in(status: TaskStatus, now: datetime) -> str | None:
    """`ready in ~2 min (90 %: 3 min)` for an unfinished task with an estimate; why not, when no worker
    serves it; None for a finished one."""
    estimate = status.estimate
    if status.is_terminal or estimate is None:
        return None
    if status.estimated_completion_at is None or estimate.completion_p90_at is None:
        return f"no estimate: {estimate.reason}" if estimate.reason else None
    p50 = (status.estimated_completion_at - now).total_seconds()
    p90 = (estimate.completion_p90_at - now).total_seconds()
    return f"ready in ~{_minutes(p50)} (90 %: {_minutes(p90)})"
