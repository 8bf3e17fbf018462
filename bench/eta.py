"""How right the time estimates are (issue 26): `estimated_completion_at` given at submit vs the real end.

A stack on CPU with the tiny local models: per type a warm-up of ETA_MIN_SAMPLES tasks at mixed sizes (the
learned model needs them), then a mixed stream (images at three sizes and step counts, short and long
videos, voice lines of three lengths, LLM prompts whose time grows with their length) submitted faster than
the workers drain it, so a queue forms. For each measured task: |estimated - actual completion| as a share of
its time from submit to completion; median and p90 per type and overall; then the quote's latency.

    python -m bench.eta [--rounds 3] [--quotes 200] [--types image,video,voice,llm]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench._stack import API_KEY, bench_stack, machine_info
from taskservice.durations import quantile
from tests.support.scripts import build_tiny_models

MIN_SAMPLES = 5


def _llm(k: int) -> dict[str, Any]:
    return {"prompt_template": "x" * (2000 * k) + f" [[sleep={0.4 * k}]]"}


# Each type's variants (small to large): the warm-up runs them round-robin, the stream mixes them.
VARIANTS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "image": (
        "generate_image",
        [
            {"prompt": "a", "resolution": "32x32", "num_inference_steps": 2},
            {"prompt": "b", "resolution": "64x64", "num_inference_steps": 4},
            {"prompt": "c", "resolution": "96x96", "num_inference_steps": 6},
        ],
    ),
    "video": (
        "generate_video",
        [
            {"scene_description": "s", "duration": 1, "fps": 4, "resolution": "64x64", "quality": "draft"},
            {"scene_description": "l", "duration": 3, "fps": 4, "resolution": "64x64", "quality": "draft"},
        ],
    ),
    "voice": (
        "generate_character_voice",
        [{"text": "Hi."}, {"text": "Hello there, how are you?" * 2}, {"text": "A much longer line. " * 8}],
    ),
    "llm": ("test_prompt", [_llm(1), _llm(2), _llm(4)]),
}


async def _submit(api: httpx.AsyncClient, task_type: str, data: dict[str, Any]) -> dict[str, Any]:
    body = {"project_id": "bench_eta", "task_type": task_type, "task_data": data}
    response = await api.post("/api/v1/tasks/submit", json=body)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    answer["submitted_at"] = datetime.now(UTC)
    return answer


async def _finished(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """The task's final status, waiting on each change (no polling: the bench must not load the host)."""
    status = "queued"
    while True:
        params: dict[str, Any] = {"wait": 30, "since_status": status}
        body: dict[str, Any] = (await api.get(f"/api/v1/tasks/{task_id}/status", params=params)).json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        status = body["status"]


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _warm_up(api: httpx.AsyncClient, kinds: list[str]) -> None:
    submitted = []
    for kind in kinds:
        task_type, variants = VARIANTS[kind]
        for i in range(MIN_SAMPLES + 1):
            submitted.append(await _submit(api, task_type, variants[i % len(variants)]))
    await asyncio.gather(*(_finished(api, s["task_id"]) for s in submitted))
    while True:
        models = (await api.get("/api/v1/tasks/estimates")).json()["models"]
        learned = {m["task_type"] for m in models if m["basis"] == "learned"}
        if all(VARIANTS[k][0] in learned for k in kinds):
            return
        await asyncio.sleep(1)


async def _stream(api: httpx.AsyncClient, kinds: list[str], rounds: int) -> dict[str, list[float]]:
    submitted = []
    for _ in range(rounds):
        for kind in kinds:
            task_type, variants = VARIANTS[kind]
            for data in variants:
                answer = await _submit(api, task_type, data)
                submitted.append((kind, answer))
        await asyncio.sleep(0.5)
    ends = await asyncio.gather(*(_finished(api, a["task_id"]) for _, a in submitted))
    errors: dict[str, list[float]] = {}
    parts: dict[str, list[tuple[float, float, float, float]]] = {}
    for (kind, answer), end in zip(submitted, ends, strict=True):
        if end["status"] != "completed" or not answer.get("estimated_completion_at"):
            continue
        actual = (_at(end["completed_at"]) - answer["submitted_at"]).total_seconds()
        off = abs((_at(answer["estimated_completion_at"]) - _at(end["completed_at"])).total_seconds())
        errors.setdefault(kind, []).append(100 * off / max(actual, 1e-3))
        waited = (_at(end["started_at"]) - answer["submitted_at"]).total_seconds()
        estimate = answer["estimate"]
        parts.setdefault(kind, []).append(
            (estimate["wait_p50_s"], waited, estimate["duration_p50_s"], end["processing_time"])
        )
    print("| type | predicted wait s | actual wait s | predicted run s | actual run s | (medians) |")
    print("|---|---|---|---|---|---|")
    for kind, rows in parts.items():
        medians = [quantile([row[i] for row in rows], 0.5) for i in range(4)]
        print(f"| {kind} | " + " | ".join(f"{m:.1f}" for m in medians) + " | |")
    return errors


async def _quotes(api: httpx.AsyncClient, count: int) -> list[float]:
    body = {"project_id": "bench_eta", "task_type": "test_prompt", "task_data": _llm(1)}
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        (await api.post("/api/v1/tasks/quote", json=body)).raise_for_status()
        latencies.append(1000 * (time.perf_counter() - started))
    return latencies


async def main(rounds: int, quotes: int, kinds: list[str]) -> None:
    models = build_tiny_models(names=["tiny-sd", "tiny-video", "tiny-vits"])
    env = {
        "IMAGE_MODEL": str(models["tiny-sd"]),
        "VIDEO_MODEL": str(models["tiny-video"]),
        "TTS_MODEL": str(models["tiny-vits"]),
        "TORCH_DEVICE": "cpu",
        "ETA_MIN_SAMPLES": str(MIN_SAMPLES),
        "WORKER_CONCURRENCY_DEFAULT": "2",
        "WORKER_CONCURRENCY_GPU_MEDIUM": "1",
        "WORKER_CONCURRENCY_GPU_HEAVY": "1",
        "WORKER_CONCURRENCY_CPU_INTENSIVE": "1",
    }
    queues = ["default", "gpu_medium", "gpu_heavy", "cpu_intensive"]
    print(f"machine: {machine_info()}; load before: {os.getloadavg()}")
    async with (
        bench_stack(queues, **env) as stack,
        httpx.AsyncClient(base_url=stack.url, headers={"X-API-Key": API_KEY}, timeout=120) as api,
    ):
        started = time.monotonic()
        await _warm_up(api, kinds)
        print(f"warm-up done in {time.monotonic() - started:.0f} s; load {os.getloadavg()}")
        errors = await _stream(api, kinds, rounds)
        print(f"stream done; load {os.getloadavg()}")
        latencies = await _quotes(api, quotes)
    everything = [e for values in errors.values() for e in values]
    print("| type | tasks | median error % | p90 error % |\n|---|---|---|---|")
    for kind, values in [*errors.items(), ("overall", everything)]:
        if values:
            print(f"| {kind} | {len(values)} | {quantile(values, 0.5):.0f} | {quantile(values, 0.9):.0f} |")
    print(f"quote latency ms: p50 {quantile(latencies, 0.5):.1f}, p99 {quantile(latencies, 0.99):.1f}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quotes", type=int, default=200)
    parser.add_argument("--types", default="image,video,voice,llm")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.quotes, args.types.split(",")))
