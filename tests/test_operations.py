"""Operations: Prometheus metrics of API and workers, structured logs without secrets."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from tests.support.processes import free_port
from tests.support.stack import (
    ADMIN_KEY,
    API_KEYS,
    ISOLATED_NAMESPACE,
    LLM_KEY,
    TENANT_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    Replica,
    Stack,
)
from tests.support.tasks import settled_metrics, submit, wait_status


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when it is not there yet)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def test_api_metrics_need_the_admin_key_and_count_submissions(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401
        # A tenant's key: the figures count every tenant's work.
        tenant = await anonymous.get("/metrics", headers={"X-API-Key": API_KEYS[0]})
        assert tenant.status_code == 403 and tenant.json()["error"] == "forbidden"
        bearer = await anonymous.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert bearer.status_code == 200
    admin = {"X-API-Key": ADMIN_KEY}
    submitted = "taskservice_tasks_submitted_total"
    before = _sample((await api.get("/metrics", headers=admin)).text, submitted, task_type="test_prompt")
    task_id = await submit(api, "test_prompt", {"prompt_template": "counted"})
    await wait_status(api, task_id, "completed")
    text = (await api.get("/metrics", headers=admin)).text
    # This API process accepted exactly this one task since the first read.
    assert _sample(text, submitted, task_type="test_prompt") == before + 1
    assert "taskservice_http_request_duration_seconds_bucket" in text
    assert 'route="/api/v1/tasks/{task_id}/status"' in text
    assert 'taskservice_queue_backlog{queue="gpu_heavy"}' in text


async def test_api_metrics_report_the_finished_counts_of_the_namespace(
    counting: Replica, counting_temporal: Client
) -> None:
    async with counting.client() as client:
        task_id = await submit(client, "test_prompt", {"prompt_template": "finished and counted"})
        await wait_status(client, task_id, "completed")
        settled = await settled_metrics(client, counting_temporal)
        wanted = {
            status: float(settled[f"{status}_tasks"]) for status in ("completed", "failed", "cancelled")
        }
        # The API refreshes these from the metrics workflow every few seconds.
        deadline = time.monotonic() + 15
        while True:
            text = (await client.get("/metrics", headers={"X-API-Key": ADMIN_KEY})).text
            finished = {s: _sample(text, "taskservice_tasks_finished_total", status=s) for s in wanted}
            if finished == wanted or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    assert finished == wanted
    assert _sample(text, "taskservice_tasks_retried_total") == settled["retried_tasks"]


async def test_worker_serves_its_own_and_temporal_sdk_metrics(stack: Stack) -> None:
    base = free_port()
    while base + 13 > 65535:
        base = free_port()
    async with stack.replica("metrics", ISOLATED_NAMESPACE, WORKER_METRICS_PORT=str(base)) as replica:
        async with replica.client() as client:
            task_id = await submit(client, "test_prompt", {"prompt_template": "metered"})
            await wait_status(client, task_id, "completed")
            ours = (await client.get(f"http://127.0.0.1:{base + 3}/metrics")).text
            # A fresh worker process: this task is the only one it ran.
            done = {"outcome": "completed", "queue": "default", "task_type": "test_prompt"}
            assert _sample(ours, "taskservice_worker_tasks_total", **done) == 1
            durations = {"queue": "default", "task_type": "test_prompt"}
            assert _sample(ours, "taskservice_worker_task_duration_seconds_count", **durations) == 1
            assert "taskservice_model_cache_hits_total" in ours
            await asyncio.sleep(2.5)  # the RSS gauge is set with the worker's report (every 2 s here)
            ours = (await client.get(f"http://127.0.0.1:{base + 3}/metrics")).text
            assert _sample(ours, "taskservice_worker_rss_bytes", queue="default") > 0
            sdk = (await client.get(f"http://127.0.0.1:{base + 13}/metrics")).text
            assert "temporal_" in sdk


async def test_logs_are_json_lines_with_task_context_and_no_secrets(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "logged"}, project_id="p_logged")
    await wait_status(api, task_id, "completed")
    texts = {p.name: p.log_text() for p in [stack.api, *stack.workers.values()]}
    for name, text in texts.items():
        for line in text.splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                assert {"event", "level", "timestamp", "service"} <= set(entry), (name, line)
        secrets = (WEBHOOK_SECRET, TENANT_WEBHOOK_SECRET)
        for secret in (*API_KEYS, *(s.removeprefix("whsec_") for s in secrets), LLM_KEY):
            assert secret not in text, f"{secret!r} appears in the {name} log"
    task_lines = [
        json.loads(line)
        for line in texts["worker-default"].splitlines()
        if line.startswith("{") and task_id in line
    ]
    events = [entry["event"] for entry in task_lines if entry.get("task_id") == task_id]
    assert events.count("Task attempt started") == events.count("Task attempt finished") == 1, events
    # Lines inside the task carry its context.
    for entry in task_lines:
        if entry["event"] in ("Task attempt started", "Task attempt finished"):
            assert (entry["project_id"], entry["task_type"], entry["attempt"]) == (
                "p_logged",
                "test_prompt",
                1,
            )
