"""The Temporal UI and CLI as the operators' console: what each workflow says about itself, at every stage,
with nothing secret in it, and the operators' recipes of README.md and docs/operations.md run as written."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from taskservice.contracts import RetrySpec, TaskPlan, TaskWorkflowInput
from taskservice.record import TaskOutcome, TaskRecord
from tests.support.console import Shown, history_summaries, recipes, shown, shown_when
from tests.support.processes import temporal_binary
from tests.support.stack import API_KEYS, CONSOLE_NAMESPACE, Replica, Stack
from tests.support.tasks import submit, wait_status
from tests.support.webhook_receiver import WebhookReceiver
from workflows import console

CALLBACK_SECRET = "cbsecret-7f3a9"
SIGNATURE = "sigsecret-41d2c"
# What must never appear in a summary, details, current details or an activity/timer summary.
SECRETS = (API_KEYS[0], CALLBACK_SECRET, SIGNATURE, "token=", "X-Amz-Signature", "sig=")
SIGNED_GUIDE = f"https://files.example.com/guides/noir.png?X-Amz-Signature={SIGNATURE}&X-Amz-Expires=600"
PROMPT = "1920s detective in film noir, rain streaking the office window, neon sign flickering outside. " * 3


@dataclass
class Console:
    replica: Replica
    api: httpx.AsyncClient
    temporal: Client
    address: str

    async def shown(self, task_id: str, ready: Any = None, timeout: float = 30) -> Shown:
        if ready is None:
            return await shown(self.address, CONSOLE_NAMESPACE, task_id)
        return await shown_when(self.address, CONSOLE_NAMESPACE, task_id, ready, timeout)


@pytest.fixture(scope="module")
async def desk(stack: Stack) -> AsyncIterator[Console]:
    """A default-queue worker and an API of their own namespace, one image slot: an image task holds it and
    stays queued on gpu_medium (no worker there), the next one waits for the slot."""
    async with stack.replica("console", CONSOLE_NAMESPACE, IMAGE_MAX_CONCURRENT="1") as replica:
        temporal = await Client.connect(stack.temporal.address, namespace=CONSOLE_NAMESPACE)
        async with replica.client() as api:
            yield Console(replica, api, temporal, stack.temporal.address)


def _no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} shown in: {text}"


async def _assert_clean(desk: Console, task_id: str) -> None:
    """Nothing secret in what describe, metadata and the history's summaries show of the task."""
    seen = await desk.shown(task_id)
    summaries = [summary for _, summary in await history_summaries(desk.temporal, task_id)]
    _no_secrets(seen.summary, seen.details, seen.current, *summaries)
    assert API_KEYS[0] not in seen.describe_text


# --- pure text ------------------------------------------------------------------------------------


def _input(**task_data: Any) -> TaskWorkflowInput:
    record = TaskRecord(
        project_id="detective_series_001",
        task_type="generate_image",
        task_data=task_data,
        queue="gpu_medium",
        created_at="2026-12-07T10:00:00Z",
        callback_url=f"https://auto-movie.ft.tc/hooks/tasks?token={CALLBACK_SECRET}",
        tenant="acme",
    )
    plan = TaskPlan("generate_image", "gpu_medium", 270.0, 300.0, 30.0, RetrySpec(initial_interval_s=1.0))
    return TaskWorkflowInput(task_id="t-1", task=record, plan=plan)


def test_summary_fits_one_line_of_200_bytes_and_details_hide_secrets() -> None:
    task = _input(
        prompt="évocation " * 60,
        resolution="1024x1024",
        num_inference_steps=30,
        seed=7,
        style_guide=SIGNED_GUIDE,
        api_key="sk-live-123",
        reference_images=[SIGNED_GUIDE] * 2,
    )
    summary = console.task_summary(task)
    assert summary.startswith('generate_image · detective_series_001 · acme · "évocation')
    assert len(summary.encode()) <= console.SUMMARY_BYTES and "\n" not in summary
    details = console.task_details(task)
    assert "`acme`" in details and "`detective_series_001`" in details and "`gpu_medium`" in details
    assert "https://files.example.com/guides/noir.png" in details and "2 URLs (files.example.com)" in details
    assert "`auto-movie.ft.tc`" in details and "/api/v1/tasks/t-1/status" in details
    assert "sk-live-123" not in details and "api_key" not in details
    assert (
        console.activity_summary(task)
        == "generate_image on gpu_medium: 1024×1024, 30 steps, seed 7, 2 reference images"
    )
    assert console.webhook_summary(task, "completed") == "webhook completed to auto-movie.ft.tc"
    outcome = TaskOutcome(
        "t-1",
        "completed",
        {"media_url": f"http://localhost:8001/media/a/b.png?expires=1&sig={SIGNATURE}"},
        completed_at="2026-12-07T10:01:00Z",
        processing_time=12.34,
    )
    done = console.finished(task, outcome, 1)
    assert (
        "**Completed** in 12.3 s (attempt 1 of 4)" in done and "`http://localhost:8001/media/a/b.png`" in done
    )
    failed = console.finished(task, TaskOutcome("t-1", "failed", error=f"GET {SIGNED_GUIDE} answered 403"), 4)
    assert "**Failed**" in failed and "https://files.example.com/guides/noir.png answered 403" in failed
    _no_secrets(summary, details, done, failed, console.activity_summary(task))


