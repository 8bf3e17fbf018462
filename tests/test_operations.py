"""Operations: Prometheus metrics of API and workers, structured logs without secrets."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.conftest import (
    API_KEYS,
    ISOLATED_NAMESPACE,
    WEBHOOK_SECRET,
    Stack,
    submit,
    wait_for_pollers,
    wait_status,
)
from tests.stack import free_port


async def test_api_metrics_need_a_key_and_count_submissions(api: httpx.AsyncClient, stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401
        bearer = await anonymous.get("/metrics", headers={"Authorization": f"Bearer {API_KEYS[0]}"})
        assert bearer.status_code == 200
    task_id = await submit(api, "test_prompt", {"prompt_template": "counted"})
    await wait_status(api, task_id, "completed")
    text = (await api.get("/metrics")).text
    assert 'taskservice_tasks_submitted_total{task_type="test_prompt"}' in text
    assert "taskservice_http_request_duration_seconds_bucket" in text
    assert 'route="/api/v1/tasks/{task_id}/status"' in text
    assert 'taskservice_queue_backlog{queue="gpu_heavy"}' in text
    assert "taskservice_tasks_finished_total" in text


async def test_worker_serves_its_own_and_temporal_sdk_metrics(stack: Stack) -> None:
    base = free_port()
    while base + 13 > 65535:
        base = free_port()
    worker = stack.spawn(
        "worker-metrics",
        ["workers", "default"],
        TEMPORAL_NAMESPACE=ISOLATED_NAMESPACE,
        WORKER_METRICS_PORT=str(base),
    )
    api_process, url = stack.start_api("api-metrics", TEMPORAL_NAMESPACE=ISOLATED_NAMESPACE)
    try:
        await wait_for_pollers(stack.temporal.address, ISOLATED_NAMESPACE, ["default"])
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=30) as client:
            task_id = await submit(client, "test_prompt", {"prompt_template": "metered"})
            await wait_status(client, task_id, "completed")
            ours = (await client.get(f"http://127.0.0.1:{base + 3}/metrics")).text
            assert (
                'taskservice_worker_tasks_total{outcome="completed",queue="default",task_type="test_prompt"}'
                in ours
            )
            assert "taskservice_worker_task_duration_seconds_bucket" in ours
            assert "taskservice_model_cache_hits_total" in ours
            await asyncio.sleep(2.5)  # the RSS gauge is set with the worker's report (every 2 s here)
            ours = (await client.get(f"http://127.0.0.1:{base + 3}/metrics")).text
            assert 'taskservice_worker_rss_bytes{queue="default"}' in ours
            sdk = (await client.get(f"http://127.0.0.1:{base + 13}/metrics")).text
            assert "temporal_" in sdk
    finally:
        api_process.stop()
        worker.stop()


def test_logs_are_json_lines_with_task_context_and_no_secrets(stack: Stack) -> None:
    texts = {p.name: p.log_text() for p in [stack.api, *stack.workers.values()]}
    for name, text in texts.items():
        for line in text.splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                assert {"event", "level", "timestamp", "service"} <= set(entry), (name, line)
        for secret in (*API_KEYS, WEBHOOK_SECRET.removeprefix("whsec_"), "sk-test-llm-key"):
            assert secret not in text, f"{secret!r} appears in the {name} log"
    task_lines = [
        json.loads(line)
        for line in texts["worker-default"].splitlines()
        if line.startswith("{") and '"task_id"' in line and '"attempt"' in line
    ]
    assert task_lines, "worker log lines inside a task carry its task_id, project_id, task_type and attempt"
    assert {"task_id", "project_id", "task_type", "attempt"} <= set(task_lines[0])
