"""A value bound to a context variable for the code run inside a `with` (its tasks, and threads started with
a copy of the context, see it): how per-request and per-attempt counters reach the code that feeds them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def bound(var: ContextVar[T | None], value: T) -> Iterator[T]:
    """`value` in `var` until the block ends (then what was there before)."""
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)