# --- every stage, read back through the CLI ----------------------------------------------------------


async def test_queued_waiting_for_a_slot_and_cancelled(
    desk: Console, webhook_receiver: WebhookReceiver
) -> None:
    callback = webhook_receiver.url() + f"?token={CALLBACK_SECRET}"
    data = {
        "prompt": PROMPT,
        "resolution": "64x64",
        "num_inference_steps": 2,
        "seed": 7,
        "style_guide": SIGNED_GUIDE,
    }
    holder = await submit(
        desk.api, "generate_image", data, project_id="console_stages", callback_url=callback
    )
    queued = await desk.shown(holder, lambda s: "Queued" in s.current)
    assert queued.summary.startswith(
        'generate_image · console_stages · default · "1920s detective in film noir'
    )
    assert len(queued.summary.encode()) <= 200
    for part in (
        "`console_stages`",
        "`default`",
        "`gpu_medium`",
        "files.example.com/guides/noir.png",
        "`image` ≤ 1",
    ):
        assert part in queued.details, queued.details
    assert "**Queued** on `gpu_medium`" in queued.current
    assert "Summary" in queued.describe_text or "StaticSummary" in queued.describe_text

    waiting = await submit(desk.api, "generate_image", data, project_id="console_stages")
    seen = await desk.shown(waiting, lambda s: "Waiting for a slot" in s.current)
    assert "`image` (at most 1 run at once)" in seen.current and "task-service-limit-image" in seen.current
    limiter = await desk.shown("task-service-limit-image", lambda s: "1 waiting" in s.current)
    assert "image slots: 1 of 1 held, 1 waiting" in limiter.current
    assert holder in limiter.current and waiting in limiter.current
    assert limiter.summary == "concurrency limiter · image slots"

    for task_id in (waiting, holder):
        assert (await desk.api.delete(f"/api/v1/tasks/{task_id}")).status_code == 200
        seen = await desk.shown(task_id, lambda s: "Cancelled" in s.current)
        assert "(no attempt)" in seen.current and "Task was cancelled" in seen.current
        await _assert_clean(desk, task_id)
    summaries = await history_summaries(desk.temporal, holder)
    assert (
        "activity_task_scheduled_event_attributes",
        "generate_image on gpu_medium: 64×64, 2 steps, seed 7, standard quality",
    ) in summaries


async def test_processing_with_progress_completed_and_failed(
    desk: Console, webhook_receiver: WebhookReceiver
) -> None:
    callback = webhook_receiver.url() + f"?token={CALLBACK_SECRET}"
    lines = [{"text": "Hello there."}, {"text": "Goodbye. [[sleep=30]]"}]
    running = await submit(
        desk.api,
        "translate_dialogue",
        {"lines": lines, "target_language": "fr"},
        project_id="console_stages",
        callback_url=callback,
        webhook_events_filter=["start", "progress", "completed"],
    )
    seen = await desk.shown(running, lambda s: "translating 2/2" in s.current)
    assert seen.current.startswith("**Processing**: attempt 1 of 4 on `default` (worker ")
    assert seen.current.endswith("· step `translating 2/2` · 50%")
    assert seen.summary == 'translate_dialogue · console_stages · default · "Goodbye. [[sleep=30]]"'
    await desk.api.delete(f"/api/v1/tasks/{running}")
    await desk.shown(running, lambda s: "**Cancelled**" in s.current)

    done = await submit(
        desk.api,
        "test_prompt",
        {"prompt_template": "console ok"},
        project_id="console_stages",
        callback_url=callback,
    )
    await wait_status(desk.api, done, "completed")
    seen = await desk.shown(done, lambda s: "Completed" in s.current)
    assert "(attempt 1 of 4)" in seen.current and f"GET /api/v1/tasks/{done}/status" in seen.current
    summaries = [summary for _, summary in await history_summaries(desk.temporal, done)]
    assert "test_prompt on default" in summaries
    host = webhook_receiver.url().split("/")[2]
    assert f"webhook completed to {host}" in summaries

    failed = await submit(
        desk.api,
        "test_prompt",
        {"prompt_template": "console [[status=400]]"},
        project_id="console_stages",
        callback_url=callback,
    )
    await wait_status(desk.api, failed, "failed")
    seen = await desk.shown(failed, lambda s: "Failed" in s.current)
    assert "(attempt 1 of 4)" in seen.current and "UpstreamClientError" in seen.current
    for task_id in (running, done, failed):
        await _assert_clean(desk, task_id)


