"""Task activities run through temporalio's real ActivityEnvironment (no Temporal server needed).

A task activity returns its `TaskAttemptResult` (the task's result and the attempt's start); these tests
assert on the task's result, so `TaskActivityEnvironment.run` checks the attempt and gives its result.
Heartbeats are `TaskProgressUpdate`s; `heartbeat_fields` gives one as the dict the tests read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.testing import ActivityEnvironment

from taskservice.contracts import TaskAttemptResult, TaskProgressUpdate


class TaskActivityEnvironment(ActivityEnvironment):
    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        attempt: Awaitable[Any] = super().run(fn, *args, **kwargs)

        async def result() -> Any:
            ran = await attempt
            assert isinstance(ran, TaskAttemptResult), ran
            assert ran.attempt == self.info.attempt and ran.started_at.endswith("Z"), ran
            return ran.result

        return result()


def heartbeat_fields(details: Any) -> dict[str, Any]:
    """A task activity's heartbeat details, checked to be its `TaskProgressUpdate`, as a dict."""
    assert isinstance(details, TaskProgressUpdate), details
    return dataclasses.asdict(details)
