"""Orchestration overhead of the service: no-op-like `test_prompt` tasks through the REST API.

Prints submit→completed latency (p50/p99) for one task at a time, and completed tasks/s with 1, 16 and
64 submissions in flight. The LLM is the local fake (answers in ~1 ms), so the numbers are the service's
own cost: API, Temporal start, workflow and activity tasks, visibility updates.

    python -m bench.orchestration [--tasks 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from bench._stack import API_KEY, bench_stack, machine_info


async def run_one(client: httpx.AsyncClient, n: int) -> float:
    started = time.perf_counter()
    response = await client.post(
        "/api/v1/tasks/submit",
        json={
            "project_id": f"bench_{n % 40}",
            "task_type": "test_prompt",
            "task_data": {"prompt_template": "noop"},
        },
    )
    response.raise_for_status()
    task_id = response.json()["task_id"]
    while True:
        status = (await client.get(f"/api/v1/tasks/{task_id}/status")).json()
        if status["status"] == "completed":
            return time.perf_counter() - started
        if status["status"] in ("failed", "cancelled"):
            raise RuntimeError(status)
        await asyncio.sleep(0.01)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(client: httpx.AsyncClient, tasks: int, in_flight: int) -> tuple[float, list[float]]:
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def one(n: int) -> None:
        async with gate:
            latencies.append(await run_one(client, n))

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(tasks)))
    return tasks / (time.perf_counter() - started), latencies


async def main(tasks: int) -> None:
    print(f"machine: {machine_info()}")
    async with bench_stack(["default"]) as stack:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(
            base_url=stack.url, headers={"X-API-Key": API_KEY}, limits=limits, timeout=120
        ) as client:
            await measure(client, 10, 2)  # warm-up
            print(f"{'in flight':>10} {'tasks':>6} {'tasks/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
            for in_flight in (1, 16, 64):
                n = 40 if in_flight == 1 else tasks
                rate, latencies = await measure(client, n, in_flight)
                print(
                    f"{in_flight:>10} {n:>6} {rate:>9.1f} {statistics.median(latencies) * 1000:>8.0f} "
                    f"{percentile(latencies, 0.99) * 1000:>8.0f}"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200)
    asyncio.run(main(parser.parse_args().tasks))
