"""The tenancy tests' world: two tenants (`default`, `acme`), a user token of each, a `service` token and the
operator, each with tasks in a project of the same name, in a namespace of their own whose only worker serves
the default queue (tasks of the other queues stay queued: unfinished work that holds no worker slot).

What may be seen is written here independently of the product: as visibility queries over the search
attributes the tasks carry (`TaskOwner`, `TaskUser`), answered by Temporal itself.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
import jwt
from temporalio.client import Client, WorkflowExecution

from taskservice import search_attributes as sa
from tests.support.stack import ADMIN_KEY, API_KEYS, JWT_SECRET, OTHER_KEYS, OTHER_TENANT, Replica
from tests.support.streams import graphql_subscription, subscription_errors
from tests.support.tasks import wait_status

PROJECT = "shared_project"
TASKS = 'WorkflowType = "TaskWorkflow"'
MISSING = "00000000-0000-4000-8000-000000000000"
STREAM_S = 2.5


def token(sub: str, tenant: str | None = None, **claims: Any) -> str:
    """An HS256 token of the stack's JWT_SECRET, valid for an hour."""
    payload: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + 3600, **claims}
    if tenant is not None:
        payload["tenant"] = tenant
    return jwt.encode(payload, JWT_SECRET, algorithm="HS256")


class Kind(StrEnum):
    KEY = "key"  # an API key: its whole tenant
    SERVICE = "service"  # a `role: service` token: its whole tenant
    USER = "user"  # a user token: the tasks its own `sub` created
    OPERATOR = "operator"  # ADMIN_API_KEY: every tenant


@dataclass(frozen=True)
class Party:
    name: str  # also the `sub` of its token
    tenant: str
    kind: Kind
    credential: str

    @property
    def headers(self) -> dict[str, str]:
        if self.kind in (Kind.KEY, Kind.OPERATOR):
            return {"X-API-Key": self.credential}
        return {"Authorization": f"Bearer {self.credential}"}

    @property
    def connection_params(self) -> dict[str, str]:
        """What a Socket.IO `auth` dict or a GraphQL `connection_init` payload carries."""
        if self.kind in (Kind.KEY, Kind.OPERATOR):
            return {"apiKey": self.credential}
        return {"token": self.credential}

    def sees(self, tenant: str | None, user: str | None) -> bool:
        """Whether a task of `tenant` created by `user` (a token's `sub`, else None) is in this view."""
        if self.kind == Kind.OPERATOR:
            return True
        if tenant != self.tenant:
            return False
        return self.kind != Kind.USER or user == self.name

    def visibility_query(self, project: str | None = PROJECT) -> str:
        """The tasks in this party's view."""
        clauses = [TASKS]
        if project is not None:
            clauses.append(f'ProjectId = "{project}"')
        if self.kind != Kind.OPERATOR:
            clauses.append(f'TaskOwner = "{self.tenant}"')
        if self.kind == Kind.USER:
            clauses.append(f'TaskUser = "{self.name}"')
        return " AND ".join(clauses)

    def tenant_query(self) -> str:
        """The tasks counted for this party (a user's counts are its tenant's, as for any of the tenant)."""
        return TASKS if self.kind == Kind.OPERATOR else f'{TASKS} AND TaskOwner = "{self.tenant}"'


def parties() -> dict[str, Party]:
    return {
        "default": Party("default", "default", Kind.KEY, API_KEYS[0]),
        "acme": Party("acme", OTHER_TENANT, Kind.KEY, OTHER_KEYS[0]),
        "alice": Party("alice", "default", Kind.USER, token("alice", "default")),
        "bob": Party("bob", OTHER_TENANT, Kind.USER, token("bob", OTHER_TENANT)),
        "service": Party("service", "default", Kind.SERVICE, token("service", "default", role="service")),
        "operator": Party("operator", "default", Kind.OPERATOR, ADMIN_KEY),
    }


def done_body(owner: str) -> dict[str, Any]:
    """What each party submitted first, with the Idempotency-Key `tenancy-<owner>`."""
    task_data = {"prompt_template": f"by {owner}"}
    return {"project_id": PROJECT, "task_type": "test_prompt", "task_data": task_data}


# Each party's tasks in PROJECT: role → (task type, task data). Task types differ between parties where a bulk
# filter must select one party's tasks only (queued ones wait on queues no worker of the namespace serves).
PLANS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "default": {
        "failed": ("test_prompt", {"prompt_template": "default fails [[status=400]]"}),
        "queued": ("generate_video", {"scene_description": "default's queued scene", "duration": 2}),
    },
    "acme": {
        "failed": ("run_llm_inference", {"prompt": "acme fails [[status=400]]"}),
        "queued": ("render_animation", {"action": "acme's queued wave"}),
    },
    "alice": {"queued": ("generate_image", {"prompt": "alice's queued image", "resolution": "64x64"})},
    "bob": {"queued": ("generate_character_voice", {"text": "bob's queued line"})},
}
EXPECTED_STATUS = {"done": "completed", "failed": "failed", "queued": "queued"}


