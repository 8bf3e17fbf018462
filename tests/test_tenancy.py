"""Tenant isolation over every REST and WebSocket route: another tenant's (or another user's) task answers
exactly as a missing one, listings and counts hold only the caller's own view, and what would change another's
work changes nothing. The routes come from the app's own table: one added without a probe fails the walk.

The world (tests/support/tenancy.py): tenants `default` and `acme`, users alice (default) and bob (acme), a
`role: service` token of default and the operator, with tasks in a project of the same name.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from pydantic import SecretStr
from starlette.routing import Mount

from api.main import create_app
from taskservice import search_attributes as sa
from taskservice.settings import Settings
from tests.support.stack import API_KEYS
from tests.support.streams import read_sse, read_ws, socketio_client, ws_base
from tests.support.tenancy import (
    MISSING,
    MISSING_PIPELINE,
    PAIRS,
    PIPELINE_LINES,
    PLANS,
    PROJECT,
    STREAM_S,
    Kind,
    Match,
    World,
    answers_as_missing,
    done_body,
    eventually_equal,
    gql,
    graphql_as_missing,
    masked,
    pipeline_body,
    subscription_as_missing,
    victim_pipelines,
)

Probe = Callable[[Match], Awaitable[None]]
TASKS_QUERY = 'WorkflowType = "TaskWorkflow"'


async def _owner_sees(m: Match, path: str) -> None:
    response = await m.owner.get(path.format(task_id=m.retriable))
    assert response.status_code == 200, response.text


def _as_missing(
    method: str, path: str, role: str = "retriable", headers: dict[str, str] | None = None
) -> Probe:
    async def probe(m: Match) -> None:
        await _owner_sees(m, "/api/v1/tasks/{task_id}/status")
        target = m.retriable if role == "retriable" else m.unfinished

        async def ask(task_id: str) -> httpx.Response:
            return await m.client.request(method, path.format(task_id=task_id), headers=headers)

        if method == "GET":
            await answers_as_missing(ask, target)
        else:

            async def action() -> None:
                await answers_as_missing(ask, target)

            await m.changes_nothing(action)

    return probe


async def _status_reads(m: Match) -> None:
    """A plain read, and waiting reads (since a status, or an ETag) that must not wait on another's task."""
    await _as_missing("GET", TASK + "/status")(m)
    started = time.monotonic()
    await _as_missing("GET", TASK + "/status?wait=20&since_status=queued")(m)
    await _as_missing("GET", TASK + "/status?wait=20", headers={"If-None-Match": 'W/"x"'})(m)
    assert time.monotonic() - started < 10, "a waiting read of a missing task answered only after waiting"


async def _listing(m: Match, path: str, **params: Any) -> None:
    async def listed(client: httpx.AsyncClient) -> set[str]:
        response = await client.get(path, params={"limit": 100, **params})
        assert response.status_code == 200, response.text
        body = response.json()
        return {t["task_id"] for t in (body["tasks"] if isinstance(body, dict) else body)}

    assert m.victim_ids <= await listed(m.owner)
    ids = await eventually_equal(lambda: listed(m.client), m.own_view)
    assert not ids & m.victim_ids and m.world.ids_of(m.attacker) <= ids


async def _project_stream(m: Match) -> None:
    path = f"/api/v1/projects/{PROJECT}/events"
    theirs, mine = await asyncio.gather(read_sse(m.owner, path, STREAM_S), read_sse(m.client, path, STREAM_S))
    assert m.unfinished in theirs.task_ids
    assert mine.status == 200 and mine.task_ids and mine.task_ids <= await m.own_view()


async def _task_stream(m: Match) -> None:
    path = "/api/v1/tasks/{task_id}/events"
    first = await read_sse(m.owner, path.format(task_id=m.unfinished), STREAM_S)
    assert first.status == 200 and first.task_ids == {m.unfinished}

    async def ask(task_id: str) -> httpx.Response:
        return await m.client.get(path.format(task_id=task_id))

    await answers_as_missing(ask, m.unfinished)


