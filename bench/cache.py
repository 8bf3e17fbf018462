"""What the render cache saves: a stream of image requests, a share of them repeats of earlier ones.

For each repeat share (0 %, 30 %, 70 %) one stream of N generate_image requests (tiny SD, 64x64, seeded) runs
twice on one stack, with `cache: auto` and with `cache: off`, K in flight, each submitted with
`Prefer: wait=60`. Reported per run: wall time, GPU-queue busy time (the sum of the processing times of the
tasks that rendered: hits and coalesced tasks take none), hits (from an entry / coalesced), and the latency
of the hits end to end (submit → finished answer) at p50 and p99.

    python -m bench.cache [--requests 100] [--in-flight 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench._stack import API_KEY, bench_stack, machine_info
from tests.support.scripts import build_tiny_models

SHARES = (0.0, 0.3, 0.7)


@dataclass
class Run:
    wall_s: float = 0.0
    busy_s: float = 0.0
    hits: int = 0
    coalesced: int = 0
    hit_latencies_ms: list[float] = field(default_factory=list)
    # Tasks not finished within the submit's 60 s wait.
    late: int = 0

    def row(self, label: str) -> str:
        lat = sorted(self.hit_latencies_ms)
        p50 = f"{statistics.median(lat):.0f}" if lat else "—"
        p99 = f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.0f}" if lat else "—"
        hits = f"{self.hits} / {self.coalesced}"
        return f"| {label} | {self.wall_s:.1f} | {self.busy_s:.1f} | {hits} | {p50} / {p99} | {self.late} |"


def stream(requests: int, share: float, seed: int) -> list[dict[str, Any]]:
    """N task_data, each a repeat of an earlier one with probability `share`."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    bodies: list[dict[str, Any]] = []
    for index in range(requests):
        if bodies and rng.random() < share:
            bodies.append(rng.choice(bodies))
        else:
            bodies.append({"prompt": f"shot {run} {index}", "resolution": "64x64", "num_inference_steps": 4,
                           "seed": index})  # fmt: skip
    return bodies


async def run_stream(
    client: httpx.AsyncClient, bodies: list[dict[str, Any]], mode: str, in_flight: int
) -> Run:
    result = Run()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def one(data: dict[str, Any]) -> None:
        body = {"project_id": "bench_cache", "task_type": "generate_image", "task_data": data, "cache": mode}
        began = time.perf_counter()
        answer = await client.post("/api/v1/tasks/submit", json=body, headers={"Prefer": "wait=60"})
        elapsed_ms = (time.perf_counter() - began) * 1000
        status = answer.json()
        if status.get("status") not in ("completed", "failed", "cancelled"):
            result.late += 1  # not finished within Prefer's 60 s: wait on (reported, never hidden)
            status = await finished(client, status["task_id"])
        if status.get("status") != "completed":
            raise RuntimeError(f"task did not complete: {status}")
        cache = (status.get("result") or {}).get("cache") or {}
        if cache.get("hit"):
            result.hits += not cache.get("coalesced")
            result.coalesced += bool(cache.get("coalesced"))
            if not cache.get("coalesced"):
                result.hit_latencies_ms.append(elapsed_ms)
        else:
            result.busy_s += status.get("processing_time") or 0.0

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    result.wall_s = time.perf_counter() - began
    return result


async def finished(client: httpx.AsyncClient, task_id: str, limit_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status: dict[str, Any] = (await client.get(f"/api/v1/tasks/{task_id}/status?wait=30")).json()
        if status.get("status") in ("completed", "failed", "cancelled"):
            return status
    raise RuntimeError(f"task {task_id} did not finish in {limit_s:.0f} s more: {status}")


async def main(requests: int, in_flight: int) -> None:
    models = build_tiny_models()
    env = {"IMAGE_MODEL": str(models["tiny-sd"]), "TORCH_DEVICE": "cpu", "IMAGE_MAX_BATCH": "1"}
    print(f"Machine: {machine_info()}; load before: {os.getloadavg()}")
    async with bench_stack(["gpu_medium"], **env) as stack:
        headers = {"X-API-Key": API_KEY}
        async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=120) as client:
            warm = stream(2, 0.0, 0)
            await run_stream(client, warm, "off", 1)  # model load
            print("| stream | wall s | GPU busy s | hits / coalesced | hit latency p50 / p99 ms | > 60 s |")
            print("|---|---|---|---|---|---|")
            for share in SHARES:
                for mode in ("off", "auto"):
                    bodies = stream(requests, share, seed=int(share * 100))
                    run = await run_stream(client, bodies, mode, in_flight)
                    print(run.row(f"{share:.0%} repeats, cache {mode}"), flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.in_flight))
