"""OpenTelemetry traces, configured by the standard `OTEL_*` variables; with none of them set, nothing at all.

`configure_tracing(service)` is called once by an entry point (the API, a worker). It installs a tracer
provider exporting over OTLP/HTTP (or to the console) only when `OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_TRACES_EXPORTER` asks for traces; otherwise it returns None and
no provider, exporter thread, instrumentation or Temporal interceptor exists, so an untraced deployment pays
nothing. The spans of our own code (`span(...)`) then go to OpenTelemetry's no-op tracer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context, get_current
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
from temporalio.contrib.opentelemetry import TracingInterceptor

from taskservice.logs import scrub
from taskservice.netguard import redact_url

TRACER_NAME = "taskservice"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
EXPORTERS = ("otlp", "console")
# The API's own probes would be a trace each, every few seconds: not what an operator opens a trace for.
DEFAULT_EXCLUDED_URLS = "/health$,/api/v1/health$,/metrics$,/api/v1/metrics$"
# Traces that workers start for their own bookkeeping, not for a task: a registry report every few seconds
# per worker, the metrics workflow's visibility scan every 2 s. Dropped at their root (children follow).
BOOKKEEPING_ROOTS = frozenset(
    {
        "SignalWithStartWorkflow:WorkerRegistryWorkflow",
        "StartWorkflow:WorkerRegistryWorkflow",
        "StartWorkflow:TaskMetricsWorkflow",
        "StartWorkflow:ConcurrencyLimiterWorkflow",
        "RunActivity:scan_finished_tasks",
    }
)


__all__ = [
    "BOOKKEEPING_ROOTS",
    "Context",
    "SkipBookkeepingRoots",
    "Tracing",
    "TracingConfigError",
    "configure_tracing",
    "current_context",
    "instrument_httpx",
    "scrub_server_span",
    "span",
    "spans_in",
    "tracing_requested",
]


class TracingConfigError(ValueError):
    """An `OTEL_*` variable asks for something this service cannot export to."""


class SkipBookkeepingRoots(Sampler):
    """Samples every trace except those whose root is one of `BOOKKEEPING_ROOTS`."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if name in BOOKKEEPING_ROOTS:
            return SamplingResult(Decision.DROP)
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "SkipBookkeepingRoots"


@dataclass(frozen=True)
class Tracing:
    """The tracer provider of this process, once tracing is configured."""

    provider: TracerProvider
    # URLs (comma-separated regexes) the API leaves untraced: OTEL_PYTHON_FASTAPI_EXCLUDED_URLS, else probes.
    excluded_urls: str = DEFAULT_EXCLUDED_URLS

    def temporal_interceptor(self) -> TracingInterceptor:
        """For the Temporal client (its workers inherit it): workflow and activity spans join the trace of the
        call that started the workflow."""
        return TracingInterceptor(self.provider.get_tracer("temporalio"))

    def shutdown(self) -> None:
        """Export what is still buffered (a worker leaves with os._exit, which runs no atexit hook)."""
        self.provider.shutdown()


def tracing_requested(environ: Mapping[str, str]) -> bool:
    """Whether the `OTEL_*` variables ask for traces (OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none win)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter) or any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def configure_tracing(service: str, environ: Mapping[str, str] | None = None) -> Tracing | None:
    """Install this process's tracer provider if the environment asks for traces, else do nothing.

    Args:
        service: `service.name` when OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) does not name one.
        environ: the process environment by default.

    Raises:
        TracingConfigError: an exporter or protocol other than OTLP/HTTP protobuf or the console.
    """
    environ = os.environ if environ is None else environ
    if not tracing_requested(environ):
        return None
    exporter = _exporter(environ)
    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES name the service if set; else ours replaces the default.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource, sampler=ParentBased(root=SkipBookkeepingRoots()))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return Tracing(provider, environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", DEFAULT_EXCLUDED_URLS))


def _exporter(environ: Mapping[str, str]) -> SpanExporter:
    kind = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    if kind not in EXPORTERS:
        raise TracingConfigError(f"OTEL_TRACES_EXPORTER={kind!r}: this service exports to one of {EXPORTERS}")
    if kind == "console":
        return ConsoleSpanExporter()
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    if protocol not in ("", "http/protobuf"):
        raise TracingConfigError(f"OTLP protocol {protocol!r}: this service sends OTLP over http/protobuf")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # It reads the endpoint, headers, timeout and compression from the OTEL_EXPORTER_OTLP_* variables.
    return OTLPSpanExporter()


def _scrub_url_attributes(span: trace.Span, keys: tuple[str, ...], redact: Callable[[str], str]) -> None:
    attributes = getattr(span, "attributes", None) or {}
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, redact(value))


def scrub_server_span(span: trace.Span, scope: dict[str, Any]) -> None:
    """An API request's URL as the logs show it: `?api_key=`/`?token=` values never reach a trace."""
    _scrub_url_attributes(span, ("http.url", "url.full", "http.target", "url.query"), scrub)


def _scrub_client_span(span: trace.Span, request: Any) -> None:
    # Callback URLs and presigned input URLs carry their tokens in the query: as in the logs, none of it.
    _scrub_url_attributes(span, ("http.url", "url.full"), redact_url)


async def _scrub_client_span_async(span: trace.Span, request: Any) -> None:
    _scrub_client_span(span, request)


def instrument_httpx(tracing: Tracing) -> None:
    """Every httpx client made after this (webhooks, fetches) traces its requests, URLs without queries."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument(
        tracer_provider=tracing.provider,
        request_hook=_scrub_client_span,
        async_request_hook=_scrub_client_span_async,
    )


def current_context() -> Context:
    """The trace context of the caller, to parent spans of work done elsewhere (another thread) for it."""
    return get_current()


@contextmanager
def span(name: str, **attributes: str | int | float | bool) -> Iterator[trace.Span]:
    """A span of our own under the current one (a no-op span when tracing is off)."""
    with trace.get_tracer(TRACER_NAME).start_as_current_span(name, attributes=attributes) as current:
        yield current


@contextmanager
def spans_in(
    contexts: Sequence[Context], name: str, **attributes: str | int | float | bool
) -> Iterator[None]:
    """One span `name` in each of `contexts`' traces, around one piece of work that serves them all (a
    batched pipeline call serves several tasks: each task's trace shows it)."""
    tracer = trace.get_tracer(TRACER_NAME)
    with ExitStack() as stack:
        for context in contexts:
            stack.enter_context(
                tracer.start_as_current_span(name, context=context, attributes=attributes, end_on_exit=True)
            )
        yield