async def _counts(m: Match, path: str) -> None:
    """Cumulative metrics count the caller's tenant only (every tenant for the operator)."""
    attacker = m.world.parties[m.attacker]

    async def total() -> int:
        response = await m.client.get(path)
        assert response.status_code == 200, response.text
        return int(response.json()["metrics"]["total_tasks"])

    everyone = await m.world.count('WorkflowType = "TaskWorkflow"')
    mine = await eventually_equal(total, lambda: m.world.count(attacker.tenant_query()))
    assert mine < everyone


async def _statistics(m: Match) -> None:
    async def total(client: httpx.AsyncClient) -> int:
        response = await client.get("/api/v1/tasks/statistics", params={"hours": 24})
        assert response.status_code == 200, response.text
        return int(response.json()["total"])

    attacker = m.world.parties[m.attacker]
    await eventually_equal(lambda: total(m.client), lambda: m.world.count(attacker.visibility_query(None)))


async def _usage(m: Match) -> None:
    """Usage sums the finished tasks in the caller's view only (a user's own, a tenant's, everyone's)."""

    async def total() -> int:
        response = await m.client.get("/api/v1/usage")
        assert response.status_code == 200, response.text
        return int(response.json()["tasks"])

    attacker = m.world.parties[m.attacker]
    finished = f'{attacker.visibility_query(None)} AND ExecutionStatus != "Running"'
    mine = await eventually_equal(total, lambda: m.world.count(finished))
    if attacker.kind != Kind.OPERATOR:
        assert mine < await m.world.count(f'{TASKS_QUERY} AND ExecutionStatus != "Running"')


async def _bulk(m: Match, operation: str, role: str) -> None:
    selection = m.selection(role)
    if role in m.world.tasks[m.victim]:
        found = (await m.owner.get("/api/v1/tasks", params=selection)).json()
        assert m.task(role) in {t["task_id"] for t in found}

    async def action() -> None:
        response = await m.client.post(f"/api/v1/tasks/bulk/{operation}", json=selection)
        assert response.status_code == 200, response.text
        assert response.json() == {"matched": 0, "affected": 0, "task_ids": [], "errors": {}}

    await m.changes_nothing(action)


async def _bulk_retry(m: Match) -> None:
    await _bulk(m, "retry", "failed" if "failed" in PLANS[m.victim] else "done")


async def _submit(m: Match) -> None:
    """The victim's body with the victim's Idempotency-Key: a task of the attacker's own, not the victim's."""
    headers = {"Idempotency-Key": f"tenancy-{m.victim}"}

    async def action() -> None:
        response = await m.client.post("/api/v1/tasks/submit", json=done_body(m.victim), headers=headers)
        assert response.status_code == 200, response.text
        # A replay is of the attacker's own tenant's task (a service token shares its tenant's keys).
        await m.owns(response.json()["task_id"])

    await m.changes_nothing(action)


async def _quote(m: Match) -> None:
    """A quote of the victim's body: an estimate that names no task, and nothing starts or changes."""

    async def action() -> None:
        response = await m.client.post("/api/v1/tasks/quote", json=done_body(m.victim))
        assert response.status_code == 200, response.text
        assert response.json()["estimate"] is not None
        assert not any(task_id in response.text for task_id in m.victim_ids)
        assert await m.own_view() == own_before

    own_before = await m.own_view()
    await m.changes_nothing(action)


async def _batch(m: Match) -> None:
    async def action() -> None:
        response = await m.client.post("/api/v1/tasks/batch", json={"tasks": [done_body(m.victim)]})
        assert response.status_code == 200 and response.json()["created"] == 1, response.text
        await m.owns(response.json()["results"][0]["task"]["task_id"])

    await m.changes_nothing(action)


