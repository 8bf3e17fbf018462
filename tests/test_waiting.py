"""Clients that wait instead of polling: `/status?wait=` (since_status, If-None-Match) and `Prefer: wait`."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import psutil

from tests.support.stack import ISOLATED_NAMESPACE, Stack
from tests.support.tasks import TERMINAL, submit, wait_status

LLM = "test_prompt"


async def _wait(
    api: httpx.AsyncClient, task_id: str, wait: float, **params: Any
) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    response = await api.get(f"/api/v1/tasks/{task_id}/status", params={"wait": wait, **params})
    return response, time.monotonic() - began


async def test_wait_answers_on_a_status_change_and_after_n_seconds_without_one(
    api: httpx.AsyncClient,
) -> None:
    task_id = await submit(api, LLM, {"prompt_template": "waited on [[sleep=4]]"})
    changed, elapsed = await _wait(api, task_id, 20, since_status="queued")
    assert changed.status_code == 200 and changed.json()["status"] == "processing"
    # Recorded by the worker's announcement, 0.5 s into the attempt: far from the 20 s of the wait.
    assert elapsed < 4, elapsed
    unchanged, elapsed = await _wait(api, task_id, 1, since_status="processing")
    assert unchanged.json()["status"] == "processing"
    assert 0.9 <= elapsed < 3, elapsed
    done, elapsed = await _wait(api, task_id, 20, since_status="processing")
    body = done.json()
    assert body["status"] == "completed" and body["result"]["output"].startswith("FAKE-LLM")
    assert elapsed < 10, elapsed
    # A finished task answers at once, whatever it is asked to wait for.
    again, elapsed = await _wait(api, task_id, 20, since_status="completed")
    assert again.json()["status"] == "completed" and elapsed < 2


async def test_etag_and_if_none_match(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, LLM, {"prompt_template": "tagged"})
    done = await wait_status(api, task_id, "completed")
    first = await api.get(f"/api/v1/tasks/{task_id}/status")
    etag = first.headers["ETag"]
    assert etag.startswith('W/"') and first.json() == done | {
        "processing_time": first.json()["processing_time"]
    }
    assert (await api.get(f"/api/v1/tasks/{task_id}/status")).headers["ETag"] == etag
    same = await api.get(f"/api/v1/tasks/{task_id}/status", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.headers["ETag"] == etag and not same.content
    began = time.monotonic()
    still = await api.get(
        f"/api/v1/tasks/{task_id}/status", params={"wait": 5}, headers={"If-None-Match": f'"x", {etag}'}
    )
    assert still.status_code == 304 and time.monotonic() - began < 2  # finished: nothing to wait for
    other = await api.get(f"/api/v1/tasks/{task_id}/status", headers={"If-None-Match": 'W/"other"'})
    assert other.status_code == 200 and other.headers["ETag"] == etag


async def test_waiting_client_gets_cancelled_failed_and_retried_states(api: httpx.AsyncClient) -> None:
    # Cancelled while a client waits on it.
    running = await submit(api, LLM, {"prompt_template": "cancel me while waited on [[sleep=30]]"})
    await wait_status(api, running, "processing")
    waiting = asyncio.create_task(_wait(api, running, 30, since_status="processing"))
    await asyncio.sleep(0.5)
    assert (await api.delete(f"/api/v1/tasks/{running}")).status_code == 200
    cancelled, elapsed = await waiting
    assert cancelled.json()["status"] == "cancelled" and elapsed < 10

    # Failed: the waits end on the failure (after `processing` if the attempt was announced first).
    failing = await submit(api, LLM, {"prompt_template": "fails while waited on [[status=400]]"})
    seen, status = [], "queued"
    while status not in TERMINAL:
        response, _ = await _wait(api, failing, 20, since_status=status)
        status = response.json()["status"]
        seen.append(status)
    assert seen[-1] == "failed" and len(seen) <= 2, seen
    assert "UpstreamClientError" in response.json()["error"]

    # Retried: the first attempt fails (HTTP 500, retryable), the second one is recorded as it starts.
    flaky = await submit(
        api, LLM, {"prompt_template": "retried while waited on [[sleep=1]] [[fail_times=1]]"}
    )
    first = await wait_status(api, flaky, "processing")
    assert first["attempt"] == 1
    tag = (await api.get(f"/api/v1/tasks/{flaky}/status")).headers["ETag"]
    attempts = []
    while True:
        response = await api.get(
            f"/api/v1/tasks/{flaky}/status", params={"wait": 20}, headers={"If-None-Match": tag}
        )
        if response.status_code == 200:
            tag, body = response.headers["ETag"], response.json()
            attempts.append((body["status"], body["attempt"]))
            if body["status"] in TERMINAL:
                break
    assert ("processing", 2) in attempts or ("completed", 2) in attempts, attempts
    assert attempts[-1] == ("completed", 2), attempts


async def test_prefer_wait_answers_the_finished_task_or_the_usual_submit(api: httpx.AsyncClient) -> None:
    body = {"project_id": "p_prefer", "task_type": LLM, "task_data": {"prompt_template": "sync mode"}}
    began = time.monotonic()
    finished = await api.post("/api/v1/tasks/submit", json=body, headers={"Prefer": "wait=20"})
    assert finished.status_code == 200 and time.monotonic() - began < 10
    assert finished.headers["Preference-Applied"] == "wait=20"
    done = finished.json()
    assert done["status"] == "completed" and done["result"]["output"] == "FAKE-LLM: sync mode"
    assert done["estimated_duration"] >= 1 and done["queue_position"] >= 1 and done["completed_at"]

    slow = body | {"task_data": {"prompt_template": "longer than the wait [[sleep=4]]"}}
    began = time.monotonic()
    answer = await api.post("/api/v1/tasks/submit", json=slow, headers={"Prefer": "respond-async, wait=1"})
    elapsed = time.monotonic() - began
    assert answer.status_code == 200 and 0.9 <= elapsed < 4, elapsed
    assert answer.headers["Preference-Applied"] == "wait=1"
    usual = answer.json()
    assert usual["status"] in {"queued", "processing"} and "result" not in usual
    assert set(usual) == {
        "task_id",
        "status",
        "project_id",
        "task_type",
        "estimated_duration",
        "queue_position",
        "created_at",
        "estimated_start_at",
        "estimated_completion_at",
        "estimate",
    }
    # The task goes on after the answer.
    assert (await wait_status(api, usual["task_id"], "completed"))["result"]["output"].startswith("FAKE-LLM")

    # With a webhook to send after its outcome, the wait follows the task's history instead of its close.
    hooked = body | {"callback_url": "http://127.0.0.1:9/never", "task_data": {"prompt_template": "hooked"}}
    answer = await api.post("/api/v1/tasks/submit", json=hooked, headers={"Prefer": "wait=20"})
    assert answer.json()["status"] == "completed"
    # A preference it cannot read is ignored, not refused.
    plain = await api.post("/api/v1/tasks/submit", json=body, headers={"Prefer": "wait=soon"})
    assert plain.status_code == 200 and "Preference-Applied" not in plain.headers


async def test_bad_wait_parameters_are_400_in_the_seed_format(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, LLM, {"prompt_template": "params"})
    for params in ({"wait": 61}, {"wait": -1}, {"wait": "soon"}, {"wait": 1, "since_status": "sleeping"}):
        response = await api.get(f"/api/v1/tasks/{task_id}/status", params=params)
        assert response.status_code == 400, (params, response.text)
        body = response.json()
        assert body["error"] == "validation_error" and set(body["details"]) <= {"wait", "since_status"}


def _frontend_requests(stack: Stack, namespace: str) -> Counter[str]:
    """Requests the Temporal frontend served in `namespace` so far, per operation (dev server metrics)."""
    assert stack.temporal.process is not None
    cmdline = psutil.Process(stack.temporal.process.pid).cmdline()
    port = cmdline[cmdline.index("--metrics-port") + 1]
    counts: Counter[str] = Counter()
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith("service_requests{") and f'namespace="{namespace}"' in line:
            if 'service_name="frontend"' in line:
                operation = line.split('operation="', 1)[1].split('"', 1)[0]
                counts[operation] += int(float(line.rsplit(" ", 1)[1]))
    return counts


async def test_many_waiting_clients_share_one_long_poll(stack: Stack) -> None:
    """Twenty-five clients waiting on one task cost Temporal about what one does (real request counts)."""
    waiters = 25
    async with stack.replica("waits", ISOLATED_NAMESPACE, MAX_WAITS_PER_TENANT=str(waiters + 5)) as replica:
        async with replica.client(timeout=60) as api:
            await asyncio.sleep(1.5)  # the dev server reports its metrics once a second
            before = _frontend_requests(stack, ISOLATED_NAMESPACE)
            task_id = await submit(api, LLM, {"prompt_template": "watched by many [[sleep=3]]"})
            for since in ("queued", "processing"):
                answers = await asyncio.gather(
                    *(_wait(api, task_id, 30, since_status=since) for _ in range(waiters))
                )
                statuses = {response.json()["status"] for response, _ in answers}
                assert statuses == ({"processing"} if since == "queued" else {"completed"}), statuses
            await asyncio.sleep(1.5)
            spent = _frontend_requests(stack, ISOLATED_NAMESPACE) - before
            # 50 waiting requests: a few describes (one per recorded change, shared) and one long-poll per
            # history transaction of the task, not one per client. The API's own background reads
            # (metrics and worker registry, every 10 s) are in the counts too. Every history read the API
            # makes waits for new events (`PollWorkflowExecutionHistory`); `GetWorkflowExecutionHistory` comes
            # from workers fetching histories, here of work that earlier tests left in this shared namespace
            # (a loaded CI run counted 8 of them beside the same 7 long-polls), so it is not counted here.
            assert spent["DescribeWorkflowExecution"] <= 8, spent
            assert spent["PollWorkflowExecutionHistory"] <= 12, spent

            # Beyond MAX_WAITS_PER_TENANT a status wait is refused (429), a submit answers without waiting.
            slow = await submit(api, LLM, {"prompt_template": "holds the waits [[sleep=15]]"})
            await wait_status(api, slow, "processing")
            held = [
                asyncio.create_task(_wait(api, slow, 8, since_status="processing"))
                for _ in range(waiters + 5)
            ]
            await asyncio.sleep(1.5)
            refused, _ = await _wait(api, slow, 8, since_status="processing")
            assert refused.status_code == 429 and refused.headers["Retry-After"], refused.text
            body = {
                "project_id": "p_waits",
                "task_type": LLM,
                "task_data": {"prompt_template": "no wait left"},
            }
            unwaited = await api.post("/api/v1/tasks/submit", json=body, headers={"Prefer": "wait=10"})
            assert unwaited.status_code == 200 and "Preference-Applied" not in unwaited.headers
            assert all(r.status_code == 200 for r, _ in await asyncio.gather(*held))
