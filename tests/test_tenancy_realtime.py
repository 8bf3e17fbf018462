"""Tenant isolation over every GraphQL operation and every Socket.IO event: another tenant's (or another
user's) task answers as a missing one, lists and counts hold the caller's own view only, mutations of
another's work change nothing, and no room streams another's tasks. The operations come from the schema and
the event handlers themselves: one added without a probe fails the walk.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLObjectType, build_schema
from pydantic import SecretStr

from api.graphql.schema import schema
from api.runtime import Services
from api.socketio.server import TaskEventServer
from taskservice.settings import Settings
from tests.support.stack import API_KEYS
from tests.support.streams import graphql_subscription, socketio_client
from tests.support.tenancy import (
    MISSING,
    MISSING_PIPELINE,
    PAIRS,
    PIPELINE_LINES,
    PROJECT,
    STREAM_S,
    Match,
    World,
    done_body,
    eventually_equal,
    gql,
    graphql_as_missing,
    masked,
    subscription_as_missing,
    victim_pipelines,
)

Probe = Callable[[Match], Awaitable[None]]
QUEUED = 'TaskStatus = "queued" AND ExecutionStatus = "Running"'


def _input(m: Match) -> dict[str, Any]:
    """The victim's first submission, as a GraphQL input."""
    body = done_body(m.victim)
    return {"projectId": body["project_id"], "taskType": body["task_type"], "inputData": body["task_data"]}


async def _owner_sees(m: Match, task_id: str) -> None:
    mine = await gql(m.owner, "query($id: ID!) { aiTask(id: $id) { id } }", {"id": task_id})
    assert mine["data"]["aiTask"]["id"] == task_id, mine


# --- GraphQL ------------------------------------------------------------------------------------------------


async def _ai_task(m: Match) -> None:
    await _owner_sees(m, m.retriable)
    await graphql_as_missing(m, "query($id: ID!) { aiTask(id: $id) { id status } }", m.retriable)


async def _ai_tasks(m: Match) -> None:
    query = """query($p: String) {
      aiTasks(filter: {projectId: $p}, pagination: {limit: 100}) { total items { id } }
    }"""

    async def listed(party: str) -> set[str]:
        page = (await gql(m.world.client(party), query, {"p": PROJECT}))["data"]["aiTasks"]
        assert page["total"] == len(page["items"])
        return {item["id"] for item in page["items"]}

    assert m.victim_ids <= await listed(m.victim)
    ids = await eventually_equal(lambda: listed(m.attacker), m.own_view)
    assert not ids & m.victim_ids


async def _tenant_queued(m: Match) -> int:
    return await m.world.count(f"{m.world.parties[m.attacker].tenant_query()} AND {QUEUED}")


async def _queue_status(m: Match) -> None:
    """Queued and running counts are the caller's tenant's (queue backlogs and workers are everyone's)."""
    everyone = await m.world.count(f'WorkflowType = "TaskWorkflow" AND {QUEUED}')

    async def queued() -> int:
        status = (await gql(m.client, "{ taskQueueStatus { queuedTasks } }", {}))["data"]["taskQueueStatus"]
        return int(status["queuedTasks"])

    assert await eventually_equal(queued, lambda: _tenant_queued(m)) < everyone


async def _statistics(m: Match) -> None:
    query = "query($p: String) { taskStatistics(filter: {projectId: $p}) { totalTasks } }"

    async def total() -> int:
        return int((await gql(m.client, query, {"p": PROJECT}))["data"]["taskStatistics"]["totalTasks"])

    await eventually_equal(total, lambda: m.world.count(m.world.parties[m.attacker].visibility_query()))


async def _create(m: Match) -> None:
    """The victim's input with the victim's idempotency key: a task of the attacker's own."""
    query = """mutation($i: CreateAITaskInput!, $k: String) {
      createAITask(input: $i, idempotencyKey: $k) { id }
    }"""

    async def action() -> None:
        created = await gql(m.client, query, {"i": _input(m), "k": f"tenancy-{m.victim}"})
        await m.owns(created["data"]["createAITask"]["id"])

    await m.changes_nothing(action)