async def _admin_cleanup(m: Match) -> None:
    """Operators only: the operator's dry run lists every tenant's finished tasks; anyone else is refused."""
    request = {"finished_older_than_hours": 0.0001, "dry_run": True}

    async def listed() -> bool:
        operator = await m.world.client("operator").post("/api/v1/admin/cleanup", json=request)
        assert operator.status_code == 200, operator.text
        return m.task("done") in operator.json()["task_ids"]

    # The dry run reads closed workflows in visibility: a task closes a little after its status says it
    # completed (it frees its concurrency slots first), and its close shows in visibility after that.
    assert await eventually_equal(listed, _true, timeout=30)

    async def action() -> None:
        cancelling = {"finished_older_than_hours": 0.0001, "cancel_queued_older_than_hours": 0.0001}
        for body in (request, cancelling):
            response = await m.client.post("/api/v1/admin/cleanup", json=body)
            assert response.status_code == 403 and response.json()["error"] == "forbidden", response.text

    await m.changes_nothing(action)


async def _true() -> bool:
    return True


async def _tells_nothing_of_tasks(m: Match, path: str) -> None:
    """System health and telemetry: the same for every tenant, naming no task."""
    response = await m.client.get(path)
    assert response.status_code == 200, response.text
    assert not any(task_id in response.text for task_id in m.victim_ids)


async def _prometheus(m: Match) -> None:
    """Telemetry for operators' scrapers (it counts every tenant's work): the admin key only; a token is no
    scrape credential."""
    response = await m.client.get("/metrics")
    if m.world.parties[m.attacker].kind in (Kind.USER, Kind.SERVICE):
        assert response.status_code == 401 and response.json()["error"] == "authentication_failed"
    else:
        assert response.status_code == 403 and response.json()["error"] == "forbidden"


async def _liveness(m: Match) -> None:
    assert (await m.client.get("/health")).json() == {"status": "ok"}


async def _documentation(m: Match, path: str) -> None:
    """The API's documentation: the same static answer for every caller, with no task's data in it."""
    if path == "/static-offline-docs":
        path = re.findall(r'"(/static-offline-docs/[^"]+)"', (await m.client.get("/docs")).text)[0]
    mine, theirs = await m.client.get(path), await m.owner.get(path)
    assert mine.status_code == theirs.status_code == 200 and mine.content == theirs.content
    assert not any(task_id in mine.text for task_id in m.victim_ids)


async def _guessed_media(m: Match) -> None:
    """A result's path guessed without the signed URL (tests/test_tenancy_media.py walks real files)."""

    async def ask(task_id: str) -> httpx.Response:
        return await m.client.get(f"/media/{PROJECT}/test_prompt/{task_id}.png")

    done = m.task("done")
    answer, reference = await ask(done), await ask(MISSING)
    assert answer.status_code == reference.status_code == 404 and answer.json()["error"] == "not_found"


async def _graphql(m: Match, method: str) -> None:
    """One query over this route (every operation is walked in tests/test_tenancy_realtime.py)."""
    query = "query($id: ID!) { aiTask(id: $id) { id status } }"
    mine = await gql(m.owner, query, {"id": m.retriable})
    assert mine["data"]["aiTask"]["id"] == m.retriable
    await graphql_as_missing(m, query, m.retriable, over_get=method == "GET")


async def _task_socket(m: Match) -> None:
    url = ws_base(m.world.url) + "/ws/tasks/{}"
    owner = m.world.parties[m.victim].headers
    first = await read_ws(url.format(m.unfinished), owner, STREAM_S)
    assert first.status == 101 and {e["task_id"] for e in first.events} == {m.unfinished}
    attacker = m.world.parties[m.attacker].headers
    answer = await read_ws(url.format(m.unfinished), attacker, STREAM_S)
    reference = await read_ws(url.format(MISSING), attacker, STREAM_S)
    assert reference.status == 404 and reference.body["error"] == "task_not_found", reference
    assert answer.status == 404 and not answer.events
    assert masked(str(answer.body), m.unfinished) == masked(str(reference.body), MISSING)


async def _project_socket(m: Match) -> None:
    url = ws_base(m.world.url) + f"/ws/projects/{PROJECT}"
    theirs, mine = await asyncio.gather(
        read_ws(url, m.world.parties[m.victim].headers, STREAM_S),
        read_ws(url, m.world.parties[m.attacker].headers, STREAM_S),
    )
    assert m.unfinished in {e["task_id"] for e in theirs.events}
    ids = {e["task_id"] for e in mine.events}
    assert mine.status == 101 and ids and ids <= await m.own_view()


