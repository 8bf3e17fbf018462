"""Property-based fuzzing of the running API from its own OpenAPI document (schemathesis).

Over 2 000 generated requests (10 000 in the heavy variant; schema-conforming and schema-violating) across
every operation: none may
answer 5xx, and every answer must match what the document declares (status code, content type, body
schema, headers). The requests go to the session stack's real API, so submits start real — cheap — tasks:
generated submits are steered to `test_prompt` (the fake LLM answers in ~1 ms) and away from outbound
callback URLs (a DNS lookup per request), everything else is as generated.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from temporalio.client import Client

from tests.support.stack import FUZZ_KEY, Stack
from tests.support.tasks import submit, wait_status

AnyCase = Case[Any]
AnyOperation = APIOperation[Any, Any, Any, Any]
# Requests per run: the default suite's, and the heavy variant's (`make test-heavy`).
TARGET_REQUESTS = [2_000, pytest.param(10_000, marks=pytest.mark.heavy, id="10000")]
# Schema-conforming cases get the larger share: they reach the handlers instead of the request validator.
MODE_SHARE = {GenerationMode.POSITIVE: 0.6, GenerationMode.NEGATIVE: 0.4}
CONFORMANCE_CHECKS = [content_type_conformance, response_schema_conformance, response_headers_conformance]


@dataclass
class FuzzReport:
    requests: int = 0
    per_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    nonconforming: list[str] = field(default_factory=list)
    undocumented_status: Counter[tuple[str, int]] = field(default_factory=Counter)


def _steer_body(value: Any, n: int) -> None:
    """Every task in a body (submit, batch) becomes a test_prompt without an outbound callback URL."""
    if isinstance(value, list):
        for item in value:
            _steer_body(item, n)
    if not isinstance(value, dict):
        return
    if isinstance(value.get("task_type"), str):
        value["task_type"] = "test_prompt"
    if isinstance(value.get("callback_url"), str) and "://" in value["callback_url"]:
        value["callback_url"] = None
    if n % 2 and "task_type" in value and isinstance(value.get("task_data"), dict):
        value["task_data"]["prompt_template"] = "fuzz"
    for item in value.values():
        if isinstance(item, dict | list):
            _steer_body(item, n)


def _steer(case: AnyCase, n: int, known_task: str) -> None:
    """Keep generated tasks cheap: test_prompt (or a 400), never an outbound callback lookup (DNS).

    Every other schema-conforming case is also pointed at something real, so success answers get checked
    too: a valid `prompt_template` for submitted tasks, an existing task for the `{task_id}` routes.
    """
    _steer_body(case.body, n)
    if n % 2 and case.path_parameters and "task_id" in case.path_parameters:
        case.path_parameters["task_id"] = known_task


def _streams(raw_schema: dict[str, Any]) -> set[tuple[str, str]]:
    """Server-Sent Events routes: their 200 is `text/event-stream`, and a project's stream never ends."""
    return {
        (method.upper(), path)
        for path, operations in raw_schema["paths"].items()
        for method, operation in operations.items()
        if "text/event-stream" in operation.get("responses", {}).get("200", {}).get("content", {})
    }


def _call_stream(case: AnyCase, base_url: str, session: requests.Session) -> int:
    """Open the stream, take the status code and headers, and hang up (the body never ends)."""
    kwargs = case.as_transport_kwargs(base_url=base_url)
    with session.request(**kwargs, stream=True, timeout=30) as response:
        return response.status_code


def _failures(case: AnyCase, response: Response, checks: list[Any]) -> list[str]:
    """What the checks found wrong with this answer, one line each (empty when it passes)."""
    try:
        case.validate_response(response, checks=checks)
    except FailureGroup as group:
        return [f"{type(f).__name__}: {' '.join(str(f).split())[:300]}" for f in group.exceptions]
    return []


