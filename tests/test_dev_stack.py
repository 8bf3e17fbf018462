"""`make dev` and `make clean` as a newcomer's tools use them: stopped by SIGTERM or SIGHUP as by Ctrl-C
(make forwards a SIGTERM to its recipe, so the script gets it twice), refused over a held port, and a
`make clean` that will not delete state under a running stack.

The stack runs on free ports with its state in a temporary DATA_DIR; `-o` keeps make from re-running the
install and model steps (the suite's venv and models are there already).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.processes import ROOT, free_port

BANNER = "Task Service (development)"
MAKE_DEV = ["make", "--no-print-directory", "-o", "install", "-o", "system-deps", "-o", "models", "dev"]
# A test process started under `nohup` ignores SIGHUP, and its children would inherit that (a shell cannot
# trap a signal ignored on entry): the stack under test starts with SIGHUP's default, as from a terminal.
MAKE_DEV_HANGUP_DEFAULT = ["env", "--default-signal=HUP", *MAKE_DEV]


def _dev_env(data_dir: Path, **ports: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TEMPORAL_", "API_"))}
    env |= {
        "DATA_DIR": str(data_dir),
        "API_KEY": "dev-stack-test-key-0123456789",
        "WORKER_METRICS_PORT": "0",
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    }
    return env | {name: str(port) for name, port in ports.items()}


def _ports() -> dict[str, int]:
    return {name: free_port() for name in ("API_PORT", "TEMPORAL_PORT", "TEMPORAL_UI_PORT", "FAKE_LLM_PORT")}


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _left_behind(data_dir: Path) -> list[str]:
    """Processes started by this make dev (they carry its DATA_DIR) that still run."""
    left = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if process.environ().get("DATA_DIR") == str(data_dir):
                left.append(f"{process.pid}: {' '.join(process.info['cmdline'] or [])[:100]}")
        except psutil.Error:
            continue
    return left


def _echo_answer(api: str) -> dict[str, object]:
    headers = {"X-API-Key": "dev-stack-test-key-0123456789"}
    body = {"project_id": "demo", "task_type": "test_prompt", "task_data": {"prompt_template": "Hello"}}
    task = httpx.post(f"{api}/api/v1/tasks/submit", json=body, headers=headers, timeout=30).json()
    status: dict[str, object] = {"status": "queued"}
    url = f"{api}/api/v1/tasks/{task['task_id']}/status"
    for _ in range(10):  # the workers may still be starting
        params = {"wait": 30, "since_status": status["status"]}
        status = httpx.get(url, params=params, headers=headers, timeout=60).json()
        if status["status"] == "completed":
            result = status["result"]
            assert isinstance(result, dict)
            return result
    raise AssertionError(status)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for process in psutil.process_iter():  # whatever a failed test left running
        try:
            if process.environ().get("DATA_DIR") == str(tmp_path):
                process.kill()
        except psutil.Error:
            continue


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_make_dev_stops_on_sigterm_and_sighup_as_on_ctrl_c(stop: signal.Signals, data_dir: Path) -> None:
    ports = _ports()
    make = subprocess.Popen(
        MAKE_DEV_HANGUP_DEFAULT,
        cwd=ROOT,
        env=_dev_env(data_dir, **ports),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal, a CI runner or an IDE gives it
    )
    deadline = time.monotonic() + 300
    api = f"http://127.0.0.1:{ports['API_PORT']}"
    while time.monotonic() < deadline and make.poll() is None:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    assert make.poll() is None, make.communicate()[0]
    assert (data_dir / "dev.pid").exists()
    if stop == signal.SIGTERM:  # once: the stack answers, and the echo model says it is one
        assert _echo_answer(api)["model"] == "echo-model"

    script = psutil.Process(make.pid).children()
    os.killpg(make.pid, stop)  # the whole group: make, and the script make runs
    # make forwards a SIGTERM to its recipe: a second one, which may come while the script is stopping.
    time.sleep(0.5)
    for process in script:
        process.send_signal(stop)
    out, _ = make.communicate(timeout=120)

    assert "stopping: workers, API, then Temporal..." in out and "stopped." in out, out
    assert not [p for p in ports.values() if _listening(p)], out
    assert _left_behind(data_dir) == [], out
    assert not (data_dir / "dev.pid").exists()


def test_make_dev_refuses_a_held_port_naming_it_and_its_process(data_dir: Path) -> None:
    ports = _ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["TEMPORAL_PORT"]))
        holder.listen()
        done = subprocess.run(
            MAKE_DEV, cwd=ROOT, env=_dev_env(data_dir, **ports), capture_output=True, text=True, timeout=120
        )
    assert done.returncode != 0
    assert f"port {ports['TEMPORAL_PORT']} (Temporal) is in use by" in done.stderr, done.stderr
    assert f"(pid {os.getpid()})" in done.stderr
    assert BANNER not in done.stdout and "stopping" not in done.stdout
    assert not (data_dir / "dev.pid").exists()


def _make_clean(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "clean"],
        cwd=ROOT,
        env={**os.environ, "DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _dev_state(data_dir: Path) -> list[Path]:
    (data_dir / "media" / "demo").mkdir(parents=True)
    (data_dir / "media" / "demo" / "a.png").write_bytes(b"png")
    (data_dir / "media-signing-key").write_text("k")
    for name in ("temporal-dev.db", "temporal-dev.db-wal"):
        (data_dir / name).write_text("db")
    return [data_dir / "media", data_dir / "temporal-dev.db", data_dir / "temporal-dev.db-wal"]


def test_make_clean_refuses_while_make_dev_runs(data_dir: Path) -> None:
    state = _dev_state(data_dir)
    (data_dir / "dev.pid").write_text(f"{os.getpid()}\n")  # a live process stands for dev.sh
    done = _make_clean(data_dir)
    assert done.returncode != 0
    assert f"make dev is running (pid {os.getpid()})" in done.stderr
    assert all(path.exists() for path in state)


def test_make_clean_deletes_the_state_and_lists_what_it_keeps(data_dir: Path) -> None:
    state = _dev_state(data_dir)
    (data_dir / "dev.pid").write_text("999999999\n")  # a make dev that died without cleaning up
    done = _make_clean(data_dir)
    assert done.returncode == 0, done.stderr
    assert not any(path.exists() for path in state)
    assert (data_dir / "media-signing-key").exists()
    kept = next(line for line in done.stdout.splitlines() if line.startswith("kept:"))
    assert f"{data_dir}/media-signing-key" in kept
    # The models `make dev` builds are listed when there are any (a fresh clone's `make test` builds none).
    assert ("data/models" in kept) == (ROOT / "data" / "models").exists(), kept
