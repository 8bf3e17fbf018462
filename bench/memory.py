"""Memory: RSS of the API and of each worker (supervisor and its worker child), idle and under load.

Starts the stack with all four queues' workers, samples RSS (psutil) when idle, then while `--tasks`
test_prompt tasks run with `--in-flight` submissions in flight (every worker also runs workflow tasks of the
shared `task-workflows` queue), and prints idle and peak RSS per process. The Temporal dev server is listed
for scale; it is not part of a deployment's API or worker footprint.

    python -m bench.memory [--tasks 300] [--in-flight 32]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
import psutil

from bench._stack import API_KEY, BenchStack, bench_stack, machine_info

QUEUES = ["default", "cpu_intensive", "gpu_medium", "gpu_heavy"]


def processes(stack: BenchStack) -> dict[str, psutil.Process]:
    """Named processes: the API, each worker supervisor and its worker child(ren), Temporal."""
    out: dict[str, psutil.Process] = {"API": psutil.Process(stack.processes["api"].pid)}
    for queue in QUEUES:
        supervisor = psutil.Process(stack.processes[queue].pid)
        out[f"worker {queue}: supervisor"] = supervisor
        for i, child in enumerate(supervisor.children(recursive=True)):
            out[f"worker {queue}: worker" + (f" #{i + 1}" if i else "")] = child
    assert stack.temporal.process is not None
    out["(Temporal dev server)"] = psutil.Process(stack.temporal.process.pid)
    return out


def rss_mb(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, proc in procs.items():
        try:
            out[name] = proc.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            out[name] = 0.0
    return out


async def load(url: str, tasks: int, in_flight: int) -> float:
    gate = asyncio.Semaphore(in_flight)
    body = {"project_id": "mem", "task_type": "test_prompt", "task_data": {"prompt_template": "noop"}}
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": API_KEY}, timeout=120, limits=httpx.Limits(max_connections=100)
    ) as client:

        async def one() -> None:
            async with gate:
                response = await client.post("/api/v1/tasks/submit", json=body)
                response.raise_for_status()
                task_id = response.json()["task_id"]
                while (await client.get(f"/api/v1/tasks/{task_id}/status")).json()["status"] != "completed":
                    await asyncio.sleep(0.1)

        began = time.monotonic()
        await asyncio.gather(*(one() for _ in range(tasks)))
        return time.monotonic() - began


async def main(tasks: int, in_flight: int) -> None:
    print(f"machine: {machine_info()}")
    async with bench_stack(QUEUES) as stack:
        await asyncio.sleep(5)  # workers finish importing and report in
        procs = processes(stack)
        idle = rss_mb(procs)
        peak = dict(idle)
        running = asyncio.create_task(load(stack.url, tasks, in_flight))
        while not running.done():
            for name, value in rss_mb(procs).items():
                peak[name] = max(peak[name], value)
            await asyncio.sleep(0.25)
        seconds = running.result()
        after = rss_mb(procs)
    print(f"\nload: {tasks} test_prompt tasks, {in_flight} in flight, {seconds:.0f} s")
    print(f"{'process':<34} {'idle MB':>8} {'peak MB':>8} {'after MB':>9}")
    for name in procs:
        print(f"{name:<34} {idle[name]:>8.0f} {peak[name]:>8.0f} {after[name]:>9.0f}")
    service = [n for n in procs if not n.startswith("(")]
    print(
        f"{'total (API + workers)':<34} {sum(idle[n] for n in service):>8.0f} "
        f"{sum(peak[n] for n in service):>8.0f} {sum(after[n] for n in service):>9.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.in_flight))
