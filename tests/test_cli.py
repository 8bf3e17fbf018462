"""`taskctl`, the SDK's command line, against the real stack (typer's CliRunner, and once as a process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from taskservice_client.cli import app
from tests.support.processes import ROOT
from tests.support.stack import API_KEYS, Stack

runner = CliRunner()


def _project() -> str:
    return f"cli_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def taskctl(stack: Stack) -> Any:
    def run(*args: str, key: str = API_KEYS[0], stdin: str | None = None) -> Result:
        return runner.invoke(app, ["--url", stack.api_url, "--api-key", key, *args], input=stdin)

    return run


def _json(result: Result) -> Any:
    assert result.stdout.strip(), result.output
    return json.loads(result.stdout)


def _submit(taskctl: Any, prompt: str, project: str | None = None) -> str:
    result = taskctl(
        "submit",
        "test_prompt",
        "--project",
        project or _project(),
        "--data",
        json.dumps({"prompt_template": prompt}),
        "-q",
    )
    assert result.exit_code == 0, result.output
    task_id: str = result.stdout.strip()
    uuid.UUID(task_id)
    return task_id


def test_submit_json_then_watch_json_streams_statuses(taskctl: Any) -> None:
    project = _project()
    submitted = taskctl(
        "--json",
        "submit",
        "test_prompt",
        "--project",
        project,
        "--data",
        '{"prompt_template": "watch me [[sleep=1.5]]"}',
        "--priority",
        "1",
        "--metadata",
        '{"user_id": "u1"}',
    )
    assert submitted.exit_code == 0, submitted.output
    body = _json(submitted)
    assert body["status"] == "queued" and body["project_id"] == project and body["replayed"] is False

    watched = taskctl("watch", body["task_id"], "--interval", "0.1", "--json")
    assert watched.exit_code == 0, watched.output
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert lines[-1]["status"] == "completed" and lines[-1]["task_id"] == body["task_id"]
    assert lines[-1]["result"]["output"].startswith("FAKE-LLM: watch me")
    assert any(line["status"] == "processing" and line["current_step"] == "calling_llm" for line in lines)
    assert watched.stderr == ""


def test_watch_shows_a_progress_bar_and_the_result(taskctl: Any) -> None:
    task_id = _submit(taskctl, "human watch [[sleep=1]]")
    watched = taskctl("watch", task_id, "--interval", "0.1")
    assert watched.exit_code == 0, watched.output
    assert "test_prompt" in watched.stdout and "100%" in watched.stdout
    assert "completed" in watched.stdout
    assert "FAKE-LLM: human watch" in watched.stdout

    status = taskctl("status", task_id)
    assert status.exit_code == 0
    assert task_id in status.stdout and "completed" in status.stdout and "100%" in status.stdout
    assert "\x1b[" not in status.stdout  # not a terminal: no colour codes


def test_submit_wait_of_a_failing_task_exits_1(taskctl: Any, tmp_path: Path) -> None:
    data = tmp_path / "task.json"
    data.write_text(json.dumps({"prompt_template": "fails [[status=400]]"}))
    result = taskctl("--json", "submit", "test_prompt", "-p", _project(), "--data", f"@{data}", "--wait")
    assert result.exit_code == 1, result.output
    final = _json(result)
    assert final["status"] == "failed" and "UpstreamClientError" in final["error"]

    human = taskctl(
        "submit", "test_prompt", "-p", _project(), "--data", "@-", "--wait", stdin=data.read_text()
    )
    assert human.exit_code == 1, human.output
    assert "failed" in human.stdout and "UpstreamClientError" in human.stdout


def test_wait_cancel_and_retry(taskctl: Any) -> None:
    slow = _submit(taskctl, "cli slow [[sleep=30]]")
    timed_out = taskctl("wait", slow, "--timeout", "0.5", "--interval", "0.1")
    assert timed_out.exit_code == 1
    assert timed_out.stderr.startswith("Error: Task") and "did not finish within 0.5 s" in timed_out.stderr
    assert len(timed_out.stderr.strip().splitlines()) == 1

    cancelled = taskctl("--json", "cancel", slow)
    assert cancelled.exit_code == 0, cancelled.output
    assert _json(cancelled)["status"] == "cancelled"
    waited = taskctl("wait", slow, "--json")
    assert waited.exit_code == 1 and _json(waited)["status"] == "cancelled"
    again = taskctl("cancel", slow)
    assert again.exit_code == 0 and "was cancelled" in again.stdout

    quick = _submit(taskctl, "cli quick")
    assert taskctl("wait", quick, "--json").exit_code == 0
    completed_cancel = taskctl("cancel", quick)
    assert completed_cancel.exit_code == 2
    assert completed_cancel.stderr.startswith("Error: ")

    retried = taskctl("--json", "retry", quick)
    assert retried.exit_code == 0, retried.output
    new_id = _json(retried)["new_task_id"]
    assert new_id != quick
    final = taskctl("--json", "wait", new_id, "--interval", "0.1")
    assert final.exit_code == 0
    assert _json(final)["retry_of"] == quick

    human_retry = taskctl("retry", quick, "--wait", "--interval", "0.1")
    assert human_retry.exit_code == 0, human_retry.output
    assert f"Retrying {quick} as" in " ".join(human_retry.stdout.split())


def test_list_health_metrics_alerts(taskctl: Any) -> None:
    project = _project()
    ids = [_submit(taskctl, f"listed {i}", project) for i in range(3)]
    for task_id in ids:
        assert taskctl("wait", task_id, "--interval", "0.1").exit_code == 0
    listed: list[dict[str, Any]] = []
    for _ in range(50):  # visibility is eventually consistent
        result = taskctl("--json", "list", "--project", project, "--status", "completed", "--limit", "0")
        assert result.exit_code == 0, result.output
        listed = _json(result)
        if len(listed) == 3:
            break
    assert [t["task_id"] for t in listed] == list(reversed(ids))
    two = taskctl("list", "-p", project, "--limit", "2", "--json")
    assert [t["task_id"] for t in _json(two)] == list(reversed(ids))[:2]
    table = taskctl("list", "--project", project, "--type", "test_prompt")
    assert table.exit_code == 0
    assert all(task_id in table.stdout for task_id in ids) and "3 task(s)" in table.stdout
    assert taskctl("list", "-p", project, "--status", "bogus").exit_code == 2

    health = taskctl("health", "--json")
    assert health.exit_code == 0 and _json(health)["status"] == "healthy"
    human_health = taskctl("health")
    assert (
        human_health.exit_code == 0
        and "healthy" in human_health.stdout
        and "gpu_heavy" in human_health.stdout
    )

    # Finished tasks are counted from visibility every 2 s, 3 s behind now.
    for _ in range(50):
        metrics = taskctl("--json", "metrics")
        assert metrics.exit_code == 0
        if _json(metrics)["completed_tasks"] >= 3:
            break
        time.sleep(0.2)
    assert _json(metrics)["completed_tasks"] >= 3
    assert "success rate" in taskctl("metrics").stdout

    alerts = taskctl("alerts", "--json")
    assert alerts.exit_code in (0, 1) and "alerts" in _json(alerts)


def test_errors_are_one_line_with_exit_codes(taskctl: Any) -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("taskctl ")
    assert runner.invoke(app, []).exit_code == 2  # no command: help, usage exit code
    missing = taskctl("status", "no-such-task")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "Error: Task with ID 'no-such-task' not found"

    as_json = taskctl("--json", "status", "no-such-task")
    assert as_json.exit_code == 1 and as_json.stdout == ""
    assert json.loads(as_json.stderr)["error"] == "task_not_found"

    invalid = taskctl("submit", "test_prompt", "-p", _project(), "--data", '{"test_parameters": {}}')
    assert invalid.exit_code == 2
    assert "task_data.prompt_template" in invalid.stderr and len(invalid.stderr.strip().splitlines()) == 1

    bad_json = taskctl("submit", "test_prompt", "-p", _project(), "--data", "{nope")
    assert bad_json.exit_code == 2 and "--data is not valid JSON" in bad_json.stderr
    not_object = taskctl("submit", "test_prompt", "-p", _project(), "--data", "[1, 2]")
    assert not_object.exit_code == 2
    assert taskctl("submit", "test_prompt", "-p", _project(), "--priority", "5").exit_code == 2  # usage

    denied = taskctl("--json", "health", key="wrong-key")
    assert denied.exit_code == 1 and json.loads(denied.stderr)["error"] == "authentication_failed"
    # Without --json a refused key also says where taskctl takes the key from.
    refused = taskctl("health", key="wrong-key")
    assert refused.exit_code == 1 and "Invalid or missing API key" in refused.stderr
    assert "the key given was refused" in refused.stderr and "TASK_SERVICE_API_KEY" in refused.stderr

    project, key = _project(), f"cli-{uuid.uuid4()}"
    args = ["submit", "test_prompt", "-p", project, "--idempotency-key", key, "--json", "--data"]
    first = taskctl(*args, '{"prompt_template": "one"}')
    second = taskctl(*args, '{"prompt_template": "one"}')
    assert _json(first)["task_id"] == _json(second)["task_id"] and _json(second)["replayed"] is True
    conflict = taskctl(*args, '{"prompt_template": "two"}')
    assert conflict.exit_code == 2 and json.loads(conflict.stderr)["error"] == "idempotency_key_reused"


def test_taskctl_process_watches_a_video_task_to_completion(stack: Stack) -> None:
    """What an agent developer does: configure by environment, submit a video task, watch it finish."""
    env = {
        **os.environ,
        "TASK_SERVICE_URL": stack.api_url,
        "CELERY_TASK_API_KEY": API_KEYS[1],
        "NO_COLOR": "1",
    }
    env.pop("TASK_SERVICE_API_KEY", None)

    def taskctl(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "taskservice_client.cli", *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)

    video = {
        "scene_description": "Detective enters the dark alley",
        "camera_angle": "wide_shot",
        "duration": 1,
        "fps": 8,
        "resolution": "64x64",
        "num_inference_steps": 1,
    }
    submitted = taskctl(
        "submit", "generate_video", "--project", _project(), "--data", json.dumps(video), "-q"
    )
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()

    watched = taskctl("watch", task_id, "--interval", "0.5", "--timeout", "200")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "generate_video" in watched.stdout and "100%" in watched.stdout
    assert "completed" in watched.stdout and "media_url" in watched.stdout

    status = taskctl("--json", "status", task_id)
    assert status.returncode == 0
    final = json.loads(status.stdout)
    assert final["status"] == "completed" and final["result"]["metadata"]["frame_count"] == 8

    missing = taskctl("--json", "watch", "no-such-task")
    assert missing.returncode == 1 and missing.stdout == ""
    assert json.loads(missing.stderr)["error"] == "task_not_found"


def test_download_saves_the_result_file_and_piped_status_keeps_its_url_whole(
    taskctl: Any, tmp_path: Path
) -> None:
    data = {"prompt": "a lighthouse", "resolution": "64x64", "quality": "draft"}
    task_id = taskctl(
        "submit", "generate_image", "-p", _project(), "-d", json.dumps(data), "-q"
    ).stdout.strip()
    assert taskctl("wait", task_id, "--timeout", "300").exit_code == 0

    url = _json(taskctl("--json", "status", task_id))["result"]["media_url"]
    assert len(url) > 100  # longer than a narrow terminal: it once came out broken across lines
    status = taskctl("status", task_id)  # not a terminal
    assert any(url in line for line in status.stdout.splitlines()), status.stdout

    saved = taskctl("download", task_id, "-o", str(tmp_path / "out"))
    assert saved.exit_code == 0, saved.output
    path = Path(saved.stdout.strip())
    assert path == (tmp_path / "out" / f"{task_id}.png").resolve()
    assert path.read_bytes().startswith(b"\x89PNG") and sorted(path.parent.iterdir()) == [path]
    as_json = _json(taskctl("--json", "download", task_id, "-o", str(tmp_path / "again")))
    assert as_json["media_url"] == url and as_json["bytes"] == path.stat().st_size

    text_task = _submit(taskctl, "no file here")
    assert taskctl("wait", text_task).exit_code == 0
    refused = taskctl("download", text_task)
    assert refused.exit_code == 2 and "has no result file" in refused.output
