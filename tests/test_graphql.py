"""Seed 003's GraphQL API at /graphql: queries, mutations and subscriptions against the real stack."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import websockets
from temporalio.client import Client
from websockets.asyncio.client import ClientConnection

from tests.support.stack import API_KEYS, Replica, Stack
from tests.support.tasks import settled_metrics, submit, wait_status

TASK_FIELDS = """
  id projectId agentId taskType status priority progress currentStep inputData result outputData error
  metadata attempt retryOf estimatedDuration queuePosition createdAt updatedAt startedAt completedAt
  estimatedStartAt estimatedCompletionAt estimate { durationP50S durationP90S waitP50S basis samples }
"""
CREATE = f"""
mutation Create($input: CreateAITaskInput!, $key: String) {{
  createAITask(input: $input, idempotencyKey: $key) {{ {TASK_FIELDS} }}
}}
"""
GET = f"query Get($id: ID!) {{ aiTask(id: $id) {{ {TASK_FIELDS} }} }}"
STATUS_ORDER = ["QUEUED", "PROCESSING", "COMPLETED"]
JWT_SECRET = "graphql-test-jwt-secret-0123456789abcdef"


async def gql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def gql_data(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None) -> Any:
    body = await gql(client, query, variables)
    assert not body.get("errors"), body
    return body["data"]


def prompt_input(prompt: str, project: str, **extra: Any) -> dict[str, Any]:
    return {
        "projectId": project,
        "taskType": "test_prompt",
        "inputData": {"prompt_template": prompt},
        **extra,
    }


async def wait_gql_status(client: httpx.AsyncClient, task_id: str, status: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    task: Any = None
    while time.monotonic() < deadline:
        task = (await gql_data(client, GET, {"id": task_id}))["aiTask"]
        if task["status"] == status:
            return task
        await asyncio.sleep(0.2)
    raise AssertionError(f"task {task_id} did not reach {status}; last: {task}")


def ws_url(http_url: str, query: str = "") -> str:
    return http_url.replace("http://", "ws://") + "/graphql" + query


async def transport_ws_messages(
    socket: ClientConnection, subscribe: dict[str, Any], timeout: float = 60
) -> AsyncIterator[dict[str, Any]]:
    """graphql-transport-ws: subscribe and yield every message until `complete` or `error`."""
    await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await socket.recv())
            if message["type"] == "ping":
                await socket.send(json.dumps({"type": "pong"}))
                continue
            yield message
            if message["type"] in ("complete", "error"):
                return


async def init(socket: ClientConnection, payload: dict[str, Any]) -> dict[str, Any]:
    await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 10))
    return reply


# --- queries and mutations ---------------------------------------------------------------------------


async def test_create_get_list_and_statistics(api: httpx.AsyncClient) -> None:
    project = f"gql_{uuid.uuid4().hex[:8]}"
    data = await gql_data(api, CREATE, {"input": prompt_input("Hello graphql", project, priority="HIGH")})
    created = data["createAITask"]
    task_id = created["id"]
    assert created["status"] == "QUEUED" and created["priority"] == "HIGH"
    assert created["projectId"] == created["agentId"] == project
    assert created["taskType"] == "test_prompt"
    # The learned p50 once the type has ETA_MIN_SAMPLES finished tasks, the catalog's 10 s before.
    estimate = created["estimate"]
    assert created["estimatedDuration"] == math.ceil(estimate["durationP50S"])
    assert estimate["basis"] == "learned" or created["estimatedDuration"] == 10
    assert created["estimatedCompletionAt"] is not None
    assert created["queuePosition"] >= 1
    done = await wait_gql_status(api, task_id, "COMPLETED")
    assert done["result"]["output"] == "FAKE-LLM: Hello graphql"
    assert done["outputData"] == done["result"] and done["progress"] == 1.0 and done["error"] is None
    assert done["startedAt"] and done["completedAt"]
    # REST sees the same task.
    rest = (await api.get(f"/api/v1/tasks/{task_id}/status")).json()
    assert rest["status"] == "completed" and rest["result"] == done["result"]

    failing = (await gql_data(api, CREATE, {"input": prompt_input("nope [[status=400]]", project)}))[
        "createAITask"
    ]
    await wait_gql_status(api, failing["id"], "FAILED")

    listing = """
      query List($filter: AITaskFilter, $pagination: PaginationInput) {
        aiTasks(filter: $filter, pagination: $pagination) {
          items { id status taskType } total page limit totalPages hasMore
        }
      }
    """
    page = (await gql_data(api, listing, {"filter": {"projectId": project}}))["aiTasks"]
    assert page["total"] == 2 and [t["id"] for t in page["items"]] == [failing["id"], task_id]
    completed = (
        await gql_data(
            api, listing, {"filter": {"agentId": project, "status": "COMPLETED"}, "pagination": {}}
        )
    )["aiTasks"]
    assert [t["id"] for t in completed["items"]] == [task_id]
    first = (
        await gql_data(
            api, listing, {"filter": {"projectId": project}, "pagination": {"page": 1, "limit": 1}}
        )
    )["aiTasks"]
    assert first["total"] == 2 and first["totalPages"] == 2 and first["hasMore"] is True
    assert len(first["items"]) == 1
    mine = (await gql_data(api, listing, {"filter": {"projectId": project, "mine": True}}))["aiTasks"]
    assert mine["total"] == 2

    statistics = """
      query Stats($filter: TaskStatisticsFilter) {
        taskStatistics(filter: $filter) {
          totalTasks completedTasks failedTasks successRate failureRate windowHours since
          byStatus { status count }
          byType { taskType total completed failed successRate }
        }
      }
    """
    stats = (await gql_data(api, statistics, {"filter": {"projectId": project, "windowHours": 1}}))[
        "taskStatistics"
    ]
    assert stats["totalTasks"] == 2 and stats["completedTasks"] == 1 and stats["failedTasks"] == 1
    assert stats["successRate"] == 50.0 and stats["windowHours"] == 1.0
    assert {s["status"]: s["count"] for s in stats["byStatus"]}["FAILED"] == 1
    assert stats["byType"] == [
        {"taskType": "test_prompt", "total": 2, "completed": 1, "failed": 1, "successRate": 50.0}
    ]


QUEUE_STATUS = """
  { taskQueueStatus {
      queuedTasks processingTasks completedTasks workerCount queueHealth timestamp
      queues { name backlog queuedTasks processingTasks pollers workerCount configuredConcurrency capacity
               taskTypes health }
  } }
