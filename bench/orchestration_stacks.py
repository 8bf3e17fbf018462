"""The stacks `bench.orchestration` runs (ours, Celery + Redis) and what it reads from their processes: CPU
time, the Temporal frontend's requests, history lengths."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from temporalio.client import Client

from bench._stack import API_KEY
from taskservice.devtools.fake_llm import FakeOpenAIServer
from tests.support.processes import ServiceProcess, TemporalDevServer, free_port, wait_http_ok
from tests.support.stack import base_env, wait_for_pollers


def _cpu_s(pid: int, children: bool = True) -> float:
    """CPU seconds of a process and (by default) all its descendants (supervisors, prefork children)."""
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *(root.children(recursive=True) if children else [])]:
            with _gone_ok():
                times = proc.cpu_times()
                total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


@contextmanager
def _gone_ok() -> Iterator[None]:
    try:
        yield
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        pass


class CpuMeter:
    """CPU seconds spent by named processes between `start()` and `per_task()`."""

    CLIENT = "bench client + fake LLM"

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, self.CLIENT: os.getpid()}
        self._before: dict[str, float] = {}

    def _now(self, name: str) -> float:
        # The bench process is the parent of every service: count only its own CPU.
        return _cpu_s(self.pids[name], children=name != self.CLIENT)

    def start(self) -> None:
        self._before = {name: self._now(name) for name in self.pids}

    def per_task(self, tasks: int) -> dict[str, float]:
        return {name: (self._now(name) - self._before[name]) * 1000 / tasks for name in self.pids}


def temporal_frontend_requests(pid: int) -> Counter[str]:
    """Requests the Temporal frontend served so far, per operation (from the dev server's metrics)."""
    cmdline = psutil.Process(pid).cmdline()
    port = cmdline[cmdline.index("--metrics-port") + 1]
    counts: Counter[str] = Counter()
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        match = re.match(r'service_requests\{.*operation="(\w+)".*service_name="frontend".*\} (\S+)', line)
        if match:
            counts[match.group(1)] += int(float(match.group(2)))
    return counts


@dataclass
class Service:
    name: str
    url: str
    pids: dict[str, int]
    temporal_address: str | None = None


@asynccontextmanager
async def our_stack() -> AsyncIterator[Service]:
    """Temporal dev server, the `default` worker (8 concurrent activities) and the API, as in bench._stack."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp,
        FakeOpenAIServer(api_key="sk-test-llm-key") as llm,
    ):
        workdir = Path(tmp)
        temporal = TemporalDevServer(workdir).start()
        env = {
            **base_env(temporal, llm, workdir),
            "API_KEY": API_KEY,
            "WORKER_CONCURRENCY_DEFAULT": "8",
            "WORKER_REPORT_INTERVAL_S": "10",
        }
        worker_args = ["workers", "default"]
        processes = {
            "worker": ServiceProcess("worker-default", worker_args, env, workdir / "worker.log").start()
        }
        port = free_port()
        processes["api"] = ServiceProcess(
            "api", ["api"], {**env, "API_PORT": str(port)}, workdir / "api.log"
        ).start()
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http_ok(f"{url}/health", process=processes["api"])
            await wait_for_pollers(temporal.address, "default", ["default"])
            await asyncio.sleep(1)
            assert temporal.process is not None
            pids = {
                "API": processes["api"].pid,
                "worker (workflows + activities)": processes["worker"].pid,
                "Temporal dev server": temporal.process.pid,
            }
            yield Service("ours", url, pids, temporal.address)
        finally:
            for process in processes.values():
                process.stop()
            temporal.stop()


REDIS_TOOLS = ("redis-server", "redis-cli")


def missing_redis_tools() -> str | None:
    """What the Celery row lacks on this machine, said with how to install it; None when nothing."""
    missing = [tool for tool in REDIS_TOOLS if shutil.which(tool) is None]
    if not missing:
        return None
    return (
        f"the celery row needs {' and '.join(missing)}, not found on PATH: `apt-get install redis-server` "
        "(Debian/Ubuntu; it brings both), or leave the row out: --only bare,polling,waiting,prefer"
    )


def _start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / "redis.log", "ab")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if ping.stdout.strip() == "PONG":
            return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("redis-server did not start (apt-get install redis-server)")


@asynccontextmanager
async def celery_stack(pool: str, concurrency: int = 8) -> AsyncIterator[Service]:
    """redis-server, a Celery worker (`--pool`, `--concurrency 8`) and the baseline API."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp,
        FakeOpenAIServer(api_key="sk-test-llm-key") as llm,
    ):
        workdir = Path(tmp)
        redis_port = free_port()
        redis = _start_redis(redis_port, workdir)
        env = {
            "BASELINE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "API_KEY": API_KEY,
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "sk-test-llm-key",
            "LLM_MODEL": "fake-model-1",
            "PYTHONUNBUFFERED": "1",
        }
        worker_args = ["celery", "-A", "bench.baseline_celery.tasks", "worker", "--pool", pool]
        worker_args += ["--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-gossip"]
        worker_args += ["--without-mingle", "--without-heartbeat"]
        processes = {"worker": ServiceProcess("celery", worker_args, env, workdir / "celery.log").start()}
        port = free_port()
        processes["api"] = ServiceProcess(
            "baseline-api", ["bench.baseline_celery.api"], {**env, "API_PORT": str(port)}, workdir / "api.log"
        ).start()
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http_ok(f"{url}/health", process=processes["api"])
            pids = {
                "API": processes["api"].pid,
                f"Celery worker ({pool})": processes["worker"].pid,
                "redis-server": redis.pid,
            }
            yield Service(f"celery ({pool})", url, pids)
        finally:
            for process in processes.values():
                process.stop()
            redis.send_signal(signal.SIGTERM)
            redis.wait(10)


async def history_events_per_task(address: str, workflow_ids: list[str]) -> float:
    """Mean length of the given workflows' histories."""
    client = await Client.connect(address)
    lengths = [len((await client.get_workflow_handle(w).fetch_history()).events) for w in workflow_ids]
    return statistics.mean(lengths)
