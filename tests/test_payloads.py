"""Our payload converter decodes every typed value as the SDK's default one does, from the same JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
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
    TaskProgressUpdate,
    TaskStarted,
    TaskWorkflowInput,
    WebhookDelivery,
    WebhookPayload,
    WorkerRegistryState,
    WorkerReport,
)
from taskservice.payloads import DATA_CONVERTER, decode
from taskservice.record import TaskMemo, TaskOutcome, TaskRecord, TaskStatus

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
        task=RECORD,
        attempt=1,
        outcome=TaskOutcome("t-1", TaskStatus.FAILED, error="boom", error_type="Invalid"),
    ),
    TaskOutcome("t-1", TaskStatus.COMPLETED, result={"url": "s3://b/k.png"}, processing_time=1.5),
    TaskProgressUpdate(progress=0.35, step="denoising 7/20"),
    TaskStarted(attempt=2, started_at="2026-12-02T10:00:02Z", worker="gpu_medium@host:42"),
    WebhookDelivery(
        url="http://receiver/hook",
        webhook_id="msg_t-1_failed",
        event="failed",
        payload=WebhookPayload(
            "t-1", "film-1", "generate_image", TaskStatus.FAILED, {"scene": 4}, error="Invalid: boom"
        ),
        task_id="t-1",
        project_id="film-1",
        task_type="generate_image",
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
    assert decode(TaskOutcome, written) == TaskOutcome("t", TaskStatus.COMPLETED)


def test_an_outcome_status_reads_back_as_the_enum() -> None:
    """Recorded as the plain string it was when `TaskOutcome.status` was a `str`."""
    payload = OURS.to_payload(TaskOutcome("t", TaskStatus.CANCELLED))
    assert json.loads(payload.data)["status"] == "cancelled"
    for converter in (OURS, SDK):
        assert type(converter.from_payload(payload, TaskOutcome).status) is TaskStatus


HISTORIES = Path(__file__).parent / "data" / "histories"


def _recorded_deliveries() -> list[tuple[str, Any]]:
    """Every `deliver_webhook` input the checked-in histories recorded (their payload was a plain dict)."""
    found = []
    for path in sorted(HISTORIES.glob("*.json")):
        for event in WorkflowHistory.from_json(path.stem, path.read_text()).events:
            scheduled = event.activity_task_scheduled_event_attributes
            if event.HasField("activity_task_scheduled_event_attributes") and (
                scheduled.activity_type.name == "deliver_webhook"
            ):
                found += [(path.stem, payload) for payload in scheduled.input.payloads]
    return found


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(payload, id=f"{history}-{json.loads(payload.data)['event']}")
        for history, payload in _recorded_deliveries()
    ],
)
def test_recorded_webhook_deliveries_send_the_same_bytes(payload: Any) -> None:
    """A delivery scheduled before the payload was typed (a retry picked up by a newer worker) decodes as a
    `WebhookDelivery`, and its body is byte for byte what the older activity sent: `json.dumps` of the
    dict as Temporal's JSON handed it over."""
    from activities.io.webhooks import webhook_body

    raw = json.loads(payload.data)["payload"]
    before = json.dumps(raw, separators=(",", ":"), default=str).encode()
    delivery = OURS.from_payload(payload, WebhookDelivery)
    assert delivery == SDK.from_payload(payload, WebhookDelivery)
    assert webhook_body(delivery.payload) == before
    # ... and written today, it sends the same bytes again.
    assert webhook_body(OURS.from_payload(OURS.to_payload(delivery), WebhookDelivery).payload) == before


def test_the_recorded_histories_hold_every_kind_of_webhook() -> None:
    events = {json.loads(payload.data)["event"].split("_")[0] for _, payload in _recorded_deliveries()}
    assert events == {"started", "progress", "completed", "failed"}, events


def test_a_cancelled_webhook_body() -> None:
    from activities.io.webhooks import webhook_body

    payload = WebhookPayload(
        "t-1", "p", "generate_image", TaskStatus.CANCELLED, {"b": 1, "a": 2}, error="Task was cancelled"
    )
    payload.cancelled_at = "2026-12-02T10:00:02Z"
    assert webhook_body(payload) == (
        b'{"cancelled_at":"2026-12-02T10:00:02Z","error":"Task was cancelled","metadata":{"a":2,"b":1},'
        b'"project_id":"p","status":"cancelled","task_id":"t-1","task_type":"generate_image"}'
    )