"""


async def test_queue_status_reads_temporal_pollers_and_settings(api: httpx.AsyncClient) -> None:
    status = (await gql_data(api, QUEUE_STATUS))["taskQueueStatus"]
    queues = {q["name"]: q for q in status["queues"]}
    assert set(queues) == {"default", "cpu_intensive", "gpu_medium", "gpu_heavy"}
    default = queues["default"]
    # Poller identities (host and pid) are shown to operators only (tests/test_worker_liveness.py).
    assert default["workerCount"] >= 1 and default["pollers"] == []
    assert default["configuredConcurrency"] == 2  # WORKER_CONCURRENCY_DEFAULT in the test stack
    assert default["capacity"] == default["workerCount"] * 2
    assert "test_prompt" in default["taskTypes"] and default["health"] == "healthy"
    assert (
        queues["gpu_heavy"]["configuredConcurrency"] == 2
        and queues["cpu_intensive"]["configuredConcurrency"] == 4
    )
    assert status["queueHealth"] == "healthy" and status["workerCount"] >= 4


async def test_queue_status_counts_completed_tasks_as_the_metrics_do(
    counting: Replica, counting_temporal: Client
) -> None:
    """The cumulative completed count, where only this test's task finishes meanwhile."""
    async with counting.client() as client:
        before = await settled_metrics(client, counting_temporal)
        task_id = await submit(client, "test_prompt", {"prompt_template": "count me in graphql"})
        await wait_status(client, task_id, "completed")
        after = await settled_metrics(client, counting_temporal)
        status = (await gql_data(client, QUEUE_STATUS))["taskQueueStatus"]
    assert status["completedTasks"] == after["completed_tasks"] == before["completed_tasks"] + 1
    assert (status["queuedTasks"], status["processingTasks"], status["workerCount"]) == (0, 0, 1)


async def test_seed_003_create_input_and_priorities(api: httpx.AsyncClient) -> None:
    agent = f"agent_{uuid.uuid4().hex[:8]}"
    created = (
        await gql_data(
            api,
            CREATE,
            {
                "input": {
                    "agentId": agent,
                    "taskType": "test_prompt",
                    "inputData": {"prompt_template": "seed three"},
                    "priority": "URGENT",
                    "estimatedCost": 0.05,
                    "workflowStepId": "step_1",
                    "metadata": {"user_id": "u1"},
                }
            },
        )
    )["createAITask"]
    assert created["projectId"] == agent and created["priority"] == "URGENT"
    assert created["metadata"] == {
        "user_id": "u1",
        "agentId": agent,
        "estimatedCost": 0.05,
        "workflowStepId": "step_1",
    }
    assert created["inputData"]["prompt_template"] == "seed three"
    # Idempotency key: same key, same input → the same task.
    variables = {"input": prompt_input("idem", agent), "key": f"k-{uuid.uuid4()}"}
    one = (await gql_data(api, CREATE, variables))["createAITask"]
    two = (await gql_data(api, CREATE, variables))["createAITask"]
    assert one["id"] == two["id"]
    # A priority outside the enum is a GraphQL validation error.
    body = await gql(api, CREATE, {"input": prompt_input("x", agent, priority="SOMETIMES")})
    assert body["errors"] and "SOMETIMES" in body["errors"][0]["message"]


