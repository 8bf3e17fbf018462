"""Session-wide real stack: Temporal dev server, fake OpenAI endpoint, workers, API; a webhook receiver
per test.

Fixtures only: the helpers and stand-ins they are built from live in tests/support/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from taskservice.devtools.fake_llm import FakeOpenAIServer
from tests.support.file_server import StaticFileServer
from tests.support.processes import ServiceProcess, TemporalDevServer, free_port, wait_http_ok
from tests.support.scripts import build_tiny_models
from tests.support.stack import (
    API_KEYS,
    COUNTING_NAMESPACE,
    LLM_KEY,
    NAMESPACES,
    TENANCY_NAMESPACE,
    WORKER_QUEUES,
    Replica,
    Stack,
    base_env,
    wait_for_pollers,
    worker_log_digest,
)
from tests.support.tenancy import World, tenancy_world
from tests.support.webhook_receiver import WebhookReceiver

STACK_DIR = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def workdir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stack")
    request.config.stash[STACK_DIR] = path
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    """After a red run, what the session stack's workers went through (CI keeps only the output)."""
    path = terminalreporter.config.stash.get(STACK_DIR, None)
    if exitstatus != 0 and path is not None:
        terminalreporter.section("session stack workers")
        for line in worker_log_digest(path):
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def temporal_server(workdir: Path) -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(workdir, namespaces=NAMESPACES).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=LLM_KEY) as server:
        yield server


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A receiver of this test's own: what it records and the answers scripted on it are this test's."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """Tiny randomly initialised models, built once (no downloads) and reused across runs."""
    return build_tiny_models()


@pytest.fixture(scope="session")
def file_server() -> Iterator[StaticFileServer]:
    with StaticFileServer() as server:
        yield server


@pytest.fixture(scope="session")
async def stack(
    temporal_server: TemporalDevServer,
    fake_llm: FakeOpenAIServer,
    workdir: Path,
    tiny_models: dict[str, Path],
) -> AsyncIterator[Stack]:
    env = base_env(temporal_server, fake_llm, workdir)
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


@pytest.fixture(scope="session")
async def counting(stack: Stack) -> AsyncIterator[Replica]:
    """A default-queue worker and an API in the counting namespace, where only exact counting tests run."""
    async with stack.replica("counting", COUNTING_NAMESPACE) as replica:
        yield replica


@pytest.fixture(scope="session")
async def counting_temporal(temporal_server: TemporalDevServer) -> Client:
    return await Client.connect(temporal_server.address, namespace=COUNTING_NAMESPACE)


@pytest.fixture(scope="session")
async def tenancy(stack: Stack, temporal_server: TemporalDevServer) -> AsyncIterator[World]:
    """Two tenants, a user of each, a service token and the operator, with tasks in one project name, behind
    an API and a default-queue worker of their own namespace (see tests/support/tenancy.py)."""
    async with stack.replica("tenancy", TENANCY_NAMESPACE) as replica:
        temporal = await Client.connect(temporal_server.address, namespace=TENANCY_NAMESPACE)
        async with tenancy_world(replica, temporal) as world:
            yield world
