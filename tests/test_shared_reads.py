"""A replica's short-lived reads (queue states, queue loads, learned models): one read per key in flight."""

from __future__ import annotations

import asyncio

import pytest

from api.store.shared_reads import SharedReads


class Source:
    def __init__(self) -> None:
        self.reads = 0
        self.fail = False
        self.release = asyncio.Event()

    async def read(self) -> str:
        self.reads += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the read failed")
        return f"value {self.reads}"


async def test_concurrent_readers_share_one_read() -> None:
    source = Source()
    shared: SharedReads[str, str] = SharedReads(ttl_s=60)
    waiting = [asyncio.ensure_future(shared.get("q", source.read)) for _ in range(8)]
    await asyncio.sleep(0.01)
    assert shared.latest("q") is None  # nothing finished yet
    waiting[0].cancel()  # a reader that gives up does not cancel the read the others wait for
    source.release.set()
    assert await asyncio.gather(*waiting[1:]) == ["value 1"] * 7
    assert source.reads == 1 and shared.latest("q") == "value 1"
    assert await shared.get("q", source.read) == "value 1" and source.reads == 1  # kept within its time


async def test_an_expired_read_is_read_again_and_a_failed_one_is_not_kept() -> None:
    source = Source()
    source.release.set()
    shared: SharedReads[str, str] = SharedReads(ttl_s=0)
    assert await shared.get("q", source.read) == "value 1"
    await asyncio.sleep(0.01)
    source.fail = True
    with pytest.raises(RuntimeError):
        await shared.get("q", source.read)
    assert shared.latest("q") is None
    source.fail = False
    long_lived: SharedReads[str, str] = SharedReads(ttl_s=60)
    source.fail = True
    with pytest.raises(RuntimeError):
        await long_lived.get("q", source.read)
    source.fail = False
    assert await long_lived.get("q", source.read) == "value 4"  # within its time, yet read again