@dataclass(frozen=True)
class Seen:
    """A task as Temporal's visibility records it."""

    tenant: str | None
    user: str | None
    status: str | None
    running: bool


def seen(execution: WorkflowExecution) -> Seen:
    attributes = execution.typed_search_attributes
    return Seen(
        tenant=attributes.get(sa.OWNER),
        user=attributes.get(sa.USER),
        status=attributes.get(sa.TASK_STATUS),
        running=execution.close_time is None,
    )


@dataclass
class World:
    replica: Replica
    temporal: Client
    parties: dict[str, Party]
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    tasks: dict[str, dict[str, str]] = field(default_factory=dict)  # party → role → task id

    @property
    def url(self) -> str:
        return self.replica.url

    def client(self, party: str) -> httpx.AsyncClient:
        return self.clients[party]

    def ids_of(self, party: str) -> set[str]:
        return set(self.tasks.get(party, {}).values())

    async def executions(self, query: str) -> dict[str, Seen]:
        return {e.id: seen(e) async for e in self.temporal.list_workflows(query)}

    async def view_of(self, party: str, project: str | None = PROJECT) -> set[str]:
        return set(await self.executions(self.parties[party].visibility_query(project)))

    async def count(self, query: str) -> int:
        return (await self.temporal.count_workflows(query)).count

    async def outside_view(self, party: str) -> dict[str, Seen]:
        """Every task of PROJECT that `party` may not see, as Temporal records it."""
        viewer = self.parties[party]
        tasks = await self.executions(f'{TASKS} AND ProjectId = "{PROJECT}"')
        return {task_id: s for task_id, s in tasks.items() if not viewer.sees(s.tenant, s.user)}

    async def submit(self, party: str, task_type: str, task_data: dict[str, Any], **headers: str) -> str:
        body = {"project_id": PROJECT, "task_type": task_type, "task_data": task_data}
        response = await self.client(party).post("/api/v1/tasks/submit", json=body, headers=headers)
        assert response.status_code == 200, response.text
        task_id: str = response.json()["task_id"]
        return task_id

    async def populate(self) -> None:
        for owner in ("default", "acme", "alice", "bob"):
            body = done_body(owner)
            done = await self.submit(
                owner, body["task_type"], body["task_data"], **{"Idempotency-Key": f"tenancy-{owner}"}
            )
            self.tasks[owner] = {"done": done}
            for role, (task_type, task_data) in PLANS[owner].items():
                self.tasks[owner][role] = await self.submit(owner, task_type, task_data)
        for owner, roles in self.tasks.items():
            for role, task_id in roles.items():
                await wait_status(self.client(owner), task_id, EXPECTED_STATUS[role])

    async def cancel_queued(self) -> None:
        for owner, roles in self.tasks.items():
            if "queued" in roles:
                await self.client(owner).delete(f"/api/v1/tasks/{roles['queued']}")


@asynccontextmanager
async def tenancy_world(replica: Replica, temporal: Client) -> AsyncIterator[World]:
    world = World(replica, temporal, parties())
    for name, party in world.parties.items():
        world.clients[name] = httpx.AsyncClient(base_url=replica.url, headers=party.headers, timeout=30)
    try:
        await world.populate()
        yield world
    finally:
        await world.cancel_queued()
        for client in world.clients.values():
            await client.aclose()


# (attacker, victim): another tenant's key, a user against its own tenant's key and another tenant's user, and
# a service token against another tenant.
PAIRS = [
    ("acme", "default"),
    ("default", "acme"),
    ("alice", "default"),
    ("alice", "bob"),
    ("service", "acme"),
]


@dataclass
class Match:
    """One attacker against one victim's tasks."""

    world: World
    attacker: str
    victim: str

    @property
    def client(self) -> httpx.AsyncClient:
        return self.world.client(self.attacker)

    @property
    def owner(self) -> httpx.AsyncClient:
        return self.world.client(self.victim)

    def task(self, *roles: str) -> str:
        tasks = self.world.tasks[self.victim]
        return next(tasks[role] for role in roles if role in tasks)

    @property
    def unfinished(self) -> str:
        return self.task("queued")

    @property
    def retriable(self) -> str:
        return self.task("failed", "done")

    @property
    def victim_ids(self) -> set[str]:
        return self.world.ids_of(self.victim)

    def selection(self, role: str) -> dict[str, Any]:
        """A bulk filter that selects the victim's task of `role` and nothing the attacker has."""
        task_type = PLANS[self.victim][role][0] if role in PLANS[self.victim] else "test_prompt"
        status = {"queued": "queued", "failed": "failed", "done": "completed"}[role]
        return {"project_id": PROJECT, "task_type": task_type, "status": status}

    async def changes_nothing(self, action: Callable[[], Awaitable[None]]) -> None:
        """Every task of the project outside the attacker's view is as it was, and none was added."""
        before = await self.world.outside_view(self.attacker)
        assert before, "the victim's tasks are outside the attacker's view"
        await action()
        await asyncio.sleep(0.5)  # a cancel or start that did happen shows in visibility by now
        assert await self.world.outside_view(self.attacker) == before

    async def own_view(self) -> set[str]:
        return await self.world.view_of(self.attacker)

    async def owns(self, task_id: str) -> None:
        """A task the attacker just created is its own, recorded as such, and runs to its end."""
        await wait_status(self.client, task_id, {"completed"})
        assert task_id in await self.own_view() and task_id not in self.victim_ids


