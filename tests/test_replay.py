"""Task workflows run without the sandbox: replaying their recorded histories proves them deterministic."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from tests.conftest import submit, wait_status
from workflows.task import TaskWorkflow


async def test_recorded_task_histories_replay_deterministically(
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
    results = await Replayer(workflows=[TaskWorkflow]).replay_workflows(
        _iterate(histories), raise_on_replay_failure=False
    )
    assert not results.replay_failures, results.replay_failures


async def _iterate(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history
