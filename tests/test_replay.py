"""Task workflows are deterministic: histories they recorded replay without a non-determinism error.

Two sources: histories checked in under tests/data/histories/ (one per outcome, recorded by the workflow code
of their day: every later change to the workflows must keep replaying them, with `workflow.patched` where it
changes commands), and every history the test session itself has produced so far. They replay with the
workers' data converter, in Temporal's sandbox.

Regenerate the checked-in ones only when a change is meant to break old histories (nothing deployed yet):
`.venv/bin/python -m pytest -m record_histories tests/test_replay.py`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from taskservice.payloads import DATA_CONVERTER
from tests.support.tasks import submit, wait_status
from tests.support.webhook_receiver import WebhookReceiver
from workflows.limiter import ConcurrencyLimiterWorkflow
from workflows.task import TaskWorkflow

HISTORIES = Path(__file__).parent / "data" / "histories"
OUTCOMES = {
    "completed_with_webhooks",
    "completed_image",
    "failed_after_retries",
    "failed_webhook_unreachable",
    "cancelled_queued",
    "cancelled_running",
    "deadline_exceeded",
}


def _checked_in() -> list[WorkflowHistory]:
    return [
        WorkflowHistory.from_json(path.stem, path.read_text()) for path in sorted(HISTORIES.glob("*.json"))
    ]


async def test_checked_in_histories_still_replay() -> None:
    histories = _checked_in()
    assert {h.workflow_id for h in histories} == OUTCOMES
    results = await Replayer(workflows=[TaskWorkflow], data_converter=DATA_CONVERTER).replay_workflows(
        _iterate(histories), raise_on_replay_failure=False
    )
    assert not results.replay_failures, results.replay_failures


async def test_a_limiter_history_recorded_before_fair_slots_still_replays() -> None:
    """Recorded by the limiter of aa9c63a (arrival order within a priority, requests without a tenant): six
    holders asking at priority keys 3, 3, 4, 2, 3, 1 for one slot. Today's limiter keeps that history's order
    (the `fair-slots` patch) and decodes its state."""
    path = HISTORIES / "limiter" / "limiter_before_fair_slots.json"
    history = WorkflowHistory.from_json("limiter-before-fair-slots", path.read_text())
    result = await Replayer(
        workflows=[ConcurrencyLimiterWorkflow], data_converter=DATA_CONVERTER
    ).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def test_this_sessions_histories_replay_deterministically(
    api: httpx.AsyncClient, temporal_client: Client
) -> None:
    ok = await submit(api, "test_prompt", {"prompt_template": "replay me"}, project_id="p_replay")
    failed = await submit(
        api, "test_prompt", {"prompt_template": "replay [[status=400]]"}, project_id="p_replay"
    )
    slow = await submit(api, "test_prompt", {"prompt_template": "replay [[sleep=20]]"}, project_id="p_replay")
    await wait_status(api, slow, "processing")
    assert (await api.delete(f"/api/v1/tasks/{slow}")).status_code == 200
    for task_id, status in ((ok, "completed"), (failed, "failed"), (slow, "cancelled")):
        await wait_status(api, task_id, status)
    # Every task this session has finished so far (capped, webhooks, deadlines, retries...) plus these.
    histories: list[WorkflowHistory] = []
    async for execution in temporal_client.list_workflows(
        'WorkflowType = "TaskWorkflow" AND ExecutionStatus != "Running"', limit=200
    ):
        histories.append(await temporal_client.get_workflow_handle(execution.id).fetch_history())
    assert {ok, failed, slow} <= {h.workflow_id for h in histories}
    # The concurrency limiters this session ran (they never close: their histories so far).
    async for execution in temporal_client.list_workflows('WorkflowType = "ConcurrencyLimiterWorkflow"'):
        handle = temporal_client.get_workflow_handle(execution.id, run_id=execution.run_id)
        histories.append(await handle.fetch_history())
    results = await Replayer(
        workflows=[TaskWorkflow, ConcurrencyLimiterWorkflow], data_converter=DATA_CONVERTER
    ).replay_workflows(_iterate(histories), raise_on_replay_failure=False)
    assert not results.replay_failures, results.replay_failures


@pytest.mark.record_histories
async def test_record_histories(
    api: httpx.AsyncClient, temporal_client: Client, webhook_receiver: WebhookReceiver
) -> None:
    """Writes tests/data/histories/: one history per outcome, recorded by the current workflow code."""
    project = {"project_id": "p_histories"}
    tasks = {
        "completed_with_webhooks": await submit(
            api,
            "test_prompt",
            {"prompt_template": "recorded [[sleep=1]]"},
            callback_url=webhook_receiver.url("/ok"),
            webhook_events_filter=["start", "progress", "completed"],
            **project,
        ),
        "completed_image": await submit(
            api,
            "generate_image",
            {"prompt": "a lantern", "resolution": "64x64", "quality": "draft"},
            **project,
        ),
        "failed_after_retries": await submit(
            api, "test_prompt", {"prompt_template": "recorded [[status=500]]"}, **project
        ),
        "failed_webhook_unreachable": await submit(
            api,
            "test_prompt",
            {"prompt_template": "recorded [[status=400]]"},
            callback_url="http://127.0.0.1:9/unreachable",
            **project,
        ),
        "deadline_exceeded": await submit(
            api, "test_prompt", {"prompt_template": "recorded [[sleep=20]]"}, deadline_s=2, **project
        ),
    }
    running = await submit(api, "test_prompt", {"prompt_template": "recorded [[sleep=20]]"}, **project)
    await wait_status(api, running, "processing")
    # The default worker runs 2 at a time in tests: the deadline task and `running` keep the next one queued.
    queued = await submit(api, "test_prompt", {"prompt_template": "recorded, never runs"}, **project)
    assert (await api.get(f"/api/v1/tasks/{queued}/status")).json()["status"] == "queued"
    assert (await api.delete(f"/api/v1/tasks/{queued}")).json()["previous_state"] == "queued"
    assert (await api.delete(f"/api/v1/tasks/{running}")).json()["previous_state"] == "processing"
    tasks |= {"cancelled_queued": queued, "cancelled_running": running}
    assert set(tasks) == OUTCOMES
    HISTORIES.mkdir(parents=True, exist_ok=True)
    for outcome, task_id in tasks.items():
        await wait_status(api, task_id, timeout=120)
        history = await temporal_client.get_workflow_handle(task_id).fetch_history()
        text = json.dumps(json.loads(history.to_json()), indent=1, sort_keys=True)
        (HISTORIES / f"{outcome}.json").write_text(text + "\n")


async def _iterate(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history