# --- comparing answers ------------------------------------------------------------------------------------


def masked(text: str, *ids: str) -> str:
    for task_id in ids:
        text = text.replace(task_id, "<task id>")
    return text


async def answers_as_missing(ask: Callable[[str], Awaitable[httpx.Response]], task_id: str) -> httpx.Response:
    """`ask` about `task_id` answers exactly as about a task that does not exist: 404 task_not_found, the same
    body apart from the id."""
    missing = str(uuid.uuid4())
    answer, reference = await ask(task_id), await ask(missing)
    assert reference.status_code == 404 and reference.json()["error"] == "task_not_found", reference.text
    assert answer.status_code == 404, answer.text
    assert masked(answer.text, task_id) == masked(reference.text, missing)
    assert answer.headers.get("content-type") == reference.headers.get("content-type")
    return answer


async def eventually_equal(
    read: Callable[[], Awaitable[Any]], truth: Callable[[], Awaitable[Any]], timeout: float = 20
) -> Any:
    """What the API answers, once it equals what Temporal says (visibility and bookkeeping lag a little)."""
    deadline = time.monotonic() + timeout
    while True:
        answer, expected = await read(), await truth()
        if answer == expected or time.monotonic() > deadline:
            assert answer == expected
            return answer
        await asyncio.sleep(0.3)


# --- GraphQL ------------------------------------------------------------------------------------------------


async def gql(client: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def graphql_as_missing(m: Match, query: str, task_id: str, *, over_get: bool = False) -> None:
    """`query` (of one variable `$id`) about `task_id` answers as about a missing task: the same data and
    errors apart from the id, `task_not_found`."""

    async def ask(about: str) -> dict[str, Any]:
        if not over_get:
            return await gql(m.client, query, {"id": about})
        params = {"query": query, "variables": json.dumps({"id": about})}
        response = await m.client.get("/graphql", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    answer, reference = await ask(task_id), await ask(MISSING)
    assert [e["extensions"]["code"] for e in reference["errors"]] == ["task_not_found"]
    assert masked(json.dumps(answer), task_id) == masked(json.dumps(reference), MISSING)


async def subscription_as_missing(m: Match, query: str, task_id: str) -> None:
    """A subscription (of one variable `$id`) to `task_id` answers as one to a missing task; the owner's
    subscription to it streams the task."""

    async def answer(party: str, about: str) -> list[dict[str, Any]]:
        params = m.world.parties[party].connection_params
        return await graphql_subscription(m.world.url, params, query, {"id": about}, STREAM_S)

    owner = await answer(m.victim, task_id)
    assert owner[0]["type"] == "next" and task_id in json.dumps(owner[0]["payload"]["data"]), owner
    theirs, missing = await answer(m.attacker, task_id), await answer(m.attacker, MISSING)
    assert [e["extensions"]["code"] for e in subscription_errors(missing)] == ["task_not_found"]
    assert masked(json.dumps(theirs), task_id) == masked(json.dumps(missing), MISSING)


# --- pipelines: each victim's one ended and one unfinished pipeline, made once per world (a step of a type
# no world task has, queued for good: the namespace has no gpu_medium worker) ----------------------------
_VICTIM_PIPELINES: dict[tuple[str, str], dict[str, str]] = {}
MISSING_PIPELINE = "pl-00000000-0000-4000-8000-000000000000"
PIPELINE_LINES = {"lines": [{"text": "pipeline line"}], "target_language": "fr"}


def pipeline_body(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"project_id": PROJECT, "steps": list(steps)}


async def victim_pipelines(m: Match) -> dict[str, str]:
    key = (m.world.url, m.victim)
    if key not in _VICTIM_PIPELINES:
        line = {"id": "line", "task_type": "translate_dialogue", "task_data": PIPELINE_LINES}
        stuck = {
            "id": "art",
            "task_type": "run_sd_inference",
            "task_data": {"prompt": "x"},
            "after": ["line"],
        }
        ids = {}
        for role, body in (("ended", pipeline_body(line)), ("unfinished", pipeline_body(line, stuck))):
            response = await m.owner.post("/api/v1/pipelines", json=body)
            assert response.status_code == 200, response.text
            ids[role] = response.json()["pipeline_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ended = (await m.owner.get(f"/api/v1/pipelines/{ids['ended']}", params={"wait": 10})).json()
            unfinished = (await m.owner.get(f"/api/v1/pipelines/{ids['unfinished']}")).json()
            if ended["status"] == "completed" and unfinished["steps"][0]["status"] == "completed":
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # the stuck step's start shows in visibility by now
        _VICTIM_PIPELINES[key] = ids
    return _VICTIM_PIPELINES[key]
