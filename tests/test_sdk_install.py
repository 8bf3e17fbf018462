"""The SDK installs on its own: ``pip install`` of ``clients/python`` into an empty venv brings the SDK and
its few dependencies (no Temporal, ML stack or web server), and the README's SDK example and ``taskctl`` then
run from that venv against the real stack."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT
from tests.support.stack import API_KEYS, Stack

CLIENT_DIR = ROOT / "clients" / "python"
SERVER_ONLY = {"temporalio", "torch", "fastapi", "uvicorn", "boto3", "openai", "strawberry-graphql"}
# The SDK with httpx, pydantic, typer and rich is ~31 MB; the server's install is over 380 MB.
MAX_INSTALL_BYTES = 60 * 2**20


def _readme_sdk_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python SDK and `taskctl`") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's SDK section has no python example"
    return found.group(1)


def _pip(venv_python: Path, *args: str) -> str:
    """pip of this interpreter, acting on the new venv (which then holds no pip or setuptools of its own)."""
    command = [sys.executable, "-m", "pip", "--python", str(venv_python), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.install
def test_sdk_installs_alone_and_runs_the_readme_example(stack: Stack, tmp_path: Path) -> None:
    # A copy of clients/python alone: the build may not reach outside it, nor leave build files in the repo.
    source = tmp_path / "taskservice-client"
    shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    _pip(python, "install", "--quiet", str(source))

    installed = {dist["name"].lower() for dist in json.loads(_pip(python, "list", "--format=json"))}
    assert "taskservice-client" in installed and {"httpx", "pydantic", "typer", "rich"} <= installed
    assert not installed & SERVER_ONLY, installed & SERVER_ONLY
    site_packages = next(venv.glob("lib/python*/site-packages"))
    size = sum(f.stat().st_size for f in site_packages.rglob("*") if f.is_file())
    assert size < MAX_INSTALL_BYTES, f"{size / 2**20:.0f} MB installed"

    # Run from the empty temp dir with a clean path: only the venv can provide taskservice_client.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env |= {"TASK_SERVICE_URL": stack.api_url, "TASK_SERVICE_API_KEY": API_KEYS[0], "NO_COLOR": "1"}
    example = subprocess.run(
        [str(python), "-c", _readme_sdk_example()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert example.returncode == 0, example.stdout + example.stderr
    assert "100%" in example.stdout and "FAKE-LLM: Create a character" in example.stdout

    def taskctl(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(venv / "bin" / "taskctl"), *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    usage = taskctl("--help")
    assert usage.returncode == 0 and "submit" in usage.stdout
    health = taskctl("--json", "health")
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["temporal_status"] == "connected"
    listed = taskctl("--json", "list", "-p", "detective_series_001", "--type", "test_prompt")
    assert listed.returncode == 0 and isinstance(json.loads(listed.stdout), list)