async def _graphql_subscription(m: Match) -> None:
    """One subscription over this route (every operation is walked in tests/test_tenancy_realtime.py)."""
    query = "subscription($id: ID!) { aiTaskStatusChanged(taskId: $id) { id status } }"
    await subscription_as_missing(m, query, m.unfinished)


async def _socketio(m: Match, path: str) -> None:
    """Connecting here reaches the same rooms (tests/test_tenancy_realtime.py walks every event)."""
    async with (
        socketio_client(m.world.url, m.world.parties[m.victim].connection_params, path) as owner,
        socketio_client(m.world.url, m.world.parties[m.attacker].connection_params, path) as attacker,
    ):
        assert (await owner.call("subscribe:task", m.unfinished))["success"] is True
        answer, reference = (
            await attacker.call("subscribe:task", m.unfinished),
            await attacker.call("subscribe:task", MISSING),
        )
        assert masked(str(answer), m.unfinished) == masked(str(reference), MISSING)
        assert reference["error"]["code"] == "task_not_found"
        await asyncio.sleep(1)
        assert owner.task_ids == {m.unfinished} and not attacker.task_ids


# Per victim, a task of its own whose final webhook failed (to a port where nothing listens): a recorded
# delivery the listing probe looks for. In a project of its own, so the other probes' views stay as they were.
_FAILED_HOOKS: dict[str, str] = {}


async def _failed_hook(m: Match) -> str:
    if m.victim not in _FAILED_HOOKS:
        body = {
            "project_id": "webhook_probe",
            "task_type": "test_prompt",
            "task_data": {"prompt_template": "hook fails"},
            "callback_url": "http://127.0.0.1:9/unreachable",
        }
        response = await m.owner.post("/api/v1/tasks/submit", json=body)
        assert response.status_code == 200, response.text
        _FAILED_HOOKS[m.victim] = response.json()["task_id"]
    return _FAILED_HOOKS[m.victim]


async def _failed_deliveries(m: Match) -> None:
    """The victim's failed delivery is listed for the victim, never for another tenant or user."""
    task_id = await _failed_hook(m)

    async def listed(client: httpx.AsyncClient) -> bool:
        response = await client.get("/api/v1/webhooks/deliveries", params={"status": "failed"})
        assert response.status_code == 200, response.text
        return task_id in {d["task_id"] for d in response.json()["deliveries"]}

    assert await eventually_equal(lambda: listed(m.owner), _true, timeout=40)
    assert not await listed(m.client)
    theirs = await m.client.get("/api/v1/webhooks/deliveries", params={"project_id": "webhook_probe"})
    assert task_id not in {d["task_id"] for d in theirs.json()["deliveries"]}


async def _webhook_secret(m: Match) -> None:
    """Each tenant its own secret: another tenant's caller is answered its own, never the victim's."""
    mine, theirs = await m.client.get("/api/v1/webhooks/secret"), await m.owner.get("/api/v1/webhooks/secret")
    assert mine.status_code == theirs.status_code == 200, mine.text
    same_tenant = m.world.parties[m.attacker].tenant == m.world.parties[m.victim].tenant
    assert (mine.json()["secret"] == theirs.json()["secret"]) == same_tenant
    assert mine.json()["tenant"] == m.world.parties[m.attacker].tenant


async def _webhook_rotation(m: Match) -> None:
    """A rotation changes the caller's tenant's secret only, and a user token may not rotate at all."""
    before = (await m.owner.get("/api/v1/webhooks/secret")).json()
    rotated = await m.client.post("/api/v1/webhooks/secret/rotate")
    after = (await m.owner.get("/api/v1/webhooks/secret")).json()
    if m.world.parties[m.attacker].kind == Kind.USER:
        assert rotated.status_code == 403 and rotated.json()["error"] == "forbidden", rotated.text
        assert after == before
        return
    assert rotated.status_code == 200, rotated.text
    if m.world.parties[m.attacker].tenant != m.world.parties[m.victim].tenant:
        assert after == before
    else:
        assert after["secret"] == rotated.json()["secret"] != before["secret"]