async def _create_batch(m: Match) -> None:
    query = "mutation($i: [CreateAITaskInput!]!) { createAITasksBatch(inputs: $i) { created tasks { id } } }"

    async def action() -> None:
        batch = (await gql(m.client, query, {"i": [_input(m)]}))["data"]["createAITasksBatch"]
        assert batch["created"] == 1
        await m.owns(batch["tasks"][0]["id"])

    await m.changes_nothing(action)


def _mutation_as_missing(query: str, target: Callable[[Match], str]) -> Probe:
    async def probe(m: Match) -> None:
        await _owner_sees(m, target(m))

        async def action() -> None:
            await graphql_as_missing(m, query, target(m))

        await m.changes_nothing(action)

    return probe


async def _status_changed(m: Match) -> None:
    query = "subscription($id: ID!) { aiTaskStatusChanged(taskId: $id) { id status } }"
    await subscription_as_missing(m, query, m.unfinished)


async def _queue_updated(m: Match) -> None:
    """The first update counts the caller's tenant only."""
    params = m.world.parties[m.attacker].connection_params
    query = "subscription { taskQueueUpdated { queuedTasks } }"

    async def queued() -> int:
        messages = await graphql_subscription(m.world.url, params, query, {}, STREAM_S)
        return int(messages[0]["payload"]["data"]["taskQueueUpdated"]["queuedTasks"])

    await eventually_equal(queued, lambda: _tenant_queued(m))


async def _pipeline(m: Match) -> None:
    """Another's pipeline answers as a missing one."""
    target = (await victim_pipelines(m))["unfinished"]
    query = "query($id: ID!) { pipeline(id: $id) { id status steps { id taskId } } }"
    own = await gql(m.owner, query, {"id": target})
    assert own["data"]["pipeline"]["id"] == target, own
    answer, reference = (
        await gql(m.client, query, {"id": target}),
        await gql(m.client, query, {"id": MISSING_PIPELINE}),
    )
    assert [e["extensions"]["code"] for e in reference["errors"]] == ["pipeline_not_found"], reference
    assert masked(json.dumps(answer), target) == masked(json.dumps(reference), MISSING_PIPELINE)


async def _create_pipeline(m: Match) -> None:
    """The attacker's own pipeline: its steps are the attacker's tasks, nothing of the victim's changes."""
    await victim_pipelines(m)
    query = "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id steps { id taskId } } }"
    step = {"id": "line", "taskType": "translate_dialogue", "taskData": PIPELINE_LINES}

    async def action() -> None:
        created = (await gql(m.client, query, {"i": {"projectId": PROJECT, "steps": [step]}}))["data"]
        pipeline = created["createPipeline"]
        # The step's task starts when the pipeline's workflow gets to it: wait for the pipeline's end.
        ended = await m.client.get(f"/api/v1/pipelines/{pipeline['id']}", params={"wait": 20})
        assert ended.status_code == 200 and ended.json()["status"] == "completed", ended.text
        await m.owns(pipeline["steps"][0]["taskId"])

    await m.changes_nothing(action)


GRAPHQL_PROBES: dict[str, Probe] = {
    "Query.aiTask": _ai_task,
    "Query.aiTasks": _ai_tasks,
    "Query.taskQueueStatus": _queue_status,
    "Query.taskStatistics": _statistics,
    "Mutation.createAITask": _create,
    "Mutation.createAITasksBatch": _create_batch,
    "Mutation.cancelAITask": _mutation_as_missing(
        "mutation($id: ID!) { cancelAITask(id: $id) { id status } }", lambda m: m.unfinished
    ),
    "Mutation.retryAITask": _mutation_as_missing(
        "mutation($id: ID!) { retryAITask(id: $id) { id status } }", lambda m: m.retriable
    ),
    "Query.pipeline": _pipeline,
    "Mutation.createPipeline": _create_pipeline,
    "Subscription.aiTaskStatusChanged": _status_changed,
    "Subscription.taskQueueUpdated": _queue_updated,
}


def test_every_graphql_operation_has_a_probe() -> None:
    served = build_schema(schema.as_str())
    operations = set()
    for root in (served.query_type, served.mutation_type, served.subscription_type):
        assert isinstance(root, GraphQLObjectType)
        operations |= {f"{root.name}.{name}" for name in root.fields}
    assert set(GRAPHQL_PROBES) == operations