async def test_batch_creates_the_good_items_and_reports_the_bad_one(api: httpx.AsyncClient) -> None:
    project = f"gql_batch_{uuid.uuid4().hex[:6]}"
    batch = """
      mutation Batch($inputs: [CreateAITaskInput!]!) {
        createAITasksBatch(inputs: $inputs) {
          created failed
          tasks { id status }
          results { index success task { id projectId } error { code message status details } }
        }
      }
    """
    inputs = [
        prompt_input("batch one", project),
        {"projectId": project, "taskType": "make_coffee", "inputData": {}},
        prompt_input("batch {{missing}}", project),
        prompt_input("batch two", project),
    ]
    result = (await gql_data(api, batch, {"inputs": inputs}))["createAITasksBatch"]
    assert result["created"] == 2 and result["failed"] == 2
    assert [r["success"] for r in result["results"]] == [True, False, False, True]
    assert [r["index"] for r in result["results"]] == [0, 1, 2, 3]
    unknown = result["results"][1]["error"]
    assert unknown["code"] == "validation_error" and unknown["status"] == 400
    assert "make_coffee" in unknown["details"]["task_type"]
    assert result["results"][2]["error"]["details"]
    ids = [t["id"] for t in result["tasks"]]
    assert ids == [result["results"][0]["task"]["id"], result["results"][3]["task"]["id"]]
    for task_id in ids:
        await wait_status(api, task_id, "completed")


async def test_cancel_and_retry(api: httpx.AsyncClient) -> None:
    project = f"gql_cancel_{uuid.uuid4().hex[:6]}"
    created = (await gql_data(api, CREATE, {"input": prompt_input("slow [[sleep=5]]", project)}))[
        "createAITask"
    ]
    await wait_status(api, created["id"], "processing", timeout=20)
    cancel = "mutation C($id: ID!) { cancelAITask(id: $id) { id status error } }"
    cancelled = (await gql_data(api, cancel, {"id": created["id"]}))["cancelAITask"]
    assert cancelled["id"] == created["id"] and cancelled["status"] in ("CANCELLED", "PROCESSING")
    await wait_status(api, created["id"], "cancelled")
    retry = "mutation R($id: ID!) { retryAITask(id: $id) { id status retryOf projectId inputData } }"
    retried = (await gql_data(api, retry, {"id": created["id"]}))["retryAITask"]
    assert retried["id"] != created["id"] and retried["retryOf"] == created["id"]
    assert retried["projectId"] == project and retried["inputData"]["prompt_template"] == "slow [[sleep=5]]"
    await gql_data(api, cancel, {"id": retried["id"]})


async def test_service_errors_carry_code_and_status(api: httpx.AsyncClient) -> None:
    missing = await gql(api, GET, {"id": str(uuid.uuid4())})
    assert missing["data"] == {"aiTask": None}
    assert missing["errors"][0]["extensions"]["code"] == "task_not_found"
    assert missing["errors"][0]["extensions"]["status"] == 404
    done = await submit(api, "test_prompt", {"prompt_template": "finish first"})
    await wait_status(api, done, "completed")
    cancel = await gql(api, "mutation C($id: ID!) { cancelAITask(id: $id) { id } }", {"id": done})
    assert cancel["errors"][0]["extensions"]["code"] == "invalid_task_state"
    assert cancel["errors"][0]["extensions"]["status"] == 400
    retry = await gql(api, "mutation R($id: ID!) { retryAITask(id: $id) { id } }", {"id": str(uuid.uuid4())})
    assert retry["errors"][0]["extensions"]["code"] == "task_not_found"
    invalid = await gql(api, CREATE, {"input": {"taskType": "test_prompt", "inputData": {}}})
    extensions = invalid["errors"][0]["extensions"]
    assert extensions["code"] == "validation_error" and "projectId" in extensions["details"]
    bad_data = await gql(
        api, CREATE, {"input": {"projectId": "p", "taskType": "test_prompt", "inputData": {}}}
    )
    assert "task_data.prompt_template" in bad_data["errors"][0]["extensions"]["details"]
    page = await gql(api, "{ aiTasks(pagination: {limit: 1000}) { total } }")
    assert page["errors"][0]["extensions"]["code"] == "validation_error"