async def test_service_workflows_say_what_they_hold(desk: Console) -> None:
    workers = await desk.shown("task-service-workers", lambda s: "workers" in s.current)
    assert workers.summary == "worker registry · workers' reports" and "on `default`" in workers.current
    metrics = await desk.shown("task-service-metrics", lambda s: "tasks finished" in s.current)
    assert metrics.summary == "task metrics · finished tasks counted"


# --- the recipes, as written ----------------------------------------------------------------------


async def _run(desk: Console, recipe: str, **variables: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{os.path.dirname(temporal_binary())}:{os.environ['PATH']}",
        "TEMPORAL_ADDRESS": desk.address,
        "TEMPORAL_NAMESPACE": CONSOLE_NAMESPACE,
        "TENANT": "default",
        **variables,
    }
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        recipes()[recipe],
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    assert process.returncode == 0, f"recipe {recipe} failed:\n{out}"
    return out


def test_every_recipe_is_run_by_this_module() -> None:
    assert set(recipes()) == {
        "stuck-tasks",
        "what-is-it-doing",
        "tenant-running",
        "project-failures",
        "cancel-project",
        "terminate-project",
        "task-outcome",
        "reset-failed",
    }


async def _sleepers(desk: Console, project: str, count: int) -> list[str]:
    ids = [
        await submit(
            desk.api, "test_prompt", {"prompt_template": f"{project} {i} [[sleep=60]]"}, project_id=project
        )
        for i in range(count)
    ]
    for task_id in ids:
        await wait_status(desk.api, task_id, "processing")
    return ids


async def test_recipes_find_and_cancel_a_projects_tasks(desk: Console) -> None:
    project = f"console_bulk_{uuid.uuid4().hex[:6]}"
    ids = await _sleepers(desk, project, 2)
    await asyncio.sleep(1.2)  # StartTime is compared at second resolution
    stuck = await _run(desk, "stuck-tasks", STUCK_AFTER="0 seconds")
    running = await _run(desk, "tenant-running")
    doing = await _run(desk, "what-is-it-doing", TASK_ID=ids[0])
    assert all(task_id in stuck and task_id in running for task_id in ids)
    assert "Processing" in doing and "image slots:" in doing
    await _run(desk, "cancel-project", PROJECT=project)
    for task_id in ids:
        assert (await wait_status(desk.api, task_id, {"cancelled", "completed", "failed"}, 30))[
            "status"
        ] == "cancelled"

    project = f"console_term_{uuid.uuid4().hex[:6]}"
    (victim,) = await _sleepers(desk, project, 1)
    await _run(desk, "terminate-project", PROJECT=project)
    handle = desk.temporal.get_workflow_handle(victim)
    for _ in range(100):
        if (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED:
            break
        await asyncio.sleep(0.2)
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED


async def test_recipes_read_a_failed_tasks_outcome_and_reset_it(desk: Console) -> None:
    project = f"console_fail_{uuid.uuid4().hex[:6]}"
    # Four attempts fail (500), the fifth and sixth requests are the reset run's first two attempts.
    prompt = f"{project} [[fail_times=5]]"
    task_id = await submit(desk.api, "test_prompt", {"prompt_template": prompt}, project_id=project)
    assert (await wait_status(desk.api, task_id, {"failed", "completed"}, 60))["status"] == "failed"
    failures = await _run(desk, "project-failures", PROJECT=project)
    assert task_id in failures
    outcome = await _run(desk, "task-outcome", TASK_ID=task_id)
    assert f"test_prompt · {project} · default" in outcome and "**Failed**" in outcome
    await _run(desk, "reset-failed", TASK_ID=task_id)
    status = await wait_status(desk.api, task_id, "completed", 60)
    assert status["result"]
    seen = await desk.shown(task_id, lambda s: "Completed" in s.current)
    assert "(attempt 2 of 4)" in seen.current