def _exercise(
    operation: AnyOperation,
    mode: GenerationMode,
    examples: int,
    base_url: str,
    known_task: str,
    report: FuzzReport,
    stream: bool,
) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    session = requests.Session()
    strategy = operation.as_strategy(generation_mode=mode, headers={"X-API-Key": FUZZ_KEY})

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: AnyCase) -> None:
        if mode is GenerationMode.POSITIVE:
            _steer(case, report.requests, known_task)
            case.headers["X-API-Key"] = FUZZ_KEY
        else:
            # A schema-violating body can still be a task the server accepts (the document's per-type
            # variants are stricter than the submit's own parsing): it must be a cheap one too.
            _steer_body(case.body, 0)
        if stream:
            status = _call_stream(case, base_url, session)
            report.requests += 1
            report.per_operation[label] += 1
            report.statuses[(label, status)] += 1
            if status >= 500:
                report.server_errors.append(f"{label} -> {status}")
            return
        response = case.call(base_url=base_url, session=session, timeout=30)
        report.requests += 1
        report.per_operation[label] += 1
        report.statuses[(label, response.status_code)] += 1
        for failure in _failures(case, response, [not_a_server_error]):
            report.server_errors.append(f"{label} -> {response.status_code}: {failure}")
        if _failures(case, response, [status_code_conformance]):
            report.undocumented_status[(label, response.status_code)] += 1
        for failure in _failures(case, response, CONFORMANCE_CHECKS):
            report.nonconforming.append(f"{label} -> {response.status_code}: {failure}")

    try:
        run()
    except Unsatisfiable:
        pass  # nothing to generate in this mode (e.g. no parameters that could be made invalid)


def fuzz(raw_schema: dict[str, Any], base_url: str, known_task: str, target: int) -> FuzzReport:
    schema = schemathesis.openapi.from_dict(raw_schema)
    operations: list[AnyOperation] = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    report = FuzzReport()
    streams = _streams(raw_schema)
    # Operations whose input space is small (no parameters) exhaust early; keep topping up the others.
    for round_ in range(1, 6):
        missing = target - report.requests
        if missing <= 0:
            break
        per_operation = math.ceil(missing / len(operations)) * round_
        for operation in operations:
            for mode, share in MODE_SHARE.items():
                examples = max(1, math.ceil(per_operation * share))
                stream = (operation.method.upper(), operation.path) in streams
                _exercise(operation, mode, examples, base_url, known_task, report, stream)
    return report


@dataclass
class FuzzRun:
    target: int
    report: FuzzReport
    # Tasks of other types than test_prompt that the generated requests started (cancelled at once).
    costly_tasks: list[str]


async def _cancel_costly_tasks(temporal: Client, since: datetime) -> list[str]:
    """The fuzzed requests' tasks that are not test_prompt: each would hold a model worker for minutes."""
    query = f'TaskType != "test_prompt" AND StartTime >= "{since.isoformat()}"'
    found = [f"{w.id} ({w.search_attributes})" async for w in temporal.list_workflows(query)]
    async for execution in temporal.list_workflows(f'{query} AND ExecutionStatus = "Running"'):
        await temporal.get_workflow_handle(execution.id).cancel()
    return found


@pytest.fixture(scope="module", params=TARGET_REQUESTS)
async def fuzz_run(stack: Stack, temporal_client: Client, request: pytest.FixtureRequest) -> FuzzRun:
    started = datetime.now(UTC)
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"X-API-Key": FUZZ_KEY}, timeout=30
    ) as client:
        raw = (await client.get("/openapi.json")).json()
        known_task = await submit(client, "test_prompt", {"prompt_template": "fuzz"}, project_id="fuzz")
        await wait_status(client, known_task)
    target: int = request.param
    report = await asyncio.to_thread(fuzz, raw, stack.api_url, known_task, target)
    print(f"\nschemathesis: {report.requests} requests; per operation: {dict(report.per_operation)}")
    print(f"status codes: {dict(sorted(report.statuses.items()))}")
    print(f"undocumented: {dict(sorted(report.undocumented_status.items()))}")
    return FuzzRun(target, report, await _cancel_costly_tasks(temporal_client, started))


def test_generated_tasks_stay_cheap(fuzz_run: FuzzRun) -> None:
    """Every task the fuzzing started is a test_prompt: a model task would keep the session's GPU-queue
    workers busy for its whole time limit and starve the tests after this one."""
    assert not fuzz_run.costly_tasks, fuzz_run.costly_tasks[:5]


def test_no_server_errors_in_the_generated_requests(fuzz_run: FuzzRun) -> None:
    assert fuzz_run.report.requests >= fuzz_run.target
    assert not fuzz_run.report.server_errors, "\n".join(fuzz_run.report.server_errors[:20])


def test_responses_match_their_declared_schema(fuzz_run: FuzzRun) -> None:
    """Content type, body and headers of every answer match the document (for declared status codes)."""
    nonconforming = fuzz_run.report.nonconforming
    assert not nonconforming, "\n".join(sorted(set(nonconforming))[:20])


def test_every_status_code_is_documented(fuzz_run: FuzzRun) -> None:
    undocumented = sorted(
        f"{op} -> {code} (x{n})" for (op, code), n in fuzz_run.report.undocumented_status.items()
    )
    assert not undocumented, "undocumented status codes:\n" + "\n".join(undocumented)
