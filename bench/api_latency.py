"""API latency with a retained history: submit, status and project-list p50/p99 with 10 000 tasks kept.

Fills the stack with `--tasks` test_prompt tasks (1 000 in project `lat_large`, 100 in `lat_small`, the rest
spread ~100 per project), waits for the worker to finish them, then times one request at a time:

- submit (`POST /api/v1/tasks/submit`), back to back and paced (`--pause` after each), goal p99 <= 50 ms
- status of a random retained task (`GET /api/v1/tasks/{id}/status`), goal p99 <= 20 ms
- project list, first page of 20 (`GET /api/v1/projects/{id}/tasks`), ~100 and ~1 000 tasks, and page 10
  of the ~1 000: p99 <= 100 ms
- pages 10 and 40 of the ~1 000 at the store (no HTTP), bracketed by counts as the API does and read
  through as it did before, side by side
- the two projects counted and their first 20 rows listed in visibility by `TaskScope` (the API's query)
  and by `ProjectId` + `TaskOwner` (before), side by side

`--fill store` (default) submits with the API's own `TaskService.submit` (same validation, memo, search
attributes and workflow as a REST submit, without HTTP — faster to fill); `--fill api` submits
them through the REST API instead.

    python -m bench.api_latency [--tasks 10000] [--fill store|api] [--samples 300]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx
from temporalio.client import Client

from api.domain.caller import DEFAULT_TENANT, Caller
from api.domain.commands import StartTask
from api.service.quotas import Quotas
from api.service.tasks import TaskService
from api.store.projection import TaskView
from api.store.store import TaskStore
from bench._stack import API_KEY, BenchStack, bench_stack, machine_info
from taskservice.settings import Settings
from taskservice.visibility import TaskQuery

TASK_DATA = {"prompt_template": "noop"}
TEST_PROMPT = 'TaskType = "test_prompt"'
GOALS_MS = {"submit, back to back": 50.0, "submit, paced": 50.0, "status": 20.0}
GOALS_MS |= {"project list (~100 tasks)": 100.0, "project list (~1000 tasks)": 100.0}
GOALS_MS["project list (~1000), page 10"] = 100.0


def project_of(n: int) -> str:
    if n < 1000:
        return "lat_large"
    if n < 1100:
        return "lat_small"
    return f"fill_{n % 89}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def fill_with_store(stack: BenchStack, tasks: int, in_flight: int) -> list[str]:
    client = await Client.connect(stack.temporal.address)
    # The API's own submit (validation, per-project count, start, queue position) minus HTTP, with the
    # settings of the stack's API process that it uses (retry plan, per-project limit).
    settings = Settings(
        task_retry_initial_interval=0.3, max_concurrent_per_project=100_000, rate_limit_submit_per_min=10**9
    )
    service = TaskService(TaskStore(client), settings, Quotas(settings))
    caller = Caller(tenant=DEFAULT_TENANT)
    gate = asyncio.Semaphore(in_flight)
    ids: list[str] = []

    async def one(n: int) -> None:
        command = StartTask(
            tenant=caller.tenant,
            user=None,
            project_id=project_of(n),
            task_type="test_prompt",
            task_data=TASK_DATA,
        )
        async with gate:
            submitted = await service.submit(caller, command)
        ids.append(submitted.view.task_id)

    await asyncio.gather(*(one(n) for n in range(tasks)))
    return ids


async def fill_with_api(api: httpx.AsyncClient, tasks: int, in_flight: int) -> list[str]:
    gate = asyncio.Semaphore(in_flight)
    ids: list[str] = []

    async def one(n: int) -> None:
        async with gate:
            body = {"project_id": project_of(n), "task_type": "test_prompt", "task_data": TASK_DATA}
            response = await api.post("/api/v1/tasks/submit", json=body)
            response.raise_for_status()
            ids.append(response.json()["task_id"])

    await asyncio.gather(*(one(n) for n in range(tasks)))
    return ids


async def wait_drained(stack: BenchStack, timeout: float) -> tuple[int, int]:
    """Wait until no test_prompt task is unfinished; returns (finished, unfinished) at the end."""
    client = await Client.connect(stack.temporal.address)
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        running = (
            await client.count_workflows('TaskType = "test_prompt" AND ExecutionStatus = "Running"')
        ).count
        done = (
            await client.count_workflows('TaskType = "test_prompt" AND ExecutionStatus != "Running"')
        ).count
        if running == 0 or time.monotonic() > deadline:
            return done, running
        if time.monotonic() - last_report > 30:
            print(f"  draining: {done} finished, {running} unfinished", flush=True)
            last_report = time.monotonic()
        await asyncio.sleep(2)


async def timed(call: Callable[[], Awaitable[object]], samples: int, pause_s: float = 0.0) -> list[float]:
    out: list[float] = []
    for _ in range(samples):
        began = time.perf_counter()
        response = await call()
        out.append((time.perf_counter() - began) * 1000)
        if isinstance(response, httpx.Response):
            response.raise_for_status()
        await asyncio.sleep(pause_s)
    return out


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine_info()}")
    async with bench_stack(["default"]) as stack:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(
            base_url=stack.url, headers={"X-API-Key": API_KEY}, limits=limits, timeout=120
        ) as api:
            began = time.monotonic()
            if args.fill == "api":
                ids = await fill_with_api(api, args.tasks, 64)
            else:
                ids = await fill_with_store(stack, args.tasks, 64)
            filled = time.monotonic() - began
            print(f"filled {len(ids)} tasks via {args.fill} in {filled:.0f} s", flush=True)
            done, unfinished = await wait_drained(stack, args.drain_timeout)
            print(f"retained: {done} finished, {unfinished} unfinished ({time.monotonic() - began:.0f} s)")
            await asyncio.sleep(2)  # let visibility settle

            body = {"project_id": "lat_submit", "task_type": "test_prompt", "task_data": TASK_DATA}
            sample_ids = random.Random(1).choices(ids, k=args.samples)
            picks = iter(sample_ids)
            # Each submitted task runs on the worker right away (~95 ms of CPU across server, worker and API,
            # see RESULTS.md), so back-to-back submits also measure a saturated 2-core machine; paced ones,
            # with a pause after each, measure the submit path itself. Both are reported.
            results = {
                "submit, back to back": await timed(
                    lambda: api.post("/api/v1/tasks/submit", json=body), args.samples
                ),
            }
            await wait_drained(stack, args.drain_timeout)
            results["submit, paced"] = await timed(
                lambda: api.post("/api/v1/tasks/submit", json=body), args.samples, args.pause
            )
            await wait_drained(stack, args.drain_timeout)
            results["status"] = await timed(
                lambda: api.get(f"/api/v1/tasks/{next(picks)}/status"), args.samples
            )
            lists = max(50, args.samples // 3)
            results["project list (~100 tasks)"] = await timed(
                lambda: api.get("/api/v1/projects/lat_small/tasks"), lists
            )
            results["project list (~1000 tasks)"] = await timed(
                lambda: api.get("/api/v1/projects/lat_large/tasks"), lists
            )
            results["project list (~1000), page 10"] = await timed(
                lambda: api.get("/api/v1/projects/lat_large/tasks", params={"page": 10}), lists
            )
            # Side by side on the same data, at the store (no HTTP): a deep page bracketed by counts (what
            # the API does) against reading every row before it in start-time order (what it did before).
            store = TaskStore(await Client.connect(stack.temporal.address))
            large = TaskQuery(project_id="lat_large")
            deep: dict[str, tuple[list[float], list[float]]] = {}
            for page in (10, 40):
                bracketed = await timed(functools.partial(store.page, large, page=page, limit=20), lists)
                read_through = await timed(functools.partial(read_every_row, store, large, page, 20), lists)
                deep[f"page {page} of 20"] = (bracketed, read_through)
            scoped = {
                name: await scope_vs_pair(store.client, name, lists) for name in ("lat_small", "lat_large")
            }
            totals = {
                name: (await api.get(f"/api/v1/projects/{name}/tasks")).json()["pagination"]["total"]
                for name in ("lat_small", "lat_large")
            }
    print(f"\nproject sizes: {totals}; one request at a time")
    print(f"{'request':<32} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'goal p99':>9} {'p99/goal':>9}")
    for name, samples in results.items():
        p99 = percentile(samples, 0.99)
        print(
            f"{name:<32} {len(samples):>5} {statistics.median(samples):>8.1f} {p99:>8.1f} "
            f"{GOALS_MS[name]:>9.0f} {p99 / GOALS_MS[name]:>8.2f}x"
        )
    print("\ndeep pages of the ~1000-task project, at the store, same run (p50 / p99 ms)")
    print(f"{'page':<14} {'bracketed':>18} {'every row before':>18} {'p50 ratio':>10}")
    for name, (bracketed, read_through) in deep.items():
        ratio = statistics.median(read_through) / statistics.median(bracketed)
        print(
            f"{name:<14} {statistics.median(bracketed):>8.1f} / {percentile(bracketed, 0.99):>7.1f} "
            f"{statistics.median(read_through):>8.1f} / {percentile(read_through, 0.99):>7.1f} {ratio:>9.1f}x"
        )
    print("\na tenant's project in visibility, same run (p50 / p99 ms): one TaskScope value vs the pair")
    for project, timings in scoped.items():
        for what in ("count", "20 rows"):
            one, pair = timings[f"TaskScope {what}"], timings[f"ProjectId+TaskOwner {what}"]
            print(
                f"{project:<10} {what:<8} TaskScope {statistics.median(one):>7.1f} / "
                f"{percentile(one, 0.99):>7.1f}"
                f"   pair {statistics.median(pair):>7.1f} / {percentile(pair, 0.99):>7.1f}"
                f"   p50 ratio {statistics.median(pair) / statistics.median(one):>5.1f}x"
            )


async def scope_vs_pair(client: Client, project: str, samples: int) -> dict[str, list[float]]:
    """A tenant's project counted and its first 20 rows listed the way the API queries it (`TaskScope`,
    one exact value) and the way it did before (`ProjectId` and `TaskOwner`), on the same data."""
    forms = {
        "TaskScope": str(TaskQuery(tenant=DEFAULT_TENANT, project_id=project)),
        "ProjectId+TaskOwner": (
            f'WorkflowType = "TaskWorkflow" AND ProjectId = "{project}" AND TaskOwner = "{DEFAULT_TENANT}"'
        ),
    }
    out: dict[str, list[float]] = {}
    for form, query in forms.items():
        out[f"{form} count"] = await timed(functools.partial(client.count_workflows, query), samples)
        out[f"{form} 20 rows"] = await timed(functools.partial(first_rows, client, query, 20), samples)
    return out


async def first_rows(client: Client, query: str, rows: int) -> int:
    listed = [execution async for execution in client.list_workflows(query, page_size=rows, limit=rows)]
    return len(listed)


async def read_every_row(store: TaskStore, query: TaskQuery, page: int, limit: int) -> list[TaskView]:
    """A page as the API read it before counts bracketed deep pages: the newest page × limit, then sliced."""
    total = asyncio.create_task(store.count(query))
    views = await store.newest(query, page * limit)
    await total
    return views[(page - 1) * limit :]


def parser() -> argparse.ArgumentParser:
    parsing = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parsing.add_argument("--tasks", type=int, default=10_000)
    parsing.add_argument("--fill", choices=["store", "api"], default="store")
    parsing.add_argument("--samples", type=int, default=300)
    parsing.add_argument("--drain-timeout", type=float, default=3600)
    parsing.add_argument("--pause", type=float, default=0.25, help="seconds after each paced submit")
    return parsing


if __name__ == "__main__":
    asyncio.run(main(parser().parse_args()))
