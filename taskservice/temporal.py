"""The Temporal client, configured once from Settings."""

from __future__ import annotations

from temporalio.client import Client

from taskservice.settings import Settings


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    """Connect to Temporal; `lazy` defers the connection to the first call (the API starts without it)."""
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace, lazy=lazy)
