"""The session's real stack (Temporal dev server, workers, API) and replicas of it in other namespaces."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from taskservice.devtools.fake_llm import FakeOpenAIServer
from taskservice.webhook_secrets import tenant_secret
from tests.support.processes import ServiceProcess, TemporalDevServer, free_port, wait_http_ok

# Tenant `default` (two keys: rotation) and a second tenant that must never see the first one's tasks.
# Keys have at least MIN_API_KEY_LENGTH (16) characters, as the service requires at start.
API_KEYS = ("test-tenant-key-1", "test-tenant-key-2")
OTHER_TENANT = "acme"
OTHER_KEYS = ("acme-tenant-key-1", "acme-tenant-key-2")
# The schema fuzzer's own tenant: its generated requests rotate webhook secrets and hit every route, so they
# may change nothing that another test's tenant relies on.
FUZZ_TENANT = "fuzz"
FUZZ_KEY = "fuzz-tenant-key-01"
ADMIN_KEY = "test-admin-key-0123"
JWT_SECRET = "task-service-test-jwt-secret-0123456789"
LLM_KEY = "sk-test-llm-key"
# The master secret (WEBHOOK_SECRET); receivers hold their tenant's own secret, derived from it. Tenant
# `default` never rotates in tests (rotation tests use tenants of their own, through JWTs).
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"task-service-test-secret-32bytes").decode()
TENANT_WEBHOOK_SECRET = tenant_secret(base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_")), "default", 0)
# Workers of their own, started by the tests that need them (priority, recycling, registry...).
ISOLATED_NAMESPACE = "isolated"
# Never has a worker: tasks there show how "no worker" looks.
EMPTY_NAMESPACE = "no-workers"
# Only tests that compare namespace-wide figures (metrics, statistics, cleanup) exactly run tasks here.
COUNTING_NAMESPACE = "counting"
# The tenancy tests' world: a worker of the default queue only (tasks of the other queues stay queued).
TENANCY_NAMESPACE = "tenancy"
# The tracing test's own API and worker, which export their spans to the test's OTLP receiver.
TRACING_NAMESPACE = "traces"
# The console tests' own (tests/test_console.py): a default-queue worker only, one image slot.
CONSOLE_NAMESPACE = "console"
# The bookkeeping-history test's own: its 300 capped tasks load the limiter, metrics and registry workflows of
# this namespace only, not the session stack's that the tests after it read.
HISTORY_NAMESPACE = "histories"
# The time-estimate tests' own (tests/test_eta.py): learned durations start from nothing there.
ETA_NAMESPACE = "eta"
# The live-preview tests' own (tests/media/test_previews.py): workers with tiny preview decoders.
PREVIEWS_NAMESPACE = "previews"
NAMESPACES = (
    ISOLATED_NAMESPACE,
    EMPTY_NAMESPACE,
    COUNTING_NAMESPACE,
    TENANCY_NAMESPACE,
    TRACING_NAMESPACE,
    CONSOLE_NAMESPACE,
    HISTORY_NAMESPACE,
    ETA_NAMESPACE,
    PREVIEWS_NAMESPACE,
)
WORKER_QUEUES = ["default", "cpu_intensive", "gpu_medium", "gpu_heavy"]


def base_env(temporal: TemporalDevServer, llm: FakeOpenAIServer, workdir: Path) -> dict[str, str]:
    """Environment of every API and worker process of the tests (and the benchmarks)."""
    return {
        "ENVIRONMENT": "development",
        "TEMPORAL_ADDRESS": temporal.address,
        "TEMPORAL_NAMESPACE": "default",
        "API_HOST": "127.0.0.1",
        "API_KEY": ",".join(API_KEYS),
        "API_KEYS": ",".join([*(f"{OTHER_TENANT}={key}" for key in OTHER_KEYS), f"{FUZZ_TENANT}={FUZZ_KEY}"]),
        "ADMIN_API_KEY": ADMIN_KEY,
        "JWT_SECRET": JWT_SECRET,
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": LLM_KEY,
        "LLM_MODEL": "fake-model-1",
        "TASK_RETRY_INITIAL_INTERVAL": "0.3",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "ALLOW_PRIVATE_URLS": "true",
        "RATE_LIMIT_SUBMIT_PER_MIN": "100000",
        "RATE_LIMIT_STATUS_PER_MIN": "100000",
        "MAX_CONCURRENT_PER_PROJECT": "100000",
        "MAX_UNFINISHED_PER_TENANT": "100000",
        # Tests ask for URGENT in every tenant; tests/test_admission.py holds the default (HIGH at most).
        "TENANT_MAX_PRIORITY": "*=URGENT",
        "WORKER_CONCURRENCY_DEFAULT": "2",
        "WORKER_CONCURRENCY_GPU_MEDIUM": "2",
        "WORKER_MAX_TASKS": "100000",
        "WORKER_REPORT_INTERVAL_S": "2",
        # Several workers of one queue run side by side in tests: no fixed metrics ports.
        "WORKER_METRICS_PORT": "0",
        "DATA_DIR": str(workdir / "data"),
        "PYTHONUNBUFFERED": "1",
    }


# What tells a worker's life story in its log: starts, recycles, crashes, warnings and errors.
DIGEST_EVENTS = (
    '"Worker started"',
    '"Worker will drain and restart"',
    '"Worker exited unexpectedly"',
    '"level": "warning"',
    '"level": "error"',
    "Traceback",
)


def worker_log_digest(workdir: Path, tail: int = 3) -> list[str]:
    """Per session worker log: how often each life event happened, and its last few lines."""
    lines: list[str] = []
    for queue in WORKER_QUEUES:
        path = workdir / f"worker-{queue}.log"
        text = path.read_text(errors="replace").splitlines() if path.exists() else []
        counts = {event: sum(event in line for line in text) for event in DIGEST_EVENTS}
        lines.append(f"{queue}: {counts}")
        lines.extend(f"  {line[:240]}" for line in text[-tail:])
    return lines


async def wait_for_pollers(address: str, namespace: str, queues: list[str], timeout: float = 90) -> None:
    """Block until every queue has a live activity poller (workers import heavy modules at start)."""
    client = await Client.connect(address, namespace=namespace)
    deadline = time.monotonic() + timeout
    pending = set(queues)
    while pending and time.monotonic() < deadline:
        for queue in list(pending):
            response = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                )
            )
            if response.pollers:
                pending.discard(queue)
        await asyncio.sleep(0.3)
    if pending:
        raise RuntimeError(f"no worker polled {sorted(pending)} within {timeout}s")


@dataclass
class Replica:
    """A worker and an API of their own, in a namespace of their own."""

    namespace: str
    worker: ServiceProcess
    api: ServiceProcess
    url: str

    def client(self, key: str = API_KEYS[0], timeout: float = 30) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"X-API-Key": key}, timeout=timeout)


@dataclass
class Stack:
    temporal: TemporalDevServer
    llm: FakeOpenAIServer
    env: dict[str, str]
    workdir: Path
    api_url: str
    workers: dict[str, ServiceProcess]
    api: ServiceProcess

    def spawn(self, name: str, args: list[str], **env: str) -> ServiceProcess:
        return ServiceProcess(name, args, {**self.env, **env}, self.workdir / f"{name}.log").start()

    def start_api(self, name: str, **env: str) -> tuple[ServiceProcess, str]:
        port = free_port()
        process = self.spawn(name, ["api"], API_PORT=str(port), **env)
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/health", process=process)
        return process, url

    @asynccontextmanager
    async def replica(
        self,
        name: str,
        namespace: str,
        *,
        queue: str = "default",
        worker_flags: tuple[str, ...] = (),
        **env: str,
    ) -> AsyncIterator[Replica]:
        """A `queue` worker (`worker_flags` added to its command line) and an API, both with `env`."""
        env = {**env, "TEMPORAL_NAMESPACE": namespace}
        worker = self.spawn(f"worker-{name}", ["workers", queue, *worker_flags], **env)
        api = None
        try:
            api, url = self.start_api(f"api-{name}", **env)
            await wait_for_pollers(self.temporal.address, namespace, [queue])
            yield Replica(namespace, worker, api, url)
        finally:
            if api is not None:
                api.stop()
            worker.stop()
