"""Seed 001's own Python client, pointed at this service, does its job unchanged."""

from __future__ import annotations

import pytest

from tests.support.seed_client import TaskServiceClient
from tests.support.stack import API_KEYS, Stack


async def test_seed_python_client_end_to_end(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_SERVICE_URL", stack.api_url)
    monkeypatch.setenv("CELERY_TASK_API_KEY", API_KEYS[1])
    client = TaskServiceClient()
    try:
        submitted = await client.submit_task(
            "test-project",
            "evaluate_department",
            {"department_slug": "story", "department_number": 1, "gather_data": [], "threshold": 80},
            metadata={"user_id": "user123", "department_id": "dept-story-001"},
        )
        assert submitted["status"] == "queued"
        done = await client.wait_for_completion(submitted["task_id"], timeout=60, poll_interval=1)
        assert done["result"]["rating"] == 0 and done["result"]["evaluation_result"] == "fail"

        failing = await client.submit_task(
            "test-project", "test_prompt", {"prompt_template": "x [[status=422]]"}
        )
        with pytest.raises(Exception, match="Task failed: UpstreamClientError"):
            await client.wait_for_completion(failing["task_id"], timeout=60, poll_interval=1)
    finally:
        await client.close()
