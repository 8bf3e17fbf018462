"""The two transports: they perform the steps of operations (see ``steps``) with httpx, blocking or with
asyncio. All that decides what to send, and what an answer means, is in the operations."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, TypeVar

import httpx

from taskservice_client.events import is_live_event_stream
from taskservice_client.steps import (
    Emit,
    Emitting,
    HttpCall,
    NextEventLine,
    OpenEventStream,
    Sleep,
    Step,
    Stepper,
)

E = TypeVar("E")
R = TypeVar("R")


class BlockingTransport:
    """Runs operations over an ``httpx.Client``."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def run(self, operation: Emitting[E, R], on_emit: Callable[[E], object] | None = None) -> R:
        """The operation's result; each item it emits goes to ``on_emit``."""
        stepper = Stepper(operation)
        with contextlib.closing(self._drive(stepper)) as emitted:
            for item in emitted:
                if on_emit is not None:
                    on_emit(item)
        return stepper.result

    def iterate(self, operation: Emitting[E, Any]) -> Generator[E, None, None]:
        """The items the operation emits."""
        with contextlib.closing(self._drive(Stepper(operation))) as emitted:
            yield from emitted

    def _drive(self, stepper: Stepper[Any]) -> Generator[Any, None, None]:
        events = _BlockingEventStream(self.http)
        with contextlib.closing(stepper), contextlib.closing(events):
            for step in stepper:
                if isinstance(step, Emit):
                    yield step.item
                    continue
                try:
                    stepper.outcome = self._perform(step, events)
                except httpx.HTTPError as err:
                    stepper.error = err

    def _perform(self, step: Step, events: _BlockingEventStream) -> object:
        if isinstance(step, HttpCall):
            return self.http.send(step.build(self.http))
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        if isinstance(step, NextEventLine):
            return next(events.lines, None)
        return events.open(step)


class _BlockingEventStream:
    """The event stream one operation has open: at most one, closed by the next open or at the end."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.response: httpx.Response | None = None
        self.lines: Iterator[str] = iter(())

    def open(self, step: OpenEventStream) -> httpx.Response:
        self.close()
        self.response = self.http.send(step.call.build(self.http), stream=True)
        if is_live_event_stream(self.response):
            self.lines = self.response.iter_lines()
        else:
            self.response.read()
        return self.response

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
        self.response, self.lines = None, iter(())


class AsyncTransport:
    """Runs operations over an ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def run(
        self, operation: Emitting[E, R], on_emit: Callable[[E], object | Awaitable[object]] | None = None
    ) -> R:
        """The operation's result; each item it emits goes to ``on_emit`` (awaited if it is a coroutine)."""
        stepper = Stepper(operation)
        async with contextlib.aclosing(self._drive(stepper)) as emitted:
            async for item in emitted:
                outcome = on_emit(item) if on_emit is not None else None
                if inspect.isawaitable(outcome):
                    await outcome
        return stepper.result

    async def iterate(self, operation: Emitting[E, Any]) -> AsyncGenerator[E, None]:
        """The items the operation emits."""
        async with contextlib.aclosing(self._drive(Stepper(operation))) as emitted:
            async for item in emitted:
                yield item

    async def _drive(self, stepper: Stepper[Any]) -> AsyncGenerator[Any, None]:
        events = _AsyncEventStream(self.http)
        try:
            for step in stepper:
                if isinstance(step, Emit):
                    yield step.item
                    continue
                try:
                    stepper.outcome = await self._perform(step, events)
                except httpx.HTTPError as err:
                    stepper.error = err
        finally:
            stepper.close()
            await events.aclose()

    async def _perform(self, step: Step, events: _AsyncEventStream) -> object:
        if isinstance(step, HttpCall):
            return await self.http.send(step.build(self.http))
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, NextEventLine):
            return None if events.lines is None else await anext(events.lines, None)
        return await events.open(step)


class _AsyncEventStream:
    """The event stream one operation has open: at most one, closed by the next open or at the end."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.response: httpx.Response | None = None
        self.lines: AsyncIterator[str] | None = None

    async def open(self, step: OpenEventStream) -> httpx.Response:
        await self.aclose()
        self.response = await self.http.send(step.call.build(self.http), stream=True)
        if is_live_event_stream(self.response):
            self.lines = self.response.aiter_lines()
        else:
            await self.response.aread()
        return self.response

    async def aclose(self) -> None:
        if self.response is not None:
            await self.response.aclose()
        self.response, self.lines = None, None
