"""What a task records reads back as the same typed objects, through Temporal's own JSON payload converter."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.converter import PayloadConverter

from taskservice.record import TaskMemo, TaskOutcome, TaskRecord, TaskStatus

RECORD = TaskRecord(
    project_id="film-1",
    task_type="llm_generation",
    task_data={"prompt_template": "a scene", "max_tokens": 10},
    queue="default",
    created_at="2026-12-02T10:00:00+00:00",
    priority="HIGH",
    metadata={"scene": 4, "tags": ["a", "b"]},
    deadline_s=90.5,
    webhook_events=["start", "completed"],
    tenant="acme",
    user="user-1",
)


def _as_memo(memo: TaskMemo) -> dict[str, Any]:
    """The memo as `describe()` and visibility hand it back: each key encoded and decoded without a type."""
    converter = PayloadConverter.default
    written = {
        "task": memo.task,
        "attempt": memo.attempt,
        "outcome": memo.outcome,
        "started_at": memo.started_at,
    }
    return {key: converter.from_payload(converter.to_payload(value)) for key, value in written.items()}


@pytest.mark.parametrize(
    "outcome",
    [
        None,
        TaskOutcome(
            task_id="t-1", status=TaskStatus.COMPLETED, result={"output": "text"}, processing_time=2.0
        ),
        TaskOutcome(task_id="t-1", status=TaskStatus.FAILED, error="boom", error_type="ValueError"),
    ],
)
def test_a_recorded_memo_reads_back_as_it_was_written(outcome: TaskOutcome | None) -> None:
    memo = TaskMemo(task=RECORD, attempt=2, started_at="2026-12-02T10:00:01+00:00", outcome=outcome)
    parsed = TaskMemo.parse(_as_memo(memo))
    assert parsed == memo
    assert parsed is not None and isinstance(parsed.task, TaskRecord)
    assert outcome is None or isinstance(parsed.outcome, TaskOutcome)
    assert outcome is None or (parsed.outcome is not None and type(parsed.outcome.status) is TaskStatus)


def test_keys_it_does_not_know_are_skipped_and_other_workflows_are_not_tasks() -> None:
    memo = _as_memo(TaskMemo(task=RECORD))
    memo["task"]["added_later"] = True
    memo["something_else"] = 1
    assert TaskMemo.parse(memo) == TaskMemo(task=RECORD)
    assert TaskMemo.parse({"metrics": {}}) is None


def test_a_record_missing_a_required_field_is_refused() -> None:
    with pytest.raises(TypeError, match="created_at"):
        TaskMemo.parse({"task": {"project_id": "p", "task_type": "t", "task_data": {}, "queue": "default"}})
