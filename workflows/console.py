"""What each workflow says about itself in the Temporal UI and CLI (user metadata), built in one place.

A task's static summary (the UI's list, at most SUMMARY_BYTES), its static details (Markdown on its page), the
current details its workflow keeps up to date, and the summaries of its activities: pure functions over the
workflow's input and state, so the API (at start) and the workflows (as they run) say the same thing and a
replay builds the same text. Nothing secret goes in: no keys, no signatures, no query strings (every URL is
shown as scheme, host and path), and input fields whose names look like credentials are left out.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from taskservice.contracts import (
    ConcurrencySlot,
    MetricsState,
    SlotRequest,
    TaskProgressUpdate,
    TaskWorkflowInput,
    WorkerReport,
)
from taskservice.priority import TaskPriority
from taskservice.queues import METRICS_WORKFLOW_ID, WORKER_REGISTRY_WORKFLOW_ID, limiter_workflow_id
from taskservice.record import TaskOutcome, error_text

# The UI shows a summary on one line of the workflow list; Temporal's own guidance is 200 bytes.
SUMMARY_BYTES = 200
# Longest quoted text in a summary, and longest input value in the details, before they are shortened.
SUMMARY_TEXT_CHARS = 60
DETAIL_TEXT_CHARS = 120
URL_PATH_CHARS = 60
DETAIL_INPUT_FIELDS = 14
# The input field that says what a task is about, the first one present (else its messages or lines).
TEXT_FIELDS = ("prompt", "scene_description", "action", "text", "project_brief", "prompt_template")
# Input fields an activity summary names, how, in this order (`generate_image on gpu_medium: 1024×1024, ...`).
HEADLINE_FIELDS = (
    ("resolution", "{}"),
    ("num_inference_steps", "{} steps"),
    ("seed", "seed {}"),
    ("duration", "{} s"),
    ("fps", "{} fps"),
    ("quality", "{} quality"),
    ("emotion", "{}"),
    ("output_format", "{}"),
    ("department_slug", "department {}"),
    ("target_items", "{} items"),
    ("target_language", "into {}"),
    ("model", "model {}"),
)
COUNTED_FIELDS = ("tracks", "lines", "gather_data", "messages", "reference_images", "storyboard_images")
# Input keys never shown, whatever their value.
SECRET_KEY = re.compile(r"key|token|secret|password|passwd|auth|credential|signature", re.IGNORECASE)
URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>`)\]]+")
STATUS_PATH = "/api/v1/tasks/{task_id}/status"


# --- text helpers -------------------------------------------------------------------------------


def safe_url(url: str) -> str:
    """The URL as scheme://host/path: no user, password, query string or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(a URL)"
    path = shorten(parts.path, URL_PATH_CHARS)
    return f"{parts.scheme}://{host}{port}{path}" if host else "(a URL)"


def url_host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    except ValueError:
        return None


def scrub(text: str) -> str:
    """Free text (an error message, an input value) with every URL in it reduced by `safe_url`."""
    return URL.sub(lambda match: safe_url(match.group(0)), text)


def shorten(text: str, limit: int) -> str:
    """One line of at most `limit` characters, an ellipsis where it was cut."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def fit_bytes(text: str, limit: int = SUMMARY_BYTES) -> str:
    """`text` cut to `limit` UTF-8 bytes (an ellipsis where it was cut), never inside a character."""
    if len(text.encode()) <= limit:
        return text
    cut = text.encode()[: limit - len("…".encode())].decode(errors="ignore")
    return cut.rstrip() + "…"


def _code(text: object) -> str:
    return "`" + str(text).replace("`", "'") + "`"


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{value / 60:.1f} min"


# --- what a task is (set by the API when it starts the workflow) --------------------------------


def main_text(task_data: dict[str, Any]) -> str | None:
    """What the task is about, in the user's words: its prompt, scene, line or last message."""
    for name in TEXT_FIELDS:
        value = task_data.get(name)
        if isinstance(value, str) and value.strip():
            return value
    for name, key in (("messages", "content"), ("lines", "text")):
        items = task_data.get(name)
        if isinstance(items, list) and items and isinstance(items[-1], dict):
            text = items[-1].get(key)
            if isinstance(text, str) and text.strip():
                return text
    return None


def task_summary(task: TaskWorkflowInput) -> str:
    """`generate_image · detective_series_001 · acme · "1920s detective in film noir…"` (≤ 200 bytes)."""
    record = task.task
    parts = [record.task_type, record.project_id, record.tenant]
    text = main_text(record.task_data)
    if text is not None:
        parts.append('"' + shorten(scrub(text), SUMMARY_TEXT_CHARS) + '"')
    return fit_bytes(" · ".join(parts))


