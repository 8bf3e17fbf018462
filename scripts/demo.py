"""`make demo`: against a running `make dev`, one task of each kind at sizes a CPU renders in seconds; shows
their progress, then where each result file is (the file under DATA_DIR/media and its URL).

Reads TASK_SERVICE_URL (default http://localhost:$API_PORT, 8001) and TASK_SERVICE_API_KEY (else API_KEY,
else make dev's data/dev-api-key). Exits 1 when a task did not complete.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from taskservice_client import TaskServiceClient, TaskServiceError
from taskservice_client.models import TaskStatus

PROJECT = "demo"
# First round: what needs no input file. Second round: what reads a file the first round made.
FIRST: dict[str, tuple[str, dict[str, Any]]] = {
    "text": (
        "test_prompt",
        {"prompt_template": "A logline for {{who}}", "test_parameters": {"who": "a detective"}},
    ),
    "image": ("generate_image", {"prompt": "noir detective", "resolution": "64x64", "quality": "draft"}),
    "video": (
        "generate_video",
        {
            "scene_description": "Detective enters the alley",
            "duration": 1,
            "fps": 8,
            "resolution": "64x64",
            "quality": "draft",
        },
    ),  # fmt: skip
    "animation": (
        "render_animation",
        {"action": "waves hello", "duration": 1, "fps": 8, "resolution": "64x64", "quality": "draft"},
    ),
    "voice": (
        "generate_character_voice",
        {"text": "I've been expecting you, detective.", "output_format": "wav"},
    ),
}
SECOND: dict[str, tuple[str, str, dict[str, Any]]] = {
    "caption": ("run_image_to_text_inference", "image", {"max_new_tokens": 8}),
    "audio mix": ("process_audio", "voice", {"operations": [{"type": "normalize"}], "output_format": "wav"}),
}


def _api_key() -> str | None:
    dev_key = Path("data/dev-api-key")
    fallback = dev_key.read_text().strip() if dev_key.is_file() else None
    return os.environ.get("TASK_SERVICE_API_KEY") or os.environ.get("API_KEY", "").split(",")[0] or fallback


def _follow(client: TaskServiceClient, tasks: dict[str, str], timeout: float = 600) -> dict[str, TaskStatus]:
    """Poll every task once a second; print a line whenever one's status, progress or step changes."""
    shown: dict[str, tuple[str, int, str | None]] = {}
    final: dict[str, TaskStatus] = {}
    deadline = time.monotonic() + timeout
    while len(final) < len(tasks) and time.monotonic() < deadline:
        for kind, task_id in tasks.items():
            if kind in final:
                continue
            status = client.status(task_id)
            now = (status.status.value, round(status.progress * 100), status.current_step)
            if shown.get(kind) != now:
                shown[kind] = now
                step = f"  {status.current_step}" if status.current_step not in (None, now[0]) else ""
                print(f"  {kind:<10} {now[0]:<10} {now[1]:>3}%{step}", flush=True)
            if status.is_terminal:
                final[kind] = status
        time.sleep(1)
    return final


def _where(status: TaskStatus) -> str:
    result = status.result or {}
    url = result.get("media_url")
    if not isinstance(url, str):
        return f"result: {str(result.get('output') or result.get('text') or result)[:100]}"
    key = unquote(urlsplit(url).path).split("/media/", 1)[-1]
    path = Path(os.environ.get("DATA_DIR", "data")) / "media" / key
    return f"file:   {path}\n             url:    {url}"


def main() -> int:
    url = os.environ.get("TASK_SERVICE_URL") or f"http://localhost:{os.environ.get('API_PORT', '8001')}"
    with TaskServiceClient(url, _api_key()) as client:
        if not client.ping():
            print(
                f"make demo: no task service at {url}; start it with `make dev` (in another shell)",
                file=sys.stderr,
            )
            return 1
        print(f"Submitting one task of each kind to {url} (project {PROJECT!r}):", flush=True)
        first = {kind: client.submit(PROJECT, t, data).task_id for kind, (t, data) in FIRST.items()}
        done = _follow(client, first)
        second: dict[str, str] = {}
        for kind, (task_type, source, data) in SECOND.items():
            made = done.get(source)
            if made is not None and made.succeeded and made.result:
                field = {
                    "image": {"image_url": made.result["media_url"]},
                    "voice": {"tracks": [{"url": made.result["media_url"]}]},
                }
                second[kind] = client.submit(PROJECT, task_type, {**data, **field[source]}).task_id
        done |= _follow(client, second)
    print("\nResults:")
    for kind, task_id in {**first, **second}.items():
        status = done.get(kind)
        state = status.status.value if status else "unfinished (still running after 10 minutes)"
        print(f"  {kind:<10} {task_id}  {state}")
        if status is not None:
            print(f"             {_where(status) if status.succeeded else status.error}")
    print("\nSave one elsewhere: taskctl download TASK_ID -o DIR   (see README, `taskctl`)")
    return 0 if len(done) == len(first) + len(second) and all(s.succeeded for s in done.values()) else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except TaskServiceError as err:
        print(f"make demo: {err}", file=sys.stderr)
        raise SystemExit(1) from None
