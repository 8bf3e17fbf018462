"""Traces: off (and free) without OTEL_* variables; with them, one trace per task from the REST request
through the workflow and its activity to each webhook attempt, received by a real OTLP/HTTP receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from pydantic import SecretStr

from api.main import create_app
from taskservice.devtools.fake_llm import FakeOpenAIServer
from taskservice.settings import Settings
from taskservice.tracing import (
    BOOKKEEPING_ROOTS,
    TracingConfigError,
    configure_tracing,
    span,
    tracing_requested,
)
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.support.processes import ServiceProcess, TemporalDevServer, free_port, wait_http_ok
from tests.support.stack import API_KEYS, TRACING_NAMESPACE, base_env, wait_for_pollers
from tests.support.tasks import submit, wait_status
from tests.support.webhook_receiver import WebhookReceiver

SERVER = ProtoSpan.SpanKind.SPAN_KIND_SERVER
CALLBACK_TOKEN = "cb-secret-0123456789"
QUERY_KEY = "query-secret-9876543210"


@pytest.mark.parametrize(
    ("environ", "requested"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "api", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_which_variables_turn_tracing_on(environ: dict[str, str], requested: bool) -> None:
    assert tracing_requested(environ) is requested


def test_without_otel_variables_nothing_is_installed(tmp_path: Path) -> None:
    """No provider, no exporter thread, no middleware, no Temporal interceptor: our spans are no-ops."""
    threads = set(threading.enumerate())
    assert configure_tracing("api", {"OTEL_SERVICE_NAME": "api"}) is None
    assert not isinstance(trace.get_tracer_provider(), SdkTracerProvider)
    app = create_app(Settings(api_key=SecretStr("k" * 16), data_dir=tmp_path))
    assert app.state.services.temporal_interceptors == ()
    assert not [m for m in app.user_middleware if "opentelemetry" in m.cls.__module__]
    assert set(threading.enumerate()) == threads
    with span("media.denoise", steps=1) as current:
        assert not current.is_recording()
        assert not current.get_span_context().is_valid


def test_unsupported_exporters_fail_loudly() -> None:
    with pytest.raises(TracingConfigError, match="zipkin"):
        configure_tracing("api", {"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(TracingConfigError, match="grpc"):
        configure_tracing(
            "api", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        )


@dataclass(frozen=True)
class TracedStack:
    url: str
    worker_log: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def otlp() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
async def traced(
    temporal_server: TemporalDevServer, fake_llm: FakeOpenAIServer, workdir: Path, otlp: OTLPReceiver
) -> AsyncIterator[TracedStack]:
    """An API and a default-queue worker (which also runs the workflows and webhooks) exporting to `otlp`."""
    env = base_env(temporal_server, fake_llm, workdir) | {
        "TEMPORAL_NAMESPACE": TRACING_NAMESPACE,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        # Export within a fraction of a second instead of the default 5 s.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    port = free_port()
    env["MEDIA_PUBLIC_URL"] = f"http://127.0.0.1:{port}/media"
    worker_log = workdir / "worker-traced.log"
    worker = ServiceProcess("worker-traced", ["workers", "default"], env, worker_log).start()
    api = ServiceProcess("api-traced", ["api"], {**env, "API_PORT": str(port)}, workdir / "api-traced.log")
    api.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/health", process=api)
        await wait_for_pollers(temporal_server.address, TRACING_NAMESPACE, ["default"])
        yield TracedStack(url, worker_log, env)
    finally:
        api.stop()
        worker.stop()


def _one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {len(found)} spans of {sorted(s.name for s in spans)}"
    return found[0]


async def test_one_trace_from_request_to_webhook(
    traced: TracedStack, otlp: OTLPReceiver, webhook_receiver: WebhookReceiver
) -> None:
    """API, workflow, activity and webhook spans of one task share one trace and nest as the work did."""
    async with httpx.AsyncClient(base_url=traced.url, headers={"X-API-Key": API_KEYS[0]}, timeout=30) as api:
        callback = webhook_receiver.url(f"/hook?token={CALLBACK_TOKEN}")
        task_id = await submit(api, "test_prompt", {"prompt_template": "traced"}, callback_url=callback)
        await wait_status(api, task_id, "completed")
        # A credential in a query string (as an EventSource sends it) is scrubbed from the request's span.
        read = await api.get(f"/api/v1/tasks/{task_id}/status", params={"api_key": QUERY_KEY})
        assert read.status_code == 200
    webhook_receiver.wait_for(1, timeout=30)
    received = otlp.wait_until(
        lambda got: any(s.name == "webhook.deliver" and s.attributes.get("task_id") == task_id for s in got),
        timeout=30,
    )
    submitted = _one(received, "POST /api/v1/tasks/submit")
    spans = [s for s in received if s.trace_id == submitted.trace_id]
    started = _one(spans, "StartWorkflow:TaskWorkflow")
    ran = _one(spans, "RunWorkflow:TaskWorkflow")
    activity_started = _one(spans, "StartActivity:test_prompt")
    activity = _one(spans, "RunActivity:test_prompt")
    llm = _one(spans, "llm.chat_completion")
    webhook_activity = _one(spans, "RunActivity:deliver_webhook")
    webhook = _one(spans, "webhook.deliver")
    webhook_post = _one([s for s in spans if s.parent_id == webhook.span_id], "POST")

    # Every span of the task's workflow is in the request's trace.
    task_spans = [s for s in received if s.attributes.get("temporalWorkflowID") == task_id]
    assert {s.trace_id for s in task_spans} == {submitted.trace_id}
    assert (submitted.service, submitted.parent_id, submitted.kind) == ("api", "", SERVER)
    assert started.service == "api" and started.parent_id == submitted.span_id
    assert {s.service for s in (ran, activity, webhook, webhook_post)} == {"worker-default"}
    assert ran.parent_id == started.span_id
    assert activity.parent_id == activity_started.span_id
    assert llm.parent_id == activity.span_id
    assert webhook.parent_id == webhook_activity.span_id
    assert _ancestors(spans, activity) >= {activity_started.span_id, started.span_id, submitted.span_id}
    assert _ancestors(spans, webhook_post) >= {webhook_activity.span_id, started.span_id, submitted.span_id}
    assert webhook.attributes == {
        "webhook_event": "completed",
        "attempt": 1,
        "task_id": task_id,
        "http.response.status_code": 200,
    }
    assert not webhook.error and webhook_post.attributes["http.status_code"] == 200
    exported = repr([(s.name, s.attributes) for s in otlp.wait_until(_has_scrubbed_read, timeout=30)])
    assert CALLBACK_TOKEN not in exported and QUERY_KEY not in exported
    assert webhook_post.attributes["http.url"].endswith("/hook")
    # The worker's bookkeeping (a registry report every 2 s) starts no trace of its own.
    assert not {s.name for s in received} & BOOKKEEPING_ROOTS
    # The worker's log line of the delivery names the attempt's span.
    lines = [json.loads(line) for line in traced.worker_log.read_text().splitlines() if line.startswith("{")]
    sent = [r for r in lines if r.get("event") == "Webhook sent successfully" and r.get("task_id") == task_id]
    assert [(r["trace_id"], r["span_id"]) for r in sent] == [(webhook.trace_id, webhook.span_id)]


def _has_scrubbed_read(spans: list[ReceivedSpan]) -> bool:
    return any("api_key=[redacted]" in str(s.attributes.get("http.url", "")) for s in spans)


def _ancestors(spans: list[ReceivedSpan], span: ReceivedSpan) -> set[str]:
    by_id = {s.span_id: s for s in spans}
    found: set[str] = set()
    while span.parent_id in by_id:
        found.add(span.parent_id)
        span = by_id[span.parent_id]
    return found


@pytest.fixture(scope="module")
async def traced_images(
    traced: TracedStack, temporal_server: TemporalDevServer, workdir: Path, tiny_models: dict[str, Path]
) -> AsyncIterator[None]:
    """A gpu_medium worker (tiny Stable Diffusion on the CPU) beside the traced API."""
    env = traced.env | {"IMAGE_MODEL": str(tiny_models["tiny-sd"]), "TORCH_DEVICE": "cpu"}
    worker = ServiceProcess(
        "worker-traced-gpu-medium", ["workers", "gpu_medium"], env, workdir / "gpu-traced.log"
    )
    worker.start()
    try:
        await wait_for_pollers(temporal_server.address, TRACING_NAMESPACE, ["gpu_medium"])
        yield
    finally:
        worker.stop()


async def test_media_steps_are_child_spans_of_the_activity(
    traced: TracedStack, traced_images: None, otlp: OTLPReceiver
) -> None:
    """An image task's trace shows where its time went: model load, denoising, encoding, upload."""
    async with httpx.AsyncClient(base_url=traced.url, headers={"X-API-Key": API_KEYS[0]}, timeout=30) as api:
        data = {"prompt": "a traced fox", "resolution": "64x64", "num_inference_steps": 2, "seed": 3}
        task_id = await submit(api, "generate_image", data)
        assert (await wait_status(api, task_id, timeout=180))["status"] == "completed"

    def uploaded(spans: list[ReceivedSpan]) -> bool:
        return any(s.name == "RunActivity:generate_image" for s in spans) and any(
            s.name == "media.upload" for s in spans
        )

    received = otlp.wait_until(uploaded, timeout=30)
    # A seeded image renders in its content key's render workflow (issue 24), started from the task's own
    # join activity: the render is in the task's trace.
    trace = {s.trace_id for s in received if s.attributes.get("temporalWorkflowID") == task_id}
    activity = next(s for s in received if s.name == "RunActivity:generate_image" and s.trace_id in trace)
    assert activity.attributes.get("temporalWorkflowID") != task_id
    children = {s.name: s for s in received if s.parent_id == activity.span_id}
    assert {"media.model_load", "media.denoise", "media.encode", "media.upload"} <= set(children)
    assert {s.service for s in children.values()} == {"worker-gpu_medium"}
    assert children["media.denoise"].attributes == {"steps": 2, "batch_size": 1}
    assert children["media.model_load"].attributes["model_kind"] == "text2image"
