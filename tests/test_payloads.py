"""Our payload converter decodes every typed value as the SDK's default one does, from the same JSON."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.converter import PayloadConverter

from taskservice.contracts import (
    ConcurrencySlot,
    LimiterState,
    MetricsState,
    RetrySpec,
    SlotRequest,
    TaskActivityInput,
    TaskAttemptResult,
    TaskPlan,
    TaskWorkflowInput,
    WorkerRegistryState,
    WorkerReport,
)
from taskservice.payloads import DATA_CONVERTER, decode
from taskservice.record import TaskMemo, TaskOutcome, TaskRecord

OURS = DATA_CONVERTER.payload_converter
SDK = PayloadConverter.default

RECORD = TaskRecord(
    project_id="film-1",
    task_type="generate_image",
    task_data={"prompt": "a lighthouse", "width": 512, "nested": {"a": [1, 2.5, None]}},
    queue="gpu_medium",
    created_at="2026-12-02T10:00:00+00:00",
    callback_url="http://receiver/hook",
    metadata={"scene": 4},
    deadline_s=90.0,
    webhook_events=["start", "completed"],
    tenant="acme",
)
VALUES: list[object] = [
    TaskWorkflowInput(
        task_id="t-1",
        task=RECORD,
        plan=TaskPlan(
            "generate_image", "gpu_medium", 270.0, 300.0, 30.0, RetrySpec(2.0, 2.0, 4, ["Invalid"])
        ),
        deadline_at="2026-12-02T10:01:30+00:00",
        concurrency=[ConcurrencySlot("image", 2), ConcurrencySlot("total", 8)],
        fairness_weight=2.5,
    ),
    TaskActivityInput("t-1", "film-1", "generate_image", {"prompt": "x"}, 270.0, progress_updates=True),
    TaskAttemptResult(
        result={"url": "s3://b/k.png", "seed": 7}, started_at="2026-12-02T10:00:02Z", attempt=2
    ),
    LimiterState(
        group="video", limit=2, holders={"t-1": "2026-12-02T11:00:00Z"}, waiting=[SlotRequest("t-2", 2)]
    ),
    WorkerRegistryState(
        workers={"w-1": WorkerReport("w-1", "gpu_medium", 42, "host", "running", "2026-12-02T10:00:00Z", 3)}
    ),
    MetricsState(),
    TaskMemo(
        task=RECORD, attempt=1, outcome=TaskOutcome("t-1", "failed", error="boom", error_type="Invalid")
    ),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda value: type(value).__name__)
def test_every_contract_reads_back_as_the_sdk_reads_it(value: object) -> None:
    payload = SDK.to_payload(value)
    assert OURS.to_payload(value) == payload  # the encoding is the SDK's own
    ours = OURS.from_payload(payload, type(value))
    assert ours == value == SDK.from_payload(payload, type(value))


@pytest.mark.parametrize(
    ("field", "written", "read"),
    [
        ("soft_timeout_s", 270, 270.0),  # an int where a float is declared becomes a float
        ("progress_updates", True, True),
        ("task_data", {}, {}),
    ],
)
def test_values_are_converted_to_the_declared_type(field: str, written: Any, read: Any) -> None:
    fields = {"task_id": "t", "project_id": "p", "task_type": "x", "task_data": {}, "soft_timeout_s": 1.0}
    decoded = decode(TaskActivityInput, {**fields, field: written})
    assert getattr(decoded, field) == read and type(getattr(decoded, field)) is type(read)
    assert decoded == SDK.from_payload(SDK.to_payload({**fields, field: written}), TaskActivityInput)


@pytest.mark.parametrize(
    "fields",
    [
        {"attempt": "2", "result": {}, "started_at": "s"},  # a string where an int is declared
        {"attempt": 2, "result": [], "started_at": "s"},  # a list where a dict is declared
        {"attempt": 2, "result": {}, "started_at": None},  # None where a string is required
        {"attempt": 2, "result": {}},  # a required field missing
    ],
)
def test_what_the_sdk_refuses_is_refused(fields: dict[str, Any]) -> None:
    payload = SDK.to_payload(fields)
    with pytest.raises(TypeError):
        SDK.from_payload(payload, TaskAttemptResult)
    with pytest.raises(TypeError):
        OURS.from_payload(payload, TaskAttemptResult)


def test_unknown_keys_are_skipped_as_the_sdk_skips_them() -> None:
    written = {"task_id": "t", "status": "completed", "added_later": {"x": 1}}
    assert decode(TaskOutcome, written) == TaskOutcome("t", "completed")
