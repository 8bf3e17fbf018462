"""The Temporal client, configured once from Settings (address, namespace, TLS/mTLS, API key)."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import TLSConfig

from taskservice.payloads import DATA_CONVERTER
from taskservice.settings import Settings


def temporal_tls(settings: Settings) -> TLSConfig | bool:
    """What `Client.connect(tls=...)` gets: False (plaintext), True (system CAs) or the configured files."""
    if not settings.temporal_tls_enabled():
        return False
    files = (settings.temporal_tls_ca, settings.temporal_tls_cert, settings.temporal_tls_key)
    if all(path is None for path in files):
        return True
    ca, cert, key = (None if path is None else path.read_bytes() for path in files)
    return TLSConfig(server_root_ca_cert=ca, client_cert=cert, client_private_key=key)


def bind_address(host: str, port: int) -> str:
    """`host:port` for a listener, IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def connect(
    settings: Settings, *, sdk_metrics_port: int | None = None, interceptors: Sequence[Interceptor] = ()
) -> Client:
    """Connect to Temporal; with `sdk_metrics_port`, the SDK's own metrics are served there for Prometheus.
    `interceptors` (tracing) apply to this client's calls and to the workers built on it."""
    runtime = None
    if sdk_metrics_port:
        metrics = PrometheusConfig(bind_address=bind_address(settings.worker_metrics_host, sdk_metrics_port))
        runtime = Runtime(telemetry=TelemetryConfig(metrics=metrics))
    api_key = settings.temporal_api_key
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        runtime=runtime or Runtime.default(),
        tls=temporal_tls(settings),
        api_key=None if api_key is None else api_key.get_secret_value(),
        interceptors=interceptors,
        data_converter=DATA_CONVERTER,
    )