# --- pipelines (each victim's, made once: tests.support.tenancy.victim_pipelines) -------------------------


async def _pipeline_answers_as_missing(
    m: Match, ask: Callable[[str], Awaitable[httpx.Response]], pipeline_id: str
) -> None:
    missing = MISSING_PIPELINE
    answer, reference = await ask(pipeline_id), await ask(missing)
    assert reference.status_code == 404 and reference.json()["error"] == "pipeline_not_found", reference.text
    assert answer.status_code == 404, answer.text
    assert masked(answer.text, pipeline_id) == masked(reference.text, missing)


def _pipeline_as_missing(method: str, path: str, role: str, body: dict[str, Any] | None = None) -> Probe:
    async def probe(m: Match) -> None:
        target = (await victim_pipelines(m))[role]
        before = (await m.owner.get(f"/api/v1/pipelines/{target}")).json()

        async def ask(pipeline_id: str) -> httpx.Response:
            return await m.client.request(method, path.format(pipeline_id=pipeline_id), json=body)

        async def action() -> None:
            await _pipeline_answers_as_missing(m, ask, target)

        await m.changes_nothing(action)
        after = (await m.owner.get(f"/api/v1/pipelines/{target}")).json()
        assert after["status"] == before["status"] and after["steps"] == before["steps"]

    return probe


async def _pipeline_listing(m: Match) -> None:
    ids = set((await victim_pipelines(m)).values())
    path = f"/api/v1/projects/{PROJECT}/pipelines"

    async def listed(client: httpx.AsyncClient) -> set[str]:
        response = await client.get(path, params={"limit": 100})
        assert response.status_code == 200, response.text
        return {p["pipeline_id"] for p in response.json()["pipelines"]}

    assert ids <= await listed(m.owner)
    assert not ids & await listed(m.client)


async def _pipeline_stream(m: Match) -> None:
    target = (await victim_pipelines(m))["unfinished"]
    path = "/api/v1/pipelines/{}/events"
    async with m.owner.stream("GET", path.format(target)) as own:
        assert own.status_code == 200

    async def ask(pipeline_id: str) -> httpx.Response:
        return await m.client.get(path.format(pipeline_id))

    await _pipeline_answers_as_missing(m, ask, target)


async def _pipeline_socket(m: Match) -> None:
    target = (await victim_pipelines(m))["unfinished"]
    missing = MISSING_PIPELINE
    url = ws_base(m.world.url) + "/ws/pipelines/{}"
    first = await read_ws(url.format(target), m.world.parties[m.victim].headers, STREAM_S)
    assert first.status == 101 and {e["pipeline_id"] for e in first.events} == {target}
    attacker = m.world.parties[m.attacker].headers
    answer = await read_ws(url.format(target), attacker, STREAM_S)
    reference = await read_ws(url.format(missing), attacker, STREAM_S)
    assert reference.status == 404 and reference.body["error"] == "pipeline_not_found", reference
    assert answer.status == 404 and not answer.events
    assert masked(str(answer.body), target) == masked(str(reference.body), missing)


async def _pipeline_submit(m: Match, path: str) -> None:
    """The attacker's own pipeline (or quote): nothing of the victim's changes."""
    await victim_pipelines(m)
    body = pipeline_body({"id": "line", "task_type": "translate_dialogue", "task_data": PIPELINE_LINES})

    async def action() -> None:
        response = await m.client.post(path, json=body)
        assert response.status_code == 200, response.text
        pipeline_id = response.json()["pipeline_id"]
        if pipeline_id is not None:
            mine = await m.client.get(f"/api/v1/pipelines/{pipeline_id}", params={"wait": 20})
            assert mine.status_code == 200 and mine.json()["status"] == "completed", mine.text

    await m.changes_nothing(action)


PIPELINE = "/api/v1/pipelines/{pipeline_id}"

