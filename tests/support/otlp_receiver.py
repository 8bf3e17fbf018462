"""A real OTLP/HTTP trace receiver: decodes the protobuf `ExportTraceServiceRequest`s that exporters POST to
`/v1/traces` and keeps their spans, so tests see exactly what a collector would get."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from taskservice.devtools.local_server import LocalHandler, LocalHTTPServer

__all__ = ["OTLPReceiver", "ReceivedSpan"]


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span; ids in hex as logs and trace UIs show them, `parent_id` empty for a root."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    error: bool


def _value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    return None if field is None else getattr(value, field)


def decode_spans(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=str(resource.get("service.name", "")),
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        # STATUS_CODE_ERROR = 2
                        error=span.status.code == 2,
                    )
                )
    return spans


class _Handler(LocalHandler):
    server_version = "OTLPReceiver/1.0"

    def do_POST(self) -> None:
        if self.path != "/v1/traces":
            self.send_body(404, b"")
            return
        body = self.read_body()
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.owner.add(decode_spans(body))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_body(200, answer, content_type="application/x-protobuf")


class OTLPReceiver(LocalHTTPServer):
    """Collects every span exported to it; `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT gets."""

    handler = _Handler
    thread_name = "otlp-receiver"

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self._spans: list[ReceivedSpan] = []

    @property
    def endpoint(self) -> str:
        return self.url("").rstrip("/")

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._cond:
            self._spans.extend(spans)
            self._cond.notify_all()

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._cond:
            return list(self._spans)

    def wait_until(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float) -> list[ReceivedSpan]:
        """Block until `done(spans)` holds; return the spans, else AssertionError listing what came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done(self._spans):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = sorted({(s.service, s.name) for s in self._spans})
                    raise AssertionError(f"spans after {timeout:g}s: {got}")
                self._cond.wait(remaining)
            return list(self._spans)
