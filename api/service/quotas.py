"""What a tenant may spend: token buckets per tenant and kind of work, open streams and waiting requests
(per API replica).

Costs follow the work: a batch of N costs N submit tokens, a bulk retry one per task it starts, listings and
statistics one read token per Temporal query they run, a waiting status read one, like any status read.
Without a shared store these limits hold per API replica.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from api.domain.caller import Caller
from api.domain.errors import RateLimited
from taskservice.settings import Settings

T = TypeVar("T")
# How long a refused stream should wait before trying again (streams end when their tasks do).
STREAM_RETRY_AFTER_S = 5


class Quota(StrEnum):
    SUBMIT = "submit"
    READ = "read"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`per_minute` tokens per key, refilled continuously; bursts up to the full minute's worth."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str) -> _Bucket:
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._capacity, now)
        bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        return bucket

    def acquire(self, key: str, cost: int = 1) -> int | None:
        """Take `cost` tokens; return None when allowed, else the seconds to wait until they are there.

        A cost above the bucket's capacity is charged as a full bucket: such work is allowed once a minute.
        """
        cost_f = min(float(cost), self._capacity)
        bucket = self._bucket(key)
        if bucket.tokens >= cost_f:
            bucket.tokens -= cost_f
            return None
        return max(1, math.ceil((cost_f - bucket.tokens) / self._rate))

    def charge(self, key: str, cost: int) -> None:
        """Take `cost` more tokens for work already done (the bucket may go below zero: later work waits)."""
        if cost > 0:
            self._bucket(key).tokens -= cost


# What each limit is called in its 429 message (seed 001: submissions and status reads).
_NAMES = {Quota.SUBMIT: "Submit", Quota.READ: "Status"}


class StreamSlots:
    """Open streams (or waiting requests) per tenant; each holds a slot until it ends or its client leaves."""

    def __init__(
        self, limit: int, what: str = "open streams", retry_after: int = STREAM_RETRY_AFTER_S
    ) -> None:
        self.limit = limit
        self.what = what
        self.retry_after = retry_after
        self._open: dict[str, int] = {}

    def hold(self, caller: Caller) -> StreamSlot:
        if self._open.get(caller.tenant, 0) >= self.limit:
            raise RateLimited(
                f"At most {self.limit} {self.what} per tenant; close one first", retry_after=self.retry_after
            )
        self._open[caller.tenant] = self._open.get(caller.tenant, 0) + 1
        return StreamSlot(self, caller.tenant)

    def release(self, tenant: str) -> None:
        self._open[tenant] -= 1
        if not self._open[tenant]:
            del self._open[tenant]


class StreamSlot:
    def __init__(self, slots: StreamSlots, tenant: str) -> None:
        self._slots: StreamSlots | None = slots
        self._tenant = tenant

    def release(self) -> None:
        if self._slots is not None:
            self._slots.release(self._tenant)
            self._slots = None

    def __enter__(self) -> StreamSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


class HeldStream(AsyncIterator[T]):
    """A stream that gives its slot back when it ends, fails, is closed, or is dropped unread."""

    def __init__(self, source: AsyncIterator[T], slot: StreamSlot) -> None:
        self._source = source
        self._slot = slot

    async def __anext__(self) -> T:
        try:
            return await anext(self._source)
        except BaseException:
            self._slot.release()
            raise

    async def aclose(self) -> None:
        self._slot.release()
        closer = getattr(self._source, "aclose", None)
        if closer is not None:
            await closer()

    def __del__(self) -> None:
        self._slot.release()


class Quotas:
    """The service's limits on a tenant: rate buckets and open streams."""

    def __init__(self, settings: Settings) -> None:
        self._limiters = {
            Quota.SUBMIT: RateLimiter(settings.rate_limit_submit_per_min),
            Quota.READ: RateLimiter(settings.rate_limit_status_per_min),
        }
        self.streams = StreamSlots(settings.max_streams_per_tenant)
        # A waiting request holds an HTTP connection and (per task) a history long-poll until it answers.
        self.waits = StreamSlots(settings.max_waits_per_tenant, "waiting requests", retry_after=1)

    def spend(self, caller: Caller, quota: Quota, cost: int = 1) -> None:
        limiter = self._limiters[quota]
        wait = limiter.acquire(caller.tenant, cost)
        if wait is not None:
            raise RateLimited(
                f"{_NAMES[quota]} rate limit of {limiter.per_minute} per minute exceeded", retry_after=wait
            )

    def charge(self, caller: Caller, quota: Quota, cost: int) -> None:
        self._limiters[quota].charge(caller.tenant, cost)

    def stream(self, caller: Caller, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """`source` holding one of the tenant's stream slots (429 now if none is free)."""
        return HeldStream(source, self.streams.hold(caller))