TASK = "/api/v1/tasks/{task_id}"
PROJECT_TASKS = f"/api/v1/projects/{PROJECT}/tasks"
ROUTE_PROBES: dict[tuple[str, str], Probe] = {
    ("POST", "/api/v1/admin/cleanup"): _admin_cleanup,
    ("GET", "/api/v1/health"): lambda m: _tells_nothing_of_tasks(m, "/api/v1/health"),
    ("GET", "/api/v1/projects/{project_id}/events"): _project_stream,
    ("GET", "/api/v1/projects/{project_id}/tasks"): lambda m: _listing(m, PROJECT_TASKS),
    ("GET", "/api/v1/queues"): lambda m: _tells_nothing_of_tasks(m, "/api/v1/queues"),
    ("GET", "/api/v1/tasks"): lambda m: _listing(m, "/api/v1/tasks", project_id=PROJECT),
    ("POST", "/api/v1/tasks/batch"): _batch,
    ("POST", "/api/v1/tasks/bulk/cancel"): lambda m: _bulk(m, "cancel", "queued"),
    ("POST", "/api/v1/tasks/bulk/retry"): _bulk_retry,
    ("GET", "/api/v1/tasks/health"): lambda m: _counts(m, "/api/v1/tasks/health"),
    ("GET", "/api/v1/tasks/metrics"): lambda m: _counts(m, "/api/v1/tasks/metrics"),
    ("GET", "/api/v1/tasks/statistics"): _statistics,
    ("POST", "/api/v1/tasks/submit"): _submit,
    ("POST", "/api/v1/tasks/quote"): _quote,
    ("GET", "/api/v1/usage"): _usage,
    ("GET", "/api/v1/tasks/estimates"): lambda m: _tells_nothing_of_tasks(m, "/api/v1/tasks/estimates"),
    ("GET", TASK): _as_missing("GET", TASK),
    ("DELETE", TASK): _as_missing("DELETE", TASK, role="unfinished"),
    ("GET", TASK + "/events"): _task_stream,
    ("POST", TASK + "/retry"): _as_missing("POST", TASK + "/retry"),
    ("GET", TASK + "/webhooks"): _as_missing("GET", TASK + "/webhooks"),
    ("POST", TASK + "/webhooks/redeliver"): _as_missing("POST", TASK + "/webhooks/redeliver"),
    ("GET", "/api/v1/webhooks/deliveries"): _failed_deliveries,
    ("GET", "/api/v1/webhooks/secret"): _webhook_secret,
    ("POST", "/api/v1/webhooks/secret/rotate"): _webhook_rotation,
    ("GET", TASK + "/status"): lambda m: _status_reads(m),
    ("GET", "/api/v1/workers/health"): lambda m: _tells_nothing_of_tasks(m, "/api/v1/workers/health"),
    ("GET", "/api/v1/workers/stats"): lambda m: _tells_nothing_of_tasks(m, "/api/v1/workers/stats"),
    ("GET", "/graphql"): lambda m: _graphql(m, "GET"),
    ("POST", "/graphql"): lambda m: _graphql(m, "POST"),
    ("GET", "/health"): _liveness,
    ("GET", "/media/{key}"): _guessed_media,
    ("GET", "/docs"): lambda m: _documentation(m, "/docs"),
    ("GET", "/graphql/ide/{name}"): lambda m: _documentation(m, "/graphql/ide/graphiql.min.css"),
    ("GET", "/docs/oauth2-redirect"): lambda m: _documentation(m, "/docs/oauth2-redirect"),
    ("GET", "/redoc"): lambda m: _documentation(m, "/redoc"),
    ("MOUNT", "/static-offline-docs"): lambda m: _documentation(m, "/static-offline-docs"),
    ("GET", "/metrics"): _prometheus,
    ("WS", "/ws/tasks/{task_id}"): _task_socket,
    ("WS", "/ws/projects/{project_id}"): _project_socket,
    ("WS", "/graphql"): _graphql_subscription,
    ("MOUNT", "/ws/ai-tasks"): lambda m: _socketio(m, "/ws/ai-tasks"),
    ("MOUNT", "/socket.io"): lambda m: _socketio(m, "/socket.io"),
    ("POST", "/api/v1/pipelines"): lambda m: _pipeline_submit(m, "/api/v1/pipelines"),
    ("POST", "/api/v1/pipelines/quote"): lambda m: _pipeline_submit(m, "/api/v1/pipelines/quote"),
    ("GET", PIPELINE): _pipeline_as_missing("GET", PIPELINE + "?wait=5", "unfinished"),
    ("DELETE", PIPELINE): _pipeline_as_missing("DELETE", PIPELINE, "unfinished"),
    ("POST", PIPELINE + "/retry"): _pipeline_as_missing("POST", PIPELINE + "/retry", "ended"),
    ("POST", PIPELINE + "/rerun"): _pipeline_as_missing(
        "POST", PIPELINE + "/rerun", "ended", {"changes": {}}
    ),
    ("GET", PIPELINE + "/events"): _pipeline_stream,
    ("GET", "/api/v1/projects/{project_id}/pipelines"): _pipeline_listing,
    ("WS", "/ws/pipelines/{pipeline_id}"): _pipeline_socket,
}


