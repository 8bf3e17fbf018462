"""Reads a replica keeps for a moment: concurrent readers of an expired key share one read in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class SharedReads(Generic[K, V]):
    """Each key's latest read, kept `ttl_s` (loop time); a read that failed is not kept. A burst of requests
    at expiry costs one read, not one each."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._reads: dict[K, tuple[float, asyncio.Future[V]]] = {}

    async def get(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        now = asyncio.get_running_loop().time()
        kept = self._reads.get(key)
        if (
            kept is None
            or now - kept[0] > self._ttl_s
            or (kept[1].done() and kept[1].exception() is not None)
        ):
            kept = (now, asyncio.ensure_future(read()))
            self._reads[key] = kept
        # Shielded: a reader that is cancelled does not cancel the read the others wait for.
        return await asyncio.shield(kept[1])

    def latest(self, key: K) -> V | None:
        """The key's last finished read, if it succeeded (however old)."""
        kept = self._reads.get(key)
        if kept is None or not kept[1].done() or _failed(kept[1]):
            return None
        return kept[1].result()


def _failed(read: asyncio.Future[V]) -> bool:
    return read.done() and read.exception() is not None
