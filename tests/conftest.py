"""Session-wide real stack: Temporal dev server, fake OpenAI endpoint, webhook receiver, workers, API."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from tests.fakes.file_server import FileServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.stack import ServiceProcess, TemporalDevServer, free_port, wait_http_ok

API_KEYS = ("test-key-1", "test-key-2")
ADMIN_KEY = "test-admin-key"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"task-service-test-secret-32bytes").decode()
ISOLATED_NAMESPACE = "isolated"
# Never has a worker: tasks there show how "no worker" looks.
EMPTY_NAMESPACE = "no-workers"
TERMINAL = {"completed", "failed", "cancelled"}


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


def _base_env(temporal: TemporalDevServer, llm: FakeOpenAIServer, workdir: Path) -> dict[str, str]:
    return {
        "ENVIRONMENT": "development",
        "TEMPORAL_ADDRESS": temporal.address,
        "TEMPORAL_NAMESPACE": "default",
        "API_HOST": "127.0.0.1",
        "API_KEY": ",".join(API_KEYS),
        "ADMIN_API_KEY": ADMIN_KEY,
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-test-llm-key",
        "LLM_MODEL": "fake-model-1",
        "TASK_RETRY_INITIAL_INTERVAL": "0.3",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "ALLOW_PRIVATE_URLS": "true",
        "RATE_LIMIT_SUBMIT_PER_MIN": "100000",
        "RATE_LIMIT_STATUS_PER_MIN": "100000",
        "MAX_CONCURRENT_PER_PROJECT": "100000",
        "WORKER_CONCURRENCY_DEFAULT": "2",
        "WORKER_CONCURRENCY_GPU_MEDIUM": "2",
        "WORKER_MAX_TASKS": "100000",
        "WORKER_REPORT_INTERVAL_S": "2",
        # Several workers of one queue run side by side in tests: no fixed metrics ports.
        "WORKER_METRICS_PORT": "0",
        "DATA_DIR": str(workdir / "data"),
        "PYTHONUNBUFFERED": "1",
    }


async def wait_for_pollers(address: str, namespace: str, queues: list[str], timeout: float = 90) -> None:
    """Block until every queue has a live activity poller (workers import heavy modules at start)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

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


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def temporal_server(workdir: Path) -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(workdir, namespaces=(ISOLATED_NAMESPACE, EMPTY_NAMESPACE)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key="sk-test-llm-key") as server:
        yield server


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


WORKER_QUEUES = ["default", "cpu_intensive", "gpu_medium", "gpu_heavy"]
REPO = Path(__file__).resolve().parents[1]
TINY_MODELS = REPO / "data" / "test-models"


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """Tiny randomly initialised diffusers pipelines, built once (no downloads) and reused across runs."""
    spec = importlib.util.spec_from_file_location(
        "build_tiny_models", REPO / "scripts" / "build_tiny_models.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folders: dict[str, Path] = module.build_all(TINY_MODELS)
    spec = importlib.util.spec_from_file_location("build_tiny_tts", REPO / "scripts" / "build_tiny_tts.py")
    assert spec is not None and spec.loader is not None
    tts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tts)
    vits = TINY_MODELS / "tiny-vits"
    folders["tiny-vits"] = vits if (vits / "config.json").exists() else tts.build(vits)
    return folders


@pytest.fixture(scope="session")
def file_server() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


@pytest.fixture(scope="session")
async def stack(
    temporal_server: TemporalDevServer,
    fake_llm: FakeOpenAIServer,
    workdir: Path,
    tiny_models: dict[str, Path],
) -> AsyncIterator[Stack]:
    env = _base_env(temporal_server, fake_llm, workdir)
    env |= {
        "IMAGE_MODEL": str(tiny_models["tiny-sd"]),
        "VIDEO_MODEL": str(tiny_models["tiny-video"]),
        "ANIMATION_MODEL": str(tiny_models["tiny-animatediff"]),
        "CAPTION_MODEL": str(tiny_models["tiny-blip"]),
        "TTS_MODEL": str(tiny_models["tiny-vits"]),
        "TORCH_DEVICE": "cpu",
    }
    port = free_port()
    env["MEDIA_PUBLIC_URL"] = f"http://127.0.0.1:{port}/media"
    workers = {
        queue: ServiceProcess(
            f"worker-{queue}", ["workers", queue], env, workdir / f"worker-{queue}.log"
        ).start()
        for queue in WORKER_QUEUES
    }
    api = ServiceProcess("api", ["api"], {**env, "API_PORT": str(port)}, workdir / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/health", process=api)
    await wait_for_pollers(temporal_server.address, "default", WORKER_QUEUES)
    yield Stack(temporal_server, fake_llm, env, workdir, url, workers, api)
    for process in [api, *workers.values()]:
        process.stop()


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"X-API-Key": API_KEYS[0]}, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="session")
async def temporal_client(temporal_server: TemporalDevServer) -> Client:
    return await Client.connect(temporal_server.address)


async def submit(api: httpx.AsyncClient, task_type: str, task_data: dict[str, Any], **extra: Any) -> str:
    body = {
        "project_id": extra.pop("project_id", "proj_test"),
        "task_type": task_type,
        "task_data": task_data,
    }
    body.update(extra)
    response = await api.post("/api/v1/tasks/submit", json=body)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def wait_status(
    api: httpx.AsyncClient, task_id: str, statuses: set[str] | str = frozenset(TERMINAL), timeout: float = 60
) -> dict[str, Any]:
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await api.get(f"/api/v1/tasks/{task_id}/status")
        if response.status_code == 503:  # Temporal restarting (fault tests): keep polling
            await asyncio.sleep(0.2)
            continue
        assert response.status_code == 200, response.text
        last = response.json()
        if last["status"] in wanted:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} did not reach {wanted} in {timeout}s; last: {last}")