def _served_routes() -> set[tuple[str, str]]:
    """Every route the app serves: (method, path) of REST routes, ("WS", path) and ("MOUNT", path)."""
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(Settings(api_key=SecretStr(API_KEYS[0]), data_dir=Path(data_dir)))
    served: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, re.sub(r"\{(\w+):\w+\}", r"{\1}", context.path or "")
        if isinstance(route, APIRoute):
            served |= {(method, path) for method in route.methods - {"HEAD", "OPTIONS"}}
        elif isinstance(route, APIWebSocketRoute):
            served.add(("WS", path))
        elif isinstance(route, Mount):
            served.add(("MOUNT", path))
        # Else the documentation's own routes (/openapi.json, /docs, /redoc): no tenant's data.
    return served


def test_every_route_has_a_probe() -> None:
    """A route added to the app without a probe here fails the walk (and one removed leaves a stale probe)."""
    assert set(ROUTE_PROBES) == _served_routes()


@pytest.mark.parametrize(("attacker", "victim"), PAIRS, ids=[f"{a}-vs-{v}" for a, v in PAIRS])
@pytest.mark.parametrize("route", list(ROUTE_PROBES), ids=[f"{m} {p}" for m, p in ROUTE_PROBES])
async def test_route_keeps_tenants_apart(
    tenancy: World, route: tuple[str, str], attacker: str, victim: str
) -> None:
    await ROUTE_PROBES[route](Match(tenancy, attacker, victim))


@pytest.mark.parametrize("party", ["default", "acme", "alice", "bob", "service", "operator"])
async def test_each_credential_sees_exactly_its_own_view(tenancy: World, party: str) -> None:
    """Listings hold exactly what Temporal records in the party's view, which holds the world's tasks its
    credential may see and none of the others; each task reads as found or as missing accordingly."""
    viewer, client = tenancy.parties[party], tenancy.client(party)

    async def listed() -> set[str]:
        response = await client.get(PROJECT_TASKS, params={"limit": 100})
        assert response.status_code == 200, response.text
        return {t["task_id"] for t in response.json()["tasks"]}

    ids = await eventually_equal(listed, lambda: tenancy.view_of(party))
    for owner, roles in tenancy.tasks.items():
        creator = tenancy.parties[owner]
        visible = viewer.sees(creator.tenant, owner if creator.kind == Kind.USER else None)
        for task_id in roles.values():
            assert (task_id in ids) == visible, (owner, task_id)
            status = (await client.get(f"/api/v1/tasks/{task_id}/status")).status_code
            assert status == (200 if visible else 404), (owner, task_id)


async def test_each_task_records_its_tenant_and_project_as_one_scope(tenancy: World) -> None:
    """A project's listing matches `TaskScope` alone: every task's must be its owner's and its project's."""
    recorded = set()
    async for execution in tenancy.temporal.list_workflows(
        f'WorkflowType = "TaskWorkflow" AND ProjectId = "{PROJECT}"'
    ):
        attributes = execution.typed_search_attributes
        owner = attributes.get(sa.OWNER)
        assert attributes.get(sa.SCOPE) == f"{owner}/{PROJECT}", execution.id
        recorded.add(owner)
    assert recorded == {party.tenant for party in tenancy.parties.values()}
