"""The README's example session and its `taskctl` block, run as written against the test stack.

Each block runs in bash with `set -euo pipefail` after the README's own exports, from a folder laid out as a
checkout after `make dev` (`data/dev-api-key`, `.venv`), with only `http://localhost:8001` pointed at the test
stack: every command must succeed, and what the text beside it promises is checked in the output.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ROOT
from tests.support.stack import API_KEYS, Stack

README = (ROOT / "README.md").read_text()
RUNNING_CANCELLED = "Task was running and has been cancelled"


def _bash_blocks(section: str) -> list[str]:
    start = README.index(section)
    end = README.find("\n## ", start + len(section))
    return re.findall(r"```bash\n(.*?)```", README[start : end if end > 0 else None], re.S)


def _exports() -> str:
    return next(b for b in _bash_blocks("## Two commands") if "export PATH=" in b)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A folder as a checkout looks after `make dev`: its key in data/, the venv beside it."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dev-api-key").write_text(API_KEYS[0] + "\n")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


def _run(block: str, checkout: Path, stack: Stack) -> str:
    script = "set -euo pipefail\n" + _exports() + block.replace("http://localhost:8001", stack.api_url)
    env = {k: v for k, v in os.environ.items() if k not in {"TASK_SERVICE_API_KEY", "CELERY_TASK_API_KEY"}}
    env |= {"TASK_SERVICE_URL": stack.api_url, "NO_COLOR": "1", "COLUMNS": "160"}
    done = subprocess.run(
        ["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr  # the media submits' answers are shown on stderr (`tee /dev/stderr`)


async def _cancel_unfinished(api: httpx.AsyncClient, project_id: str) -> None:
    for status in ("queued", "processing"):
        await api.post("/api/v1/tasks/bulk/cancel", json={"project_id": project_id, "status": status})


async def test_the_example_session_runs_as_written(
    stack: Stack, api: httpx.AsyncClient, checkout: Path
) -> None:
    session = _bash_blocks("## An example session")[0]
    try:
        out = _run(session, checkout, stack)
    finally:
        await _cancel_unfinished(api, "demo")  # the media tasks and the retried sleeper
    assert f'"message":"{RUNNING_CANCELLED}","previous_state":"processing"' in out
    assert out.count('"message":"Task retry submitted successfully"') == 2
    assert '"temporal_status":"connected"' in out and '{"status":"ok"}' in out
    for media in ("generate_image", "generate_video", "render_animation"):
        assert f'"project_id":"demo","task_type":"{media}"' in out, media
    results = sorted(path.suffix for path in (checkout / "results").iterdir() if path.stat().st_size > 0)
    assert results == [".mp4", ".png"], results
    # Nothing else left in the checkout (the submit answer once stayed behind as submitted.json).
    assert sorted(path.name for path in checkout.iterdir()) == [".venv", "data", "results"]


async def test_the_taskctl_block_runs_as_written(
    stack: Stack, api: httpx.AsyncClient, checkout: Path
) -> None:
    block = next(b for b in _bash_blocks("## Python SDK and `taskctl`") if "taskctl submit" in b)
    try:
        out = _run(block, checkout, stack)
    finally:
        await _cancel_unfinished(api, "demo")
    assert RUNNING_CANCELLED in out
    videos = (
        await api.get(
            "/api/v1/projects/detective_series_001/tasks",
            params={"task_type": "generate_video", "status": "completed"},
        )
    ).json()
    assert videos["tasks"], "taskctl submit --wait ended before the video completed"


def test_the_readme_names_where_the_clis_are_and_the_key_they_need() -> None:
    exports = _exports()
    assert 'export PATH="$PWD/.venv/bin:$PATH"' in exports and "TASK_SERVICE_API_KEY" in exports
    assert "make clean" in README and "tctl` is not installed" in README
