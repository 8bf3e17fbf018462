"""Orchestration overhead, one run: bare Temporal (`bench.bare_temporal`), our REST API with the client
polling `/status`, our REST API with the client waiting (`/status?wait=`), our REST API with the client
waiting in the submit itself (`Prefer: wait=`), and FastAPI + Celery + Redis (the seed's architecture,
`bench/baseline_celery/`).

For each row and each level of tasks in flight (1, 16, 64) it prints completed tasks/s and start→completed
latency p50/p99 as the client saw it, side by side with bare Temporal's in the same run; then the CPU each
process spent per task, the Temporal frontend requests per task (from the dev server's metrics) and the
history events per task, for ours and for bare; then where one of our tasks' time goes. The task is
`test_prompt` with the local fake LLM (~1 ms per answer) and a no-op activity for bare, so the numbers are
each stack's own cost. The load average is printed before each stack starts: other work on a shared
machine moves these numbers (compare only within one run).

    python -m bench.orchestration [--tasks 200] [--poll-ms 10] [--only bare,polling,waiting,prefer,celery]
                                  [--api-latency [--api-latency-tasks 10000]]

`--api-latency` then runs `bench.api_latency` (10 000 retained tasks, or `--api-latency-tasks`) in the same
invocation, so that its goals are judged on the same machine state.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.client import Client

from bench import api_latency
from bench._stack import API_KEY, machine_info
from bench.bare_temporal import bare_stack, timed_execute
from bench.orchestration_stacks import (
    CpuMeter,
    Service,
    celery_stack,
    history_events_per_task,
    missing_redis_tools,
    our_stack,
    temporal_frontend_requests,
)
from bench.phases import PHASES, TaskTiming, breakdown

LEVELS = (1, 16, 64)
ROWS = ("bare", "polling", "waiting", "prefer", "celery")
TASK_DATA = {"prompt_template": "noop"}
TERMINAL = ("completed", "failed", "cancelled")
WAIT_S = 60


# --- the clients -----------------------------------------------------------------------------------------


async def submit(
    client: httpx.AsyncClient, n: int, headers: dict[str, str] | None = None
) -> tuple[dict[str, Any], float, float]:
    """(the answer, wall clock before, perf counter before)."""
    wall, started = time.time(), time.perf_counter()
    body = {"project_id": f"bench_{n % 40}", "task_type": "test_prompt", "task_data": TASK_DATA}
    response = await client.post("/api/v1/tasks/submit", json=body, headers=headers)
    response.raise_for_status()
    return response.json(), wall, started


async def run_polling(client: httpx.AsyncClient, n: int, poll_s: float) -> TaskTiming:
    """Submit, then read `/status` every `poll_s` until the task has finished."""
    answer, wall, started = await submit(client, n)
    task_id, submit_s = answer["task_id"], time.perf_counter() - started
    polls = 0
    while True:
        polls += 1
        try:
            reply = await client.get(f"/api/v1/tasks/{task_id}/status")
        except httpx.TransportError:  # a kept-alive connection closed under us: read again
            continue
        reply.raise_for_status()
        status = reply.json()["status"]
        if status in TERMINAL:
            return _finished(task_id, status, wall, started, submit_s, polls)
        await asyncio.sleep(poll_s)


async def run_waiting(client: httpx.AsyncClient, n: int, prefer: bool = False) -> TaskTiming:
    """Submit (with `Prefer: wait=`: waiting in the submit itself), then wait on `/status?wait=` for each
    change of status until the task has finished."""
    answer, wall, started = await submit(client, n, {"Prefer": f"wait={WAIT_S}"} if prefer else None)
    task_id, submit_s = answer["task_id"], time.perf_counter() - started
    status, waits = answer["status"], 0
    while status not in TERMINAL:
        waits += 1
        params: dict[str, str | int] = {"wait": WAIT_S, "since_status": status}
        try:
            reply = await client.get(f"/api/v1/tasks/{task_id}/status", params=params)
        except httpx.TransportError:
            continue
        reply.raise_for_status()
        status = reply.json()["status"]
    return _finished(task_id, status, wall, started, submit_s, waits)


def _finished(task_id: str, status: str, wall: float, started: float, submit_s: float, n: int) -> TaskTiming:
    if status != "completed":
        raise RuntimeError(f"task {task_id} ended {status}")
    return TaskTiming(task_id, wall, submit_s, time.perf_counter() - started, n)


async def run_bare(client: Client) -> TaskTiming:
    workflow_id, wall, latency = await timed_execute(client)
    return TaskTiming(workflow_id, wall, 0.0, latency, 1)


# --- one row ---------------------------------------------------------------------------------------------


@dataclass
class LevelResult:
    row: str
    in_flight: int
    tasks: int
    rate: float
    timings: list[TaskTiming]
    cpu_ms_per_task: dict[str, float] = field(default_factory=dict)
    rpcs_per_task: dict[str, float] = field(default_factory=dict)
    events_per_task: float | None = None

    @property
    def p50_ms(self) -> float:
        return statistics.median(t.latency_s for t in self.timings) * 1000

    @property
    def p99_ms(self) -> float:
        ordered = sorted(t.latency_s for t in self.timings)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000


async def measure(one: Callable[[int], Awaitable[TaskTiming]], tasks: int, in_flight: int) -> LevelResult:
    gate = asyncio.Semaphore(in_flight)
    timings: list[TaskTiming] = []

    async def gated(n: int) -> None:
        async with gate:
            timings.append(await one(n))

    started = time.perf_counter()
    await asyncio.gather(*(gated(n) for n in range(tasks)))
    return LevelResult("", in_flight, tasks, tasks / (time.perf_counter() - started), timings)


async def bench_row(
    row: str, one: Callable[[int], Awaitable[TaskTiming]], pids: dict[str, int], tasks: int
) -> list[LevelResult]:
    await asyncio.wait_for(measure(one, 10, 2), 120)  # warm-up (and worker ready)
    results = []
    temporal_pid = pids.get("Temporal dev server")
    for in_flight in LEVELS:
        n = 40 if in_flight == 1 else tasks
        requests_before = temporal_frontend_requests(temporal_pid) if temporal_pid else Counter()
        meter = CpuMeter(pids)
        meter.start()
        result = await measure(one, n, in_flight)
        result.row, result.cpu_ms_per_task = row, meter.per_task(n)
        if temporal_pid:
            await asyncio.sleep(1.5)  # the dev server's metrics are reported once a second
            requests = temporal_frontend_requests(temporal_pid) - requests_before
            result.rpcs_per_task = {op: count / n for op, count in requests.most_common()}
        results.append(result)
        mean_requests = statistics.mean(t.requests for t in result.timings)
        print(
            f"  {row:<8} {in_flight:>3} in flight: {result.rate:6.1f} tasks/s, p50 {result.p50_ms:5.0f} ms, "
            f"p99 {result.p99_ms:6.0f} ms, {mean_requests:.1f} status requests/task",
            flush=True,
        )
    return results


def load_line(what: str) -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average before {what}: {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


async def run_ours(rows: set[str], tasks: int, poll_s: float) -> tuple[list[LevelResult], dict[str, float]]:
    results: list[LevelResult] = []
    phases: dict[str, float] = {}
    print(load_line("ours"), flush=True)
    async with our_stack() as service, _api_client(service) as client:
        clients: dict[str, Callable[[int], Awaitable[TaskTiming]]] = {
            "polling": lambda n: run_polling(client, n, poll_s),
            "waiting": lambda n: run_waiting(client, n),
            "prefer": lambda n: run_waiting(client, n, prefer=True),
        }
        for row, one in clients.items():
            if row not in rows:
                continue
            level = await bench_row(row, one, service.pids, tasks)
            assert service.temporal_address is not None
            level[0].events_per_task = await history_events_per_task(
                service.temporal_address, [t.task_id for t in level[0].timings]
            )
            results += level
        assert service.temporal_address is not None
        waited = [r for r in results if r.row == "waiting" and r.in_flight == 1]
        if waited:
            phases = await breakdown(service.temporal_address, waited[0].timings)
        await check_counted(client, 10 * len(results) // 3 + sum(r.tasks for r in results))
    return results, phases


async def check_counted(client: httpx.AsyncClient, submitted: int) -> None:
    """Every finished task must reach the metrics workflow (it counts from visibility every 2 s, 3 s late)."""
    metrics: dict[str, int] = {}
    for _ in range(40):
        metrics = (await client.get("/api/v1/tasks/metrics")).json()["metrics"]
        if metrics["completed_tasks"] >= submitted:
            break
        await asyncio.sleep(0.5)
    print(f"  metrics workflow counted {metrics.get('completed_tasks')} completed of {submitted} submitted")


def _api_client(service: Service) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=200, keepalive_expiry=2)  # < uvicorn keep-alive 5 s
    return httpx.AsyncClient(
        base_url=service.url, headers={"X-API-Key": API_KEY}, limits=limits, timeout=WAIT_S + 60
    )


async def run_bare_row(tasks: int) -> list[LevelResult]:
    print(load_line("bare Temporal"), flush=True)
    async with bare_stack() as bare:
        results = await bench_row("bare", lambda n: run_bare(bare.client), bare.pids, tasks)
        results[0].events_per_task = await history_events_per_task(
            bare.address, [t.task_id for t in results[0].timings]
        )
    return results


async def run_celery(tasks: int, poll_s: float) -> list[LevelResult]:
    print(load_line("celery"), flush=True)
    async with celery_stack("threads") as service, _api_client(service) as client:
        return await bench_row("celery", lambda n: run_polling(client, n, poll_s), service.pids, tasks)


# --- report ----------------------------------------------------------------------------------------------


def print_side_by_side(results: list[LevelResult]) -> None:
    by = {(r.row, r.in_flight): r for r in results}
    rows = [row for row in ROWS if any(r.row == row for r in results)]
    print("\ntasks/s (x bare) and p50 / p99 ms, one run:")
    print(f"{'in flight':>9}  " + "  ".join(f"{row:>28}" for row in rows))
    for level in LEVELS:
        cells = []
        for row in rows:
            r, bare = by.get((row, level)), by.get(("bare", level))
            ratio = f" ({r.rate / bare.rate:.2f}x)" if r and bare else ""
            cells.append(f"{r.rate:5.1f}{ratio} {r.p50_ms:4.0f}/{r.p99_ms:5.0f}" if r else "-")
        print(f"{level:>9}  " + "  ".join(f"{c:>28}" for c in cells))


def print_costs(results: list[LevelResult]) -> None:
    print("\nCPU ms per completed task, by process:")
    for r in results:
        parts = ", ".join(f"{name} {ms:.1f}" for name, ms in r.cpu_ms_per_task.items())
        print(f"  {r.row:<8} @ {r.in_flight:>2}: total {sum(r.cpu_ms_per_task.values()):6.1f} ({parts})")
    print("\nTemporal frontend requests per completed task (every client of the dev server together):")
    for r in results:
        if r.rpcs_per_task:
            total = sum(r.rpcs_per_task.values())
            parts = ", ".join(f"{op} {n:.1f}" for op, n in r.rpcs_per_task.items() if n >= 0.05)
            print(f"  {r.row:<8} @ {r.in_flight:>2}: {total:5.1f} ({parts})")
    print("\nhistory events per task (the tasks at 1 in flight):")
    for r in results:
        if r.events_per_task is not None:
            print(f"  {r.row:<8}: {r.events_per_task:.1f}")


def print_goals(results: list[LevelResult]) -> None:
    by = {(r.row, r.in_flight): r for r in results}
    for row in ("waiting", "prefer"):
        if ("bare", 1) not in by or (row, 1) not in by:
            continue
        print(f"\ngoals (ours {row} against bare, this run):")
        for level in (16, 64):
            ratio = by[(row, level)].rate / by[("bare", level)].rate
            print(
                f"  throughput at {level:>2} in flight >= 0.80x bare: {ratio:.2f}x {_verdict(ratio >= 0.8)}"
            )
        ours = sum(by[(row, 16)].rpcs_per_task.values())
        bare = sum(by[("bare", 16)].rpcs_per_task.values())
        verdict = _verdict(ours <= 1.5 * bare)
        print(f"  frontend requests per task <= 1.5x bare (16 in flight): {ours / bare:.2f}x {verdict}")
        p50, bare_p50 = by[(row, 1)].p50_ms, by[("bare", 1)].p50_ms
        verdict = _verdict(p50 <= bare_p50 + 20)
        print(f"  p50 at 1 in flight <= bare + 20 ms: {p50:.0f} vs {bare_p50:.0f} ms {verdict}")


def _verdict(met: bool) -> str:
    return "(met)" if met else "(missed)"


async def main(args: argparse.Namespace) -> None:
    rows = set(args.only.split(",")) if args.only else set(ROWS)
    missing = missing_redis_tools() if "celery" in rows else None
    if missing:  # said before any row runs, not as a FileNotFoundError after the others
        raise SystemExit(f"bench.orchestration: {missing}")
    print(f"machine: {machine_info()}")
    poll_s = args.poll_ms / 1000
    results: list[LevelResult] = []
    if "bare" in rows:
        results += await run_bare_row(args.tasks)
    ours, phases = await run_ours(rows, args.tasks, poll_s)
    results += ours
    if "celery" in rows:
        results += await run_celery(args.tasks, poll_s)
    print_side_by_side(results)
    print_costs(results)
    print_goals(results)
    if phases:
        print("\nwhere one task's time goes (ours waiting, 1 in flight, medians):")
        for name, label in PHASES:
            if name in phases:
                print(f"  {phases[name] * 1000:7.1f} ms  {label}")
    if args.api_latency:
        print(f"\n{load_line('the API latency bench')}", flush=True)
        await api_latency.main(api_latency.parser().parse_args(["--tasks", str(args.api_latency_tasks)]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200, help="tasks per level at 16 and 64 in flight")
    parser.add_argument("--poll-ms", type=float, default=10, help="the polling client's interval")
    parser.add_argument("--only", help=f"comma-separated rows among {','.join(ROWS)}")
    parser.add_argument("--api-latency", action="store_true", help="then run bench.api_latency")
    parser.add_argument(
        "--api-latency-tasks", type=int, default=10_000, help="tasks bench.api_latency retains"
    )
    asyncio.run(main(parser.parse_args()))
