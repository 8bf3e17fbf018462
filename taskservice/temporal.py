"""The Temporal client, configured once from Settings."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from taskservice.settings import Settings


async def connect(settings: Settings, *, sdk_metrics_port: int | None = None) -> Client:
    """Connect to Temporal; with `sdk_metrics_port`, the SDK's own metrics are served there for Prometheus."""
    runtime = None
    if sdk_metrics_port:
        runtime = Runtime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"0.0.0.0:{sdk_metrics_port}"))
        )
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, runtime=runtime or Runtime.default()
    )
