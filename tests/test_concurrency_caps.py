"""Seed 002's cluster-wide concurrency caps: excess tasks wait queued, by priority, and never leak a slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from temporalio.client import Client

from taskservice.catalog import CATALOG, CONCURRENCY_GROUPS, TOTAL_GROUP
from taskservice.queues import limiter_workflow_id
from taskservice.settings import Settings
from tests.support.stack import API_KEYS, Stack
from tests.support.tasks import submit, wait_status


async def _prompt(api: httpx.AsyncClient, text: str, project_id: str, **extra: object) -> str:
    return await submit(api, "test_prompt", {"prompt_template": text}, project_id=project_id, **extra)


def test_every_capped_group_has_a_setting() -> None:
    settings = Settings(max_concurrent_tasks=10, image_max_concurrent=3, video_max_concurrent=2)
    image, video, prompt = CATALOG["generate_image"], CATALOG["generate_video"], CATALOG["test_prompt"]
    assert image.concurrency_limits(settings) == [("image", 3), ("total", 10)]
    assert CATALOG["run_sd_inference"].concurrency_limits(settings) == [("image", 3), ("total", 10)]
    assert video.concurrency_limits(settings) == [("video", 2), ("total", 10)]
    assert CATALOG["render_animation"].concurrency_limits(settings) == [("video", 2), ("total", 10)]
    assert prompt.concurrency_limits(settings) == [("total", 10)]
    limits = Settings(max_concurrent_tasks=1, image_max_concurrent=1, video_max_concurrent=1)
    for group in CONCURRENCY_GROUPS:
        spec = next(s for s in CATALOG.values() if (s.concurrency_group or TOTAL_GROUP).name == group)
        assert (group, 1) in spec.concurrency_limits(limits)
    groups = {spec.concurrency_group.name for spec in CATALOG.values() if spec.concurrency_group}
    assert groups == {"image", "video"} and CONCURRENCY_GROUPS == ("image", "video", "total")
    # 0 disables a cap.
    assert image.concurrency_limits(Settings(max_concurrent_tasks=0, image_max_concurrent=0)) == []
    # The env names are part of the contract.
    env = {"IMAGE_MAX_CONCURRENT": "4", "VIDEO_MAX_CONCURRENT": "5", "MAX_CONCURRENT_TASKS": "6"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        from_env = Settings()
    assert image.concurrency_limits(from_env) == [("image", 4), ("total", 6)]
    assert video.concurrency_limits(from_env) == [("video", 5), ("total", 6)]


@pytest.fixture(scope="module")
async def capped_api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An API replica whose tasks may run only one at a time across the whole cluster."""
    process, url = stack.start_api("api-capped", MAX_CONCURRENT_TASKS="1")
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=60) as client:
        yield client
    process.stop()


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _limiter_memo(client: Client, group: str) -> dict[str, object]:
    memo = await (await client.get_workflow_handle(limiter_workflow_id(group)).describe()).memo()
    limiter: dict[str, object] = memo["limiter"]
    return limiter


async def test_excess_tasks_wait_queued_and_run_one_at_a_time(
    capped_api: httpx.AsyncClient, temporal_client: Client
) -> None:
    # Long enough that the third request reaches the limiter while the first still runs, even on a loaded
    # machine (at 1.5 s a CI run saw the first finish before the limiter counted two waiting).
    ids = [await _prompt(capped_api, f"cap {i} [[sleep=4]]", "p_cap") for i in range(3)]
    await wait_status(capped_api, ids[0], "processing")
    waiting = (await capped_api.get(f"/api/v1/tasks/{ids[2]}/status")).json()
    assert waiting["status"] == "queued"
    assert waiting["current_step"].startswith("waiting_for_slot: the 'total' concurrency limit")
    # The last task's request reaches the limiter a moment after its own memo says it waits.
    for _ in range(100):
        limiter = await _limiter_memo(temporal_client, "total")
        if limiter["waiting"] == 2:
            break
        await asyncio.sleep(0.1)
    assert limiter["limit"] == 1 and limiter["running"] == 1 and limiter["waiting"] == 2
    finished = [await wait_status(capped_api, task_id, "completed", timeout=60) for task_id in ids]
    spans = sorted((_ts(t["started_at"]), _ts(t["completed_at"])) for t in finished)
    for (_, earlier_end), (later_start, _) in zip(spans, spans[1:], strict=False):
        assert later_start >= earlier_end, spans
    # The last task frees its slot right after recording its outcome.
    for _ in range(50):
        if (await _limiter_memo(temporal_client, "total"))["running"] == 0:
            break
        await asyncio.sleep(0.1)
    assert (await _limiter_memo(temporal_client, "total"))["running"] == 0


async def test_waiting_tasks_are_served_by_priority(capped_api: httpx.AsyncClient) -> None:
    holder = await _prompt(capped_api, "hold [[sleep=2]]", "p_cap2")
    await wait_status(capped_api, holder, "processing")
    low = await _prompt(capped_api, "low", "p_cap2", priority="LOW")
    urgent = await _prompt(capped_api, "urgent", "p_cap2", priority="URGENT")
    low_done = await wait_status(capped_api, low, "completed")
    urgent_done = await wait_status(capped_api, urgent, "completed")
    assert _ts(urgent_done["completed_at"]) <= _ts(low_done["started_at"])


async def test_cancel_and_deadline_while_waiting_release_the_slot(capped_api: httpx.AsyncClient) -> None:
    holder = await _prompt(capped_api, "hold [[sleep=3]]", "p_cap3")
    await wait_status(capped_api, holder, "processing")
    cancelled = await submit(capped_api, "test_prompt", {"prompt_template": "never"}, project_id="p_cap3")
    expired = await submit(
        capped_api, "test_prompt", {"prompt_template": "late"}, project_id="p_cap3", deadline_s=1
    )
    after = await submit(capped_api, "test_prompt", {"prompt_template": "after"}, project_id="p_cap3")
    response = await capped_api.delete(f"/api/v1/tasks/{cancelled}")
    assert response.status_code == 200, response.text
    assert response.json()["previous_state"] == "queued"
    expired_view = await wait_status(capped_api, expired, "cancelled", timeout=20)
    assert "DeadlineExceeded" in expired_view["error"]
    assert expired_view["started_at"] is None
    cancelled_view = await wait_status(capped_api, cancelled, "cancelled")
    assert cancelled_view["started_at"] is None
    # Neither the cancelled nor the expired task kept a slot: the last one still runs.
    await asyncio.gather(
        wait_status(capped_api, holder, "completed"), wait_status(capped_api, after, "completed")
    )
