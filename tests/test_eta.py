"""Time estimates: learned durations, waits behind a backlog, quotes and strict deadlines (issue 26).

The stack tests run in a namespace of their own (a default-queue worker with 2 slots, ETA_MIN_SAMPLES=3), so
the learned models start from nothing; test_prompt tasks take a known time through the fake LLM's
`[[sleep=N]]` marker.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api.service.estimates import OpenTask, first_free_slot
from taskservice.durations import FLOOR_S, WINDOW, DurationSample, DurationWindows, fit, warm_run_seconds
from taskservice.work_units import work_units
from taskservice_client import AsyncTaskServiceClient, ConflictError
from taskservice_client.cli_output import ready_in
from taskservice_client.models import TaskStatus
from tests.support.stack import (
    API_KEYS,
    EMPTY_NAMESPACE,
    ETA_NAMESPACE,
    OTHER_KEYS,
    Replica,
    Stack,
)
from tests.support.tasks import TASKS, wait_status

MIN_SAMPLES = 3
SUBMITS_PER_MIN = 30


def _prompt(sleep_s: float, padding: int = 0) -> dict[str, Any]:
    return {"prompt_template": "x" * padding + f" [[sleep={sleep_s}]]"}


def _body(task_data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"project_id": "proj_eta", "task_type": "test_prompt", "task_data": task_data, **extra}


# --- the model, without a stack ------------------------------------------------------------------------


def test_fit_follows_the_line_and_ignores_an_outlier() -> None:
    pairs = [[x, 2.0 + 0.5 * x] for x in (1.0, 2.0, 4.0, 8.0, 16.0)] + [[3.0, 60.0]]
    model = fit(pairs)
    assert model.slope_s == pytest.approx(0.5, rel=0.05)
    assert model.intercept_s == pytest.approx(2.0, abs=0.3)
    assert model.p50(10.0) == pytest.approx(7.0, rel=0.1)
    assert model.p90(10.0) >= model.p50(10.0)
    assert model.error_p50 < 0.05 < model.error_p90


def test_a_cold_model_load_is_not_the_tasks_run() -> None:
    assert warm_run_seconds(12.5, {"model_load_s": 10.0, "cpu_seconds": 12.4}) == pytest.approx(2.5)
    assert warm_run_seconds(2.5, {"cpu_seconds": 2.4}) == 2.5
    assert warm_run_seconds(1.0, {"model_load_s": 3.0}) == FLOOR_S  # never at or below zero
    assert warm_run_seconds(1.0, {"model_load_s": "3"}) == 1.0  # a malformed report changes nothing


def test_bigger_inputs_are_more_work() -> None:
    small = {"resolution": "512x512", "quality": "draft"}
    big = {"resolution": "1024x1024", "quality": "high"}
    assert work_units("generate_image", big) > work_units("generate_image", small) > 0
    short = {"resolution": "512x512", "duration": 2, "fps": 12, "quality": "standard"}
    long = {**short, "duration": 8}
    assert work_units("generate_video", long) == pytest.approx(4 * work_units("generate_video", short))
    assert work_units("generate_character_voice", {"text": "a" * 400}) == 400
    assert work_units("test_prompt", _prompt(1, 4000)) > work_units("test_prompt", _prompt(1))


def test_the_wait_is_the_first_slot_free_after_the_tasks_ahead() -> None:
    now = datetime.now(UTC)
    running = [OpenTask((3, now), f"r{i}", 12.0, now - timedelta(seconds=s)) for i, s in enumerate((2, 10))]
    ahead = [OpenTask((3, now), f"q{i}", 5.0) for i in range(3)]
    # Slots free at 10 s and 2 s; the three tasks ahead end at 7, 12 and 15: the next slot frees at 12.
    assert first_free_slot(2, running, ahead, 0.0, now) == pytest.approx(12.0, abs=0.01)
    assert first_free_slot(2, running, [], 0.0, now) == pytest.approx(2.0, abs=0.01)
    assert first_free_slot(3, running, [], 0.0, now) == 0.0  # a free slot
    # Work the listing has not seen yet (Temporal's backlog) is spread over the slots.
    assert first_free_slot(2, [], [], 8.0, now) == 4.0


def test_windows_stay_small_and_follow_the_newest_build() -> None:
    windows = DurationWindows()
    for i in range(WINDOW + 10):
        windows.add(DurationSample("generate_image", "sd-old", float(i), 1.0))
    windows.add(DurationSample("generate_image", "sd-new", 1.0, 2.0))
    windows.add(DurationSample("generate_image", "sd-newer", 1.0, 3.0))
    assert windows.current("generate_image") == ("sd-newer", [[1.0, 3.0]])
    assert len(windows.samples) == 2 and "generate_image@sd-old" not in windows.samples
    assert windows.current("generate_video") is None


# --- through the service ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def eta(stack: Stack) -> AsyncIterator[Replica]:
    async with stack.replica(
        "eta",
        ETA_NAMESPACE,
        ETA_MIN_SAMPLES=str(MIN_SAMPLES),
        RATE_LIMIT_SUBMIT_PER_MIN=str(SUBMITS_PER_MIN),
    ) as replica:
        yield replica


async def _quote(client: httpx.AsyncClient, task_data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/tasks/quote", json=_body(task_data, **extra))
    assert response.status_code == 200, response.text
    quote: dict[str, Any] = response.json()
    return quote


async def _model(client: httpx.AsyncClient, task_type: str) -> dict[str, Any]:
    response = await client.get("/api/v1/tasks/estimates")
    assert response.status_code == 200, response.text
    [model] = [m for m in response.json()["models"] if m["task_type"] == task_type]
    return model


async def _learned(client: httpx.AsyncClient, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        model = await _model(client, "test_prompt")
        if model["basis"] == "learned" or time.monotonic() > deadline:
            return model
        await asyncio.sleep(0.5)


async def test_prior_then_learned_then_waits_behind_a_backlog(eta: Replica, temporal_server: Any) -> None:
    temporal = await Client.connect(temporal_server.address, namespace=ETA_NAMESPACE)
    async with eta.client() as api, eta.client(OTHER_KEYS[0]) as other:
        # Before any task ran: the catalog's prior, and no wait (a worker polls, nothing waits).
        quote = await _quote(api, _prompt(0.5))
        for _ in range(40):  # the replica's worker polls; Temporal lists a new poller a moment later
            if quote["estimate"]["wait_p50_s"] is not None:
                break
            await asyncio.sleep(0.5)
            quote = await _quote(api, _prompt(0.5))
        assert quote["estimate"]["basis"] == "prior" and quote["estimate"]["samples"] == 0
        assert quote["estimated_duration"] == 10 and quote["estimate"]["wait_p50_s"] == 0, quote
        # A quote starts nothing and spends no submit token (more quotes than the minute's submits).
        for _ in range(SUBMITS_PER_MIN + 5):
            await _quote(api, _prompt(0.5))
        assert (await temporal.count_workflows(TASKS)).count == 0

        # Tasks whose time grows with their prompt: 0.5 s to 2 s, against a prior of 10 s.
        ids = []
        for k in range(1, MIN_SAMPLES + 2):
            submitted = await api.post("/api/v1/tasks/submit", json=_body(_prompt(0.5 * k, 4000 * k)))
            assert submitted.status_code == 200, submitted.text
            assert submitted.json()["estimate"]["basis"] == "prior"
            ids.append(submitted.json()["task_id"])
        for task_id in ids:
            assert (await wait_status(api, task_id))["status"] == "completed"
        model = await _learned(api)
        assert model["basis"] == "learned" and model["samples"] >= MIN_SAMPLES, model
        assert model["slope_s"] > 0, model

        small, big = await _quote(api, _prompt(0.5, 4000)), await _quote(api, _prompt(2.0, 16000))
        assert small["estimate"]["basis"] == "learned"
        assert small["estimated_duration"] < 10  # what was measured, not the prior
        assert 0.3 < small["estimate"]["duration_p50_s"] < 3, small
        assert big["estimate"]["duration_p50_s"] > small["estimate"]["duration_p50_s"]

        # Another tenant's long tasks fill both slots and the backlog: they count in this tenant's wait...
        # (4 s at the size the model learned takes 4 s: the wait prices each task ahead by its size.)
        for _ in range(6):
            submitted = await other.post("/api/v1/tasks/submit", json=_body(_prompt(4.0, 32000)))
            assert submitted.status_code == 200, submitted.text
        behind = await _wait_for_backlog(api)
        assert behind["estimate"]["wait_p50_s"] > 0
        assert _at(behind["estimated_start_at"]) > _at(small["estimated_start_at"])
        # ...ahead of a task of their priority, not of a higher one (it waits only for a slot to free).
        urgent = await _quote(api, _prompt(0.5, 4000), priority="HIGH")
        assert urgent["estimate"]["wait_p50_s"] < behind["estimate"]["wait_p50_s"], (urgent, behind)
        queues = {q["queue"]: q for q in (await api.get("/api/v1/queues")).json()["queues"]}
        assert queues["default"]["drain_s"] > 0, queues["default"]
        assert queues["gpu_heavy"]["drain_s"] is None
        assert queues["gpu_heavy"]["drain_reason"] == "no worker is polling queue 'gpu_heavy'"
        # ...but are not listed to it.
        listed = (await api.get("/api/v1/tasks", params={"status": "queued"})).json()
        assert listed == []

        # A strict deadline it cannot meet behind that backlog: 422, and nothing starts.
        before = (await temporal.count_workflows(TASKS)).count
        refused = await api.post(
            "/api/v1/tasks/submit",
            json=_body(_prompt(0.5), deadline_s=1),
            headers={"Prefer": "handling=strict"},
        )
        assert refused.status_code == 422, refused.text
        error = refused.json()
        assert error["error"] == "deadline_unreachable" and error["completion_p90_at"], error
        by_body = await api.post(
            "/api/v1/tasks/submit", json=_body(_prompt(0.5), deadline_s=1, deadline_policy="reject")
        )
        assert by_body.status_code == 422, by_body.text
        # One it can meet is accepted, and a queued task's status carries its estimate.
        accepted = await api.post(
            "/api/v1/tasks/submit",
            json=_body(_prompt(0.5), deadline_s=3600),
            headers={"Prefer": "handling=strict"},
        )
        assert accepted.status_code == 200, accepted.text
        assert (await temporal.count_workflows(TASKS)).count <= before + 1
        accepted_id = accepted.json()["task_id"]
        status = (await api.get(f"/api/v1/tasks/{accepted_id}/status")).json()
        if status["status"] == "queued":
            assert status["estimate"]["wait_p50_s"] is not None and status["estimated_start_at"]
        # The same in seed 002's task and in the task's event stream.
        detail = (await api.get(f"/api/v1/tasks/{accepted_id}")).json()
        event = await _first_event(api, accepted_id)
        for shown in (detail, event):
            if shown["status"] == "queued":
                assert shown["estimate"]["wait_p50_s"] is not None and shown["estimated_start_at"], shown
        finished = (await api.get(f"/api/v1/tasks/{ids[0]}")).json()
        assert finished["estimate"] is None and finished["estimated_completion_at"] is None
        # The default is unchanged: an unreachable deadline without strict handling is accepted.
        lenient = await api.post("/api/v1/tasks/submit", json=_body(_prompt(0.5), deadline_s=1))
        assert lenient.status_code == 200, lenient.text


async def _first_event(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    async with api.stream("GET", f"/api/v1/tasks/{task_id}/events") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                event: dict[str, Any] = json.loads(line[len("data: ") :])
                return event
    raise AssertionError("the stream ended without an event")


async def _wait_for_backlog(api: httpx.AsyncClient, timeout: float = 20) -> dict[str, Any]:
    """A quote once Temporal shows a backlog on the default queue (its count lags a little)."""
    deadline = time.monotonic() + timeout
    while True:
        quote = await _quote(api, _prompt(0.5, 4000))
        if quote["estimate"]["wait_p50_s"] or time.monotonic() > deadline:
            return quote
        await asyncio.sleep(0.3)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_queue_without_workers_gives_no_time_and_says_why(stack: Stack) -> None:
    process, url = stack.start_api("api-eta-no-workers", TEMPORAL_NAMESPACE=EMPTY_NAMESPACE)
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}) as client:
            quote = await _quote(client, _prompt(0.5))
            assert quote["estimate"]["wait_p50_s"] is None
            assert quote["estimated_start_at"] is None and quote["estimated_completion_at"] is None
            assert quote["estimate"]["reason"] == "no worker is polling queue 'default'"
            assert quote["estimate"]["duration_p50_s"] == 10  # the prior still says how long it would run
            refused = await client.post(
                "/api/v1/tasks/quote",
                json=_body(_prompt(0.5), deadline_s=60),
                headers={"Prefer": "handling=strict"},
            )
            assert refused.status_code == 422 and "no worker is polling" in refused.json()["message"]
    finally:
        process.stop()


def test_taskctl_says_when_it_will_be_ready() -> None:
    now = datetime.now(UTC)
    base = {"task_id": "t", "project_id": "p", "task_type": "test_prompt", "created_at": now}
    estimate = {
        "duration_p50_s": 100,
        "duration_p90_s": 170,
        "completion_p90_at": now + timedelta(seconds=180),
    }
    queued = TaskStatus.model_validate(
        {
            **base,
            "status": "queued",
            "estimated_completion_at": now + timedelta(seconds=120),
            "estimate": estimate,
        }
    )
    assert ready_in(queued, now) == "ready in ~2 min (90 %: 3 min)"
    unserved = {"duration_p50_s": 10, "duration_p90_s": 15, "reason": "no worker is polling queue 'default'"}
    nobody = TaskStatus.model_validate({**base, "status": "queued", "estimate": unserved})
    assert ready_in(nobody, now) == "no estimate: no worker is polling queue 'default'"
    assert ready_in(TaskStatus.model_validate({**base, "status": "completed"}), now) is None


async def test_media_results_report_device_seconds_and_usage_sums_them(api: httpx.AsyncClient) -> None:
    project = f"proj_usage_{time.time_ns()}"
    response = await api.post(
        "/api/v1/tasks/submit",
        json={"project_id": project, "task_type": "generate_character_voice", "task_data": {"text": "Hi."}},
    )
    assert response.status_code == 200, response.text
    done = await wait_status(api, response.json()["task_id"], timeout=180)
    assert done["status"] == "completed", done
    # The test workers run on CPU: named as such, never as GPU time.
    seconds = done["result"]["metadata"]["cpu_seconds"]
    assert seconds > 0 and "gpu_seconds" not in done["result"]["metadata"]
    deadline = time.monotonic() + 20
    while True:
        usage = (await api.get("/api/v1/usage")).json()
        rows = [r for r in usage["usage"] if r["project_id"] == project]
        if rows or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    [row] = rows
    assert row["task_type"] == "generate_character_voice" and row["tasks"] == 1
    assert row["cpu_seconds"] == pytest.approx(seconds) and row["gpu_seconds"] == 0
    assert row["day"] == datetime.now(UTC).date().isoformat()
    backwards = await api.get(
        "/api/v1/usage", params={"from": "2026-12-07T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
    )
    assert backwards.status_code == 400 and backwards.json()["error"] == "validation_error"


async def test_the_sdk_quotes_and_a_strict_deadline_it_would_miss_raises(eta: Replica) -> None:
    async with AsyncTaskServiceClient(eta.url, API_KEYS[0]) as tasks:
        quote = await tasks.quote("proj_eta", "test_prompt", _prompt(0.5))
        assert quote.estimate is not None and quote.estimate.duration_p50_s > 0
        assert quote.estimated_completion_at is not None and quote.queue == "default"
        with pytest.raises(ConflictError) as refused:
            await tasks.quote("proj_eta", "test_prompt", _prompt(0.5), deadline_s=0.01, strict=True)
        assert refused.value.status_code == 422 and refused.value.error == "deadline_unreachable"