def task_details(task: TaskWorkflowInput) -> str:
    """Markdown for the task's page: who, what, how it runs, its inputs, where to read it through the API."""
    record, plan = task.task, task.plan
    lines = [
        f"**{record.task_type}** for project {_code(record.project_id)} of tenant {_code(record.tenant)}",
        "",
        f"- **task:** {_code(task.task_id)} — `GET {STATUS_PATH.format(task_id=task.task_id)}`",
        f"- **priority:** {TaskPriority.parse(record.priority).value}",
        f"- **queue:** {_code(plan.queue)} (activity {_code(plan.activity)}); "
        f"soft {_seconds(plan.soft_timeout_s)}, hard {_seconds(plan.hard_timeout_s)}, "
        f"up to {plan.retry.maximum_attempts} attempts",
        f"- **created:** {record.created_at}",
    ]
    if record.user:
        lines.append(f"- **user:** {_code(record.user)}")
    if task.concurrency:
        caps = ", ".join(f"{_code(slot.group)} ≤ {slot.limit}" for slot in task.concurrency)
        lines.append(f"- **concurrency slots:** {caps}")
    if task.deadline_at:
        lines.append(f"- **deadline:** {task.deadline_at}")
    if record.callback_url:
        events = ", ".join(record.webhook_events)
        lines.append(f"- **webhooks:** to {_code(url_host(record.callback_url))} ({events})")
    if record.retry_of:
        lines.append(f"- **retry of:** {_code(record.retry_of)}")
    if record.metadata:
        lines.append(f"- **metadata keys:** {', '.join(_code(key) for key in sorted(record.metadata))}")
    lines += ["", "**Input**", ""]
    lines += _input_lines(record.task_data)
    return "\n".join(lines)


def _input_lines(task_data: dict[str, Any]) -> list[str]:
    shown = [
        f"- {name}: {_input_value(value)}"
        for name, value in task_data.items()
        if value not in (None, "", [], {}) and not SECRET_KEY.search(name)
    ]
    if len(shown) > DETAIL_INPUT_FIELDS:
        shown = [*shown[:DETAIL_INPUT_FIELDS], f"- … and {len(shown) - DETAIL_INPUT_FIELDS} more fields"]
    return shown or ["- (none)"]


def _input_value(value: object) -> str:
    if isinstance(value, bool | int | float):
        return _code(value)
    if isinstance(value, str):
        if URL.fullmatch(value.strip()):
            return _code(safe_url(value.strip()))
        if len(value) > DETAIL_TEXT_CHARS and " " not in value:  # base64 data and the like
            return f"({len(value)} characters)"
        return '"' + shorten(scrub(value), DETAIL_TEXT_CHARS) + '"'
    if isinstance(value, list):
        hosts = sorted({url_host(v) or "?" for v in value if isinstance(v, str) and URL.fullmatch(v)})
        if hosts:
            return f"{len(value)} URLs ({', '.join(hosts)})"
        if all(isinstance(v, str) for v in value):
            more = " …" if len(value) > 5 else ""
            return ", ".join(_code(shorten(scrub(str(v)), 30)) for v in value[:5]) + more
        return f"{len(value)} items"
    if isinstance(value, dict):
        keys = [key for key in value if not SECRET_KEY.search(str(key))]
        return "{" + ", ".join(str(key) for key in keys[:8]) + "}"
    return _code(type(value).__name__)


def activity_summary(task: TaskWorkflowInput) -> str:
    """`generate_image on gpu_medium: 1024×1024, 30 steps, seed 7` — the attempt's line in the history."""
    data = task.task.task_data
    facts = []
    for name, template in HEADLINE_FIELDS:
        value = data.get(name)
        if value not in (None, "") and not isinstance(value, bool | list | dict):
            facts.append(template.format(str(value).replace("x", "×") if name == "resolution" else value))
    for name in COUNTED_FIELDS:
        value = data.get(name)
        if isinstance(value, list) and value:
            facts.append(f"{len(value)} {name.replace('_', ' ')}")
    head = f"{task.plan.activity} on {task.plan.queue}"
    return fit_bytes(scrub(f"{head}: {', '.join(facts)}" if facts else head))


def webhook_summary(task: TaskWorkflowInput, event: str) -> str:
    """`webhook completed to auto-movie.ft.tc` (the host only: a callback's path and query stay out)."""
    return fit_bytes(f"webhook {event} to {url_host(task.task.callback_url) or '?'}")


# --- what a task is doing (its workflow sets these as it goes) -----------------------------------


def queued(task: TaskWorkflowInput) -> str:
    return f"**Queued** on {_code(task.plan.queue)}: waiting for a worker of the queue to start it"


def waiting_for_slot(task: TaskWorkflowInput, slot: ConcurrencySlot) -> str:
    """Which slot the task waits for; its place in the line is on the limiter's page."""
    return (
        f"**Waiting for a slot** of {_code(slot.group)} (at most {slot.limit} run at once); "
        f"the line is on the page of {_code(limiter_workflow_id(slot.group))}, "
        f"then queued on {_code(task.plan.queue)}"
    )


