"""Per-tenant admission rules of the one start path: idempotent IDs that no two owners share, the highest
priority a tenant may ask for (TENANT_MAX_PRIORITY), its cap on unfinished tasks (MAX_UNFINISHED_PER_TENANT).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from temporalio.client import Client

from api.service.submission import idempotent_task_id
from tests.support.in_process import app_client, wait_unfinished
from tests.support.stack import OTHER_KEYS, OTHER_TENANT, Stack
from tests.support.tasks import wait_status
from tests.support.tenancy import token

HELD = {"prompt_template": "held [[sleep=30]]"}
CAPPED_KEY = "capped-tenant-key-1"


def _body(project: str, **fields: Any) -> dict[str, Any]:
    return {
        "project_id": project,
        "task_type": "test_prompt",
        "task_data": {"prompt_template": "x"},
        **fields,
    }


def test_an_owners_key_names_its_own_task_and_only_the_secret_computes_it() -> None:
    secret = b"s" * 32
    bob, bob_1 = (
        idempotent_task_id(secret, "default", "bob", "1:2"),
        idempotent_task_id(secret, "default", "bob:1", "2"),
    )
    assert bob != bob_1
    assert bob == idempotent_task_id(secret, "default", "bob", "1:2")
    assert idempotent_task_id(secret, "default", "", "k") != idempotent_task_id(secret, "default/", "", "k")
    assert bob != idempotent_task_id(b"another secret of 32 bytes......", "default", "bob", "1:2")
    assert uuid.UUID(bob).version == 4


async def test_users_bob_and_bob_1_get_a_task_each(api: httpx.AsyncClient) -> None:
    project = f"p_idem_users_{uuid.uuid4().hex[:6]}"
    ids = {}
    for user, key in (("bob", "1:2"), ("bob:1", "2")):
        headers = {"Authorization": f"Bearer {token(user)}", "Idempotency-Key": key, "X-API-Key": ""}
        first = await api.post("/api/v1/tasks/submit", json=_body(project), headers=headers)
        again = await api.post("/api/v1/tasks/submit", json=_body(project), headers=headers)
        assert first.status_code == again.status_code == 200, first.text
        assert (
            again.json()["task_id"] == first.json()["task_id"]
            and again.headers["Idempotent-Replayed"] == "true"
        )
        ids[user] = first.json()["task_id"]
    assert ids["bob"] != ids["bob:1"]
    for task_id in ids.values():
        await wait_status(api, task_id, "completed")


async def test_a_tenant_asks_for_at_most_its_highest_priority(stack: Stack) -> None:
    project = f"p_prio_{uuid.uuid4().hex[:6]}"
    async with app_client(stack, TENANT_MAX_PRIORITY=f"{OTHER_TENANT}=URGENT") as api:
        refused = await api.post("/api/v1/tasks/submit", json=_body(project, priority="URGENT"))
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "forbidden"
        assert "URGENT is above what tenant default may ask for (HIGH" in refused.json()["message"]
        batch = await api.post("/api/v1/tasks/batch", json={"tasks": [_body(project, priority="URGENT")]})
        assert batch.json()["results"][0]["error"]["error"] == "forbidden"
        create = "mutation C($input: CreateAITaskInput!) { createAITask(input: $input) { id } }"
        urgent = {"projectId": project, "taskType": "test_prompt", "inputData": {"prompt_template": "x"}}
        variables = {"input": {**urgent, "priority": "URGENT"}}
        graphql = (await api.post("/graphql", json={"query": create, "variables": variables})).json()
        assert graphql["errors"][0]["extensions"]["code"] == "forbidden"
        started = [
            await api.post("/api/v1/tasks/submit", json=_body(project, priority=p)) for p in ("HIGH", 1)
        ]
        assert [r.status_code for r in started] == [200, 200]
        theirs = await api.post(
            "/api/v1/tasks/submit",
            json=_body(project, priority="URGENT"),
            headers={"X-API-Key": OTHER_KEYS[0]},
        )
        assert theirs.status_code == 200, theirs.text
        for response in started:
            await wait_status(api, response.json()["task_id"], "completed")


async def test_a_tenant_over_its_unfinished_tasks_is_told_to_come_back(
    stack: Stack, temporal_client: Client
) -> None:
    """A tenant of its own, so that no other test's unfinished tasks count."""
    keys = f"{OTHER_TENANT}={OTHER_KEYS[0]},capped={CAPPED_KEY}"
    async with app_client(stack, CAPPED_KEY, API_KEYS=keys, MAX_UNFINISHED_PER_TENANT="2") as api:
        held = []
        for n in range(2):
            response = await api.post("/api/v1/tasks/submit", json=_body(f"p_held_{n}", task_data=HELD))
            assert response.status_code == 200, response.text
            held.append(response.json()["task_id"])
        await wait_unfinished(temporal_client, "capped", 2)
        refused = await api.post("/api/v1/tasks/submit", json=_body("p_held_2"))
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "rate_limited"
        assert "Tenant capped already has 2 unfinished tasks (limit 2)" in refused.json()["message"]
        assert int(refused.headers["Retry-After"]) > 0
        # Another tenant is not held back by it.
        other = await api.post(
            "/api/v1/tasks/submit", json=_body("p_held_2"), headers={"X-API-Key": OTHER_KEYS[0]}
        )
        assert other.status_code == 200, other.text
        assert (await api.delete(f"/api/v1/tasks/{held[0]}")).status_code == 200
        await wait_status(api, held[0], "cancelled")
        deadline = time.monotonic() + 15  # visibility records the close a moment after the status says it
        while (admitted := await api.post("/api/v1/tasks/submit", json=_body("p_held_2"))).status_code == 429:
            assert time.monotonic() < deadline, "the cancelled task still counted after 15 s"
            await asyncio.sleep(0.2)
        assert admitted.status_code == 200, admitted.text
        await api.delete(f"/api/v1/tasks/{held[1]}")
