"""A throwaway stack for benchmarks: Temporal dev server, fake LLM, workers and API as real processes."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from taskservice.devtools.fake_llm import FakeOpenAIServer
from tests.support.processes import ServiceProcess, TemporalDevServer, free_port, wait_http_ok
from tests.support.stack import base_env, wait_for_pollers

API_KEY = "bench-key-0123456789"


@dataclass
class BenchStack:
    url: str
    workdir: Path
    processes: dict[str, ServiceProcess]
    temporal: TemporalDevServer


def machine_info() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )


@asynccontextmanager
async def bench_stack(
    queues: list[str], *, cpus: dict[str, set[int]] | None = None, **env: str
) -> AsyncIterator[BenchStack]:
    """The stack: a Temporal dev server, one worker per queue, the API; `cpus` pins a queue's worker to those
    CPUs (how a bench on one host stands in for workers on devices of their own)."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        FakeOpenAIServer(api_key="sk-test-llm-key") as llm,
    ):
        workdir = Path(tmp)
        temporal = TemporalDevServer(workdir).start()
        base = {
            **base_env(temporal, llm, workdir),
            "API_KEY": API_KEY,
            "WORKER_CONCURRENCY_DEFAULT": "8",
            "WORKER_REPORT_INTERVAL_S": "10",
            **env,
        }
        processes = {
            q: ServiceProcess(f"worker-{q}", ["workers", q], base, workdir / f"worker-{q}.log").start()
            for q in queues
        }
        for queue, cores in (cpus or {}).items():
            psutil.Process(processes[queue].pid).cpu_affinity(sorted(cores))
        # A bench that serves results at the API (MEDIA_PUBLIC_URL) names its port; else any free one.
        port = int(env.get("API_PORT") or free_port())
        processes["api"] = ServiceProcess(
            "api", ["api"], {**base, "API_PORT": str(port)}, workdir / "api.log"
        ).start()
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http_ok(f"{url}/health", process=processes["api"])
            await wait_for_pollers(temporal.address, "default", queues)
            await asyncio.sleep(1)
            yield BenchStack(url, workdir, processes, temporal)
        finally:
            for process in processes.values():
                process.stop()
            temporal.stop()
            _keep_logs(workdir)


def _keep_logs(workdir: Path) -> None:
    """The services' logs outlive the bench's temporary folder when BENCH_LOGS names a folder for them."""
    target = os.environ.get("BENCH_LOGS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for log in workdir.glob("*.log"):
            shutil.copy2(log, Path(target) / log.name)