def processing(
    task: TaskWorkflowInput, attempt: int, worker: str | None, progress: TaskProgressUpdate | None
) -> str:
    """`Processing: attempt 2 of 4 on gpu_medium (worker …) · step translating 2/3 · 50%`."""
    attempts = task.plan.retry.maximum_attempts
    text = f"**Processing**: attempt {attempt} of {attempts} on {_code(task.plan.queue)}"
    if worker:
        text += f" (worker {_code(worker)})"
    if progress is not None:
        text += f" · step {_code(shorten(scrub(progress.step), 80))} · {round(progress.progress * 100)}%"
    return text


def finished(task: TaskWorkflowInput, outcome: TaskOutcome, attempt: int | None) -> str:
    """The outcome: how long it took and where its output is, or why it failed or was cancelled."""
    status = outcome.status.capitalize()
    of_attempts = f"attempt {attempt} of {task.plan.retry.maximum_attempts}" if attempt else "no attempt"
    took = f" in {_seconds(outcome.processing_time)}" if outcome.processing_time is not None else ""
    text = f"**{status}**{took} ({of_attempts}) at {outcome.completed_at}"
    error = error_text(outcome.error, outcome.error_type)
    if error:
        text += f": {shorten(scrub(error), 300)}"
    media = _media(outcome.result or {})
    if media:
        text += "\n\nOutput: " + ", ".join(_code(url) for url in media)
    if outcome.status == "completed":
        text += f"\n\nResult (with fresh links): `GET {STATUS_PATH.format(task_id=task.task_id)}`"
    return text


def _media(result: dict[str, Any]) -> list[str]:
    """The result's file URLs, without their signatures (the status endpoint hands out signed ones)."""
    urls = [
        safe_url(value)
        for key, value in result.items()
        if isinstance(value, str) and key.endswith("url") and URL.fullmatch(value)
    ]
    return urls[:5]


# --- the service's own workflows ----------------------------------------------------------------


def limiter_summary(group: str) -> str:
    return f"concurrency limiter · {group} slots"


def limiter_details(group: str) -> str:
    return (
        f"Hands out the cluster-wide slots of the {_code(group)} concurrency group: a task of the group asks "
        "for a slot (`acquire`) before its activity is scheduled and gives it back (`release`) when it ends. "
        "Waiting tasks are served by priority, then in arrival order. "
        "Current details: who holds a slot and who waits."
    )


def limiter_state(
    group: str, limit: int, holders: list[str], waiting: list[SlotRequest], waiting_count: int
) -> str:
    """`video slots: 2 of 2 held, 7 waiting`, then the holders and the line (first ten of each)."""
    lines = [f"**{group} slots: {len(holders)} of {limit} held, {waiting_count} waiting**"]
    if holders:
        lines += ["", "Held by: " + ", ".join(_code(h) for h in sorted(holders)[:10])]
    if waiting:
        lines += ["", "Waiting, in the order they will be served:", ""]
        for place, request in enumerate(waiting[:10], start=1):
            lines.append(
                f"{place}. {_code(request.holder_id)} (tenant {_code(request.tenant)}, "
                f"priority key {request.priority_key})"
            )
        if waiting_count > 10:
            lines.append(f"… and {waiting_count - 10} more")
    return "\n".join(lines)


SERVICE_WORKFLOWS = {
    METRICS_WORKFLOW_ID: (
        "task metrics · finished tasks counted",
        "Counts finished tasks (by outcome, task type and tenant) from visibility every few seconds and "
        "publishes the totals in its memo, which `GET /api/v1/tasks/metrics` reads. "
        "Current details: the counts.",
    ),
    WORKER_REGISTRY_WORKFLOW_ID: (
        "worker registry · workers' reports",
        "Keeps the latest report of every worker process (queue, state, tasks done, memory, loaded models) "
        "in its memo, which `GET /api/v1/health` and `/api/v1/workers` read. Current details: who is live.",
    ),
}


def metrics_state(state: MetricsState) -> str:
    """`120 tasks finished: 100 completed, 15 failed, 5 cancelled; 3 retried. Counted up to …`."""
    return (
        f"**{state.total_finished} tasks finished**: {state.completed} completed, {state.failed} failed, "
        f"{state.cancelled} cancelled; {state.retried} retried. Counted up to {state.counted_until or '-'}."
    )


def registry_state(workers: list[WorkerReport]) -> str:
    """`4 workers: default 1, gpu_medium 1 …`, then one line per worker."""
    by_queue: dict[str, int] = {}
    for worker in workers:
        by_queue[worker.queue] = by_queue.get(worker.queue, 0) + 1
    counts = ", ".join(f"{queue} {count}" for queue, count in sorted(by_queue.items()))
    lines = [f"**{len(workers)} workers**" + (f": {counts}" if counts else ""), ""]
    for w in sorted(workers, key=lambda w: (w.queue, w.identity)):
        lines.append(
            f"- {_code(w.identity)} on {_code(w.queue)}: {w.state}, {w.tasks_done} done, "
            f"{w.tasks_failed} failed, last seen {w.last_seen}"
        )
    return "\n".join(lines)
