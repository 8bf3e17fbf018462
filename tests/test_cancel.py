"""Cancellation per the seed's state table, through the API and through the Temporal CLI."""

from __future__ import annotations

import asyncio
import subprocess

import httpx
from temporalio.client import Client

from tests.support.processes import temporal_binary
from tests.support.stack import Stack
from tests.support.tasks import submit, wait_status


async def test_cancel_running_task_stops_the_activity(api: httpx.AsyncClient, stack: Stack) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "long job [[sleep=30]]"})
    await wait_status(api, task_id, "processing")
    started = asyncio.get_running_loop().time()
    response = await api.delete(f"/api/v1/tasks/{task_id}")
    elapsed = asyncio.get_running_loop().time() - started
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["previous_state"] == "processing"
    # Temporal's "terminated" is something else (no cleanup): a cancelled task is said to be cancelled.
    assert body["message"] == "Task was running and has been cancelled"
    assert body["cancelled_at"]
    assert elapsed < 5, f"cancel took {elapsed:.1f}s"
    status = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
    assert status["status"] == "cancelled"
    assert status["completed_at"] is not None


async def test_cancel_queued_task_removes_it_without_running(api: httpx.AsyncClient, stack: Stack) -> None:
    # The default worker runs 2 at a time in tests: two sleepers keep the third one queued.
    busy = [
        await submit(api, "test_prompt", {"prompt_template": f"blocker {i} [[sleep=20]]"}) for i in range(2)
    ]
    for task_id in busy:
        await wait_status(api, task_id, "processing")
    requests_before = len(stack.llm.chat_requests)
    queued = await submit(api, "test_prompt", {"prompt_template": "never runs"})
    status = (await api.get(f"/api/v1/tasks/{queued}/status")).json()
    assert status["status"] == "queued"
    assert status["current_step"].startswith("queued:")
    response = await api.delete(f"/api/v1/tasks/{queued}")
    assert response.status_code == 200
    assert response.json()["previous_state"] == "queued"
    assert response.json()["message"] == "Task was queued and has been revoked"
    for task_id in busy:
        assert (await api.delete(f"/api/v1/tasks/{task_id}")).status_code == 200
    await asyncio.sleep(1)
    final = (await api.get(f"/api/v1/tasks/{queued}/status")).json()
    assert final["status"] == "cancelled" and final["started_at"] is None
    assert not any(
        "never runs" in m["content"] for r in stack.llm.chat_requests[requests_before:] for m in r["messages"]
    )


async def test_cancel_completed_is_400(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "quick"})
    await wait_status(api, task_id, "completed")
    response = await api.delete(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 400
    assert response.json()["detail"] == "Task has already completed successfully and cannot be cancelled"


async def test_cancel_failed_is_400(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "bad [[status=400]]"})
    await wait_status(api, task_id, "failed")
    response = await api.delete(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 400
    assert "failed" in response.json()["detail"]


async def test_cancel_twice_answers_already_cancelled(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "slow [[sleep=30]]"})
    await wait_status(api, task_id, "processing")
    assert (await api.delete(f"/api/v1/tasks/{task_id}")).status_code == 200
    again = await api.delete(f"/api/v1/tasks/{task_id}")
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    assert again.json()["previous_state"] == "cancelled"


async def test_cancel_unknown_is_404(api: httpx.AsyncClient) -> None:
    response = await api.delete("/api/v1/tasks/00000000-0000-4000-8000-000000000001")
    assert response.status_code == 404
    assert response.json()["error"] == "task_not_found"


async def test_temporal_cli_cancel_ends_in_the_same_cancelled_state(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    task_id = await submit(
        api, "test_prompt", {"prompt_template": "cli target [[sleep=30]]"}, project_id="p_cli_cancel"
    )
    await wait_status(api, task_id, "processing")
    subprocess.run(
        [
            temporal_binary(),
            "workflow",
            "cancel",
            "--workflow-id",
            task_id,
            "--address",
            stack.temporal.address,
        ],
        check=True,
        capture_output=True,
    )
    status = await wait_status(api, task_id, {"cancelled", "completed", "failed"}, timeout=10)
    assert status["status"] == "cancelled"
    listing = (await api.get("/api/v1/projects/p_cli_cancel/tasks", params={"status": "cancelled"})).json()
    assert [t["task_id"] for t in listing["tasks"]] == [task_id]


async def test_a_cancel_in_progress_reads_as_cancelling_never_as_a_retry(
    api: httpx.AsyncClient, temporal_client: Client
) -> None:
    """Between the cancel request and the activity's acknowledgement the task is still processing: its
    status says `cancelling` and keeps its progress (it once said `retrying: attempt 1 of 4 ...`)."""
    task_id = await submit(api, "test_prompt", {"prompt_template": "cancel me [[sleep=30]]"})
    before = await wait_status(api, task_id, "processing")
    await temporal_client.get_workflow_handle(task_id).cancel()  # as `temporal workflow cancel` does
    seen: list[tuple[str, str | None, float]] = []
    deadline = asyncio.get_running_loop().time() + 20
    while not seen or seen[-1][0] == "processing":
        assert asyncio.get_running_loop().time() < deadline, seen
        status = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
        seen.append((status["status"], status["current_step"], status["progress"]))
        await asyncio.sleep(0.05)
    assert seen[-1][0] == "cancelled", seen
    assert not [s for s in seen if (s[1] or "").startswith("retrying")], seen
    steps = [step for _, step, _ in seen[:-1]]
    if "cancelling" in steps:  # once the cancel reached the activity, nothing else is said until it ends
        assert set(steps[steps.index("cancelling") :]) == {"cancelling"}, seen
    assert all(progress >= before["progress"] for status, _, progress in seen if status == "processing"), seen