async def test_wrong_or_missing_key_is_rejected(stack: Stack) -> None:
    query = {"query": "{ taskQueueStatus { queueHealth } }"}
    async with httpx.AsyncClient(base_url=stack.api_url) as client:
        missing = await client.post("/graphql", json=query)
        wrong = await client.post("/graphql", json=query, headers={"X-API-Key": "wrong-key"})
        token = jwt.encode({"sub": "u1"}, "a-secret-this-api-does-not-know-0123456789", algorithm="HS256")
        bearer = await client.post("/graphql", json=query, headers={"Authorization": f"Bearer {token}"})
        ide = await client.get("/graphql", headers={"Accept": "text/html"})
    for response in (missing, wrong, bearer):
        assert response.status_code == 401
        assert response.json()["error"] == "authentication_failed"
    assert ide.status_code == 200 and "graphiql" in ide.text.lower()  # the IDE page itself is public
    # WebSocket: a wrong key in connection_init closes the socket (4403), nothing is served.
    async with websockets.connect(ws_url(stack.api_url), subprotocols=["graphql-transport-ws"]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {"X-API-Key": "wrong-key"}}))
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    async with websockets.connect(ws_url(stack.api_url), subprotocols=["graphql-transport-ws"]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 10)


async def test_graphiql_is_served_by_the_api_and_loads_nothing_from_elsewhere(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        found = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"', page.text)
        referenced = [ref for ref in found if not ref.startswith("data:")]  # the inline favicon loads nothing
        assert len(referenced) >= 4 and "unpkg" not in page.text
        assert all(ref.startswith("/graphql/ide/") for ref in referenced), referenced  # no other host
        for ref in referenced:
            asset = await client.get(ref, headers={"Accept-Encoding": "identity"})
            assert asset.status_code == 200 and len(asset.content) > 1000, ref
            assert asset.headers["content-type"].startswith(("text/javascript", "text/css"))
            assert "content-encoding" not in asset.headers and not asset.content.startswith(b"\x1f\x8b")
        packed = await client.get(referenced[-1], headers={"Accept-Encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip" and packed.status_code == 200
        missing = await client.get("/graphql/ide/nothing.js")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"


# --- subscriptions -----------------------------------------------------------------------------------

STATUS_CHANGED = """
  subscription S($taskId: ID!) {
    aiTaskStatusChanged(taskId: $taskId) { id status progress currentStep result }
  }
"""


async def test_subscription_follows_a_task_to_completed(api: httpx.AsyncClient, stack: Stack) -> None:
    async with websockets.connect(ws_url(stack.api_url), subprotocols=["graphql-transport-ws"]) as socket:
        assert (await init(socket, {"X-API-Key": API_KEYS[0]}))["type"] == "connection_ack"
        created = (
            await gql_data(api, CREATE, {"input": prompt_input("subscribe [[sleep=2]]", "gql_subscribe")})
        )["createAITask"]
        seen = [
            message
            async for message in transport_ws_messages(
                socket, {"query": STATUS_CHANGED, "variables": {"taskId": created["id"]}}
            )
        ]
    assert seen[-1] == {"id": "1", "type": "complete"}
    updates = [m["payload"]["data"]["aiTaskStatusChanged"] for m in seen if m["type"] == "next"]
    statuses = [u["status"] for u in updates]
    assert statuses[-1] == "COMPLETED" and "PROCESSING" in statuses
    assert statuses == sorted(statuses, key=STATUS_ORDER.index), statuses  # a progression, never backwards
    assert all(u["id"] == created["id"] for u in updates)
    assert updates[-1]["result"]["output"] == "FAKE-LLM: subscribe [[sleep=2]]"
    # The LLM call takes 2 s: its step and partial progress are seen while the task runs.
    processing = [u for u in updates if u["status"] == "PROCESSING"]
    assert any(u["currentStep"] == "calling_llm" and 0 < u["progress"] < 1 for u in processing), processing


async def test_legacy_graphql_ws_protocol_with_key_in_query(api: httpx.AsyncClient, stack: Stack) -> None:
    """subscriptions-transport-ws (`graphql-ws` subprotocol), as Apollo clients of seed 003 speak it."""
    task_id = await submit(api, "test_prompt", {"prompt_template": "legacy [[sleep=1]]"})
    url = ws_url(stack.api_url, f"?api_key={API_KEYS[1]}")
    async with websockets.connect(url, subprotocols=["graphql-ws"]) as socket:
        assert (await init(socket, {}))["type"] == "connection_ack"
        payload = {"query": STATUS_CHANGED, "variables": {"taskId": task_id}}
        await socket.send(json.dumps({"id": "a", "type": "start", "payload": payload}))
        statuses = []
        async with asyncio.timeout(60):
            while True:
                message = json.loads(await socket.recv())
                if message["type"] == "ka":
                    continue
                if message["type"] == "complete":
                    break
                assert message["type"] == "data", message
                statuses.append(message["payload"]["data"]["aiTaskStatusChanged"]["status"])
    assert statuses[-1] == "COMPLETED"


async def test_subscription_errors_and_queue_updates(stack: Stack) -> None:
    async with websockets.connect(ws_url(stack.api_url), subprotocols=["graphql-transport-ws"]) as socket:
        assert (await init(socket, {"headers": {"X-API-Key": API_KEYS[0]}}))["type"] == "connection_ack"
        messages = [
            m
            async for m in transport_ws_messages(
                socket, {"query": STATUS_CHANGED, "variables": {"taskId": str(uuid.uuid4())}}
            )
        ]
        errors = [m for m in messages if m["type"] in ("next", "error")]
        error = errors[0]["payload"]["errors"][0] if errors[0]["type"] == "next" else errors[0]["payload"][0]
        assert error["extensions"]["code"] == "task_not_found"
        query = "subscription { taskQueueUpdated { queueHealth queuedTasks queues { name workerCount } } }"
        await socket.send(json.dumps({"id": "q", "type": "subscribe", "payload": {"query": query}}))
        first = json.loads(await asyncio.wait_for(socket.recv(), 20))
        assert first["type"] == "next" and first["id"] == "q"
        update = first["payload"]["data"]["taskQueueUpdated"]
        assert {q["name"] for q in update["queues"]} == {
            "default",
            "cpu_intensive",
            "gpu_medium",
            "gpu_heavy",
        }
        await socket.send(json.dumps({"id": "q", "type": "complete"}))


# --- JWT ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jwt_api_url(stack: Stack) -> Any:
    process, url = stack.start_api("api-jwt", JWT_SECRET=JWT_SECRET)
    yield url
    process.stop()


async def test_jwt_bearer_is_accepted_over_http_and_websocket(jwt_api_url: str) -> None:
    token = jwt.encode({"sub": "user-42", "exp": int(time.time()) + 300}, JWT_SECRET, algorithm="HS256")
    forged = jwt.encode({"sub": "user-42"}, "not-the-secret-0123456789abcdef-0123456789", algorithm="HS256")
    expired = jwt.encode({"sub": "user-42", "exp": int(time.time()) - 60}, JWT_SECRET, algorithm="HS256")
    async with httpx.AsyncClient(
        base_url=jwt_api_url, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        created = (await gql_data(client, CREATE, {"input": prompt_input("jwt [[sleep=1]]", "gql_jwt")}))[
            "createAITask"
        ]
        listing = '{ aiTasks(filter: {mine: true, projectId: "gql_jwt"}) { total items { id } } }'
        assert created["id"] in [t["id"] for t in (await gql_data(client, listing))["aiTasks"]["items"]]
        for bad in (forged, expired):
            response = await client.post(
                "/graphql",
                json={"query": "{ taskQueueStatus { queueHealth } }"},
                headers={"Authorization": f"Bearer {bad}"},
            )
            assert response.status_code == 401
    async with websockets.connect(ws_url(jwt_api_url), subprotocols=["graphql-transport-ws"]) as socket:
        assert (await init(socket, {"Authorization": f"Bearer {token}"}))["type"] == "connection_ack"
        seen = [
            m
            async for m in transport_ws_messages(
                socket, {"query": STATUS_CHANGED, "variables": {"taskId": created["id"]}}
            )
        ]
        assert seen[-2]["payload"]["data"]["aiTaskStatusChanged"]["status"] == "COMPLETED"
    # seed 003's `auth: {token}` shape in connection_init works too.
    async with websockets.connect(ws_url(jwt_api_url), subprotocols=["graphql-transport-ws"]) as socket:
        assert (await init(socket, {"token": token}))["type"] == "connection_ack"
    async with websockets.connect(ws_url(jwt_api_url), subprotocols=["graphql-transport-ws"]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {"token": forged}}))
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 10)