@pytest.mark.parametrize(("attacker", "victim"), PAIRS, ids=[f"{a}-vs-{v}" for a, v in PAIRS])
@pytest.mark.parametrize("operation", list(GRAPHQL_PROBES))
async def test_graphql_keeps_tenants_apart(
    tenancy: World, operation: str, attacker: str, victim: str
) -> None:
    await GRAPHQL_PROBES[operation](Match(tenancy, attacker, victim))


# --- Socket.IO ----------------------------------------------------------------------------------------------


async def _subscribe_task(m: Match) -> None:
    await _task_room(m, "subscribe:task")


async def _unsubscribe_task(m: Match) -> None:
    await _task_room(m, "unsubscribe:task")


async def _task_room(m: Match, event: str) -> None:
    """A task room of another's task answers as one of a missing task, and streams nothing."""
    async with (
        socketio_client(m.world.url, m.world.parties[m.victim].connection_params) as owner,
        socketio_client(m.world.url, m.world.parties[m.attacker].connection_params) as attacker,
    ):
        assert (await owner.call("subscribe:task", m.unfinished))["success"] is True
        answer = await attacker.call(event, m.unfinished)
        reference = await attacker.call(event, MISSING)
        assert masked(str(answer), m.unfinished) == masked(str(reference), MISSING)
        if event == "subscribe:task":
            assert reference["error"]["code"] == "task_not_found"
        await asyncio.sleep(1)
        assert owner.task_ids == {m.unfinished} and not attacker.task_ids


async def _agent_room(m: Match, leave: bool) -> None:
    """The agent (project) room streams the caller's own tasks of the project, never the victim's."""
    async with (
        socketio_client(m.world.url, m.world.parties[m.victim].connection_params) as owner,
        socketio_client(m.world.url, m.world.parties[m.attacker].connection_params) as attacker,
    ):
        for client in (owner, attacker):
            assert (await client.call("subscribe:agent", PROJECT))["success"] is True
        await asyncio.sleep(STREAM_S)
        if leave:
            assert await attacker.call("unsubscribe:agent", PROJECT) == {"success": True, "agentId": PROJECT}
        assert m.unfinished in owner.task_ids
        assert attacker.task_ids and attacker.task_ids <= await m.own_view()


async def _queue_room(m: Match, leave: bool) -> None:
    """Queue updates count the caller's tenant only."""

    async def queued() -> int:
        async with socketio_client(m.world.url, m.world.parties[m.attacker].connection_params) as client:
            assert (await client.call("subscribe:queue"))["success"] is True
            update = await client.until("queue:update")
            if leave:
                assert (await client.call("unsubscribe:queue")) == {"success": True}
            return int(update["status"]["queuedTasks"])

    await eventually_equal(queued, lambda: _tenant_queued(m))


SOCKETIO_PROBES: dict[str, Probe] = {
    "subscribe:task": _subscribe_task,
    "unsubscribe:task": _unsubscribe_task,
    "subscribe:agent": lambda m: _agent_room(m, leave=False),
    "unsubscribe:agent": lambda m: _agent_room(m, leave=True),
    "subscribe:queue": lambda m: _queue_room(m, leave=False),
    "unsubscribe:queue": lambda m: _queue_room(m, leave=True),
}


def test_every_socketio_event_has_a_probe() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(api_key=SecretStr(API_KEYS[0]), data_dir=Path(data_dir))
        server = TaskEventServer(Services.build(settings))
    events = set(server.sio.handlers["/"]) - {"connect", "disconnect"}
    assert set(SOCKETIO_PROBES) == events


@pytest.mark.parametrize(("attacker", "victim"), PAIRS, ids=[f"{a}-vs-{v}" for a, v in PAIRS])
@pytest.mark.parametrize("event", list(SOCKETIO_PROBES))
async def test_socketio_keeps_tenants_apart(tenancy: World, event: str, attacker: str, victim: str) -> None:
    await SOCKETIO_PROBES[event](Match(tenancy, attacker, victim))
