"""How right the time estimates are (issue 26): `estimated_completion_at` given at submit vs the real end.

A stack on CPU with the tiny local models: per type a warm-up of ETA_MIN_SAMPLES tasks at mixed sizes (the
learned model needs them), then a mixed stream (images at three sizes and step counts, short and long
videos, voice lines of three lengths, LLM prompts whose time grows with their length) submitted faster than
the workers drain it, so a queue forms. For each measured task: |estimated - actual completion| as a share of
its time from submit to completion; median and p90 per type and overall; then the quote's latency.

    python -m bench.eta [--rounds 3] [--quotes 200] [--types image,video,voice,llm] [--isolate] [--gap 0.2]
                        [--sizes seconds|tiny] [--detail]

On one small host every worker shares its cores, so a video slows while images and voices run beside it,
which workers on devices of their own never see: `--isolate` pins the gpu_heavy worker to CPU 0 and the
gpu_medium and cpu_intensive workers to CPU 1, each with one torch thread (the API, Temporal and the LLM
worker float). BENCH_LOGS=<folder> keeps the services' logs.
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


def _llm(k: float, sleep_per_k: float) -> dict[str, Any]:
    return {"prompt_template": "x" * int(2000 * k) + f" [[sleep={sleep_per_k * k}]]"}


def _image(prompt: str, side: int, steps: int) -> dict[str, Any]:
    return {"prompt": prompt, "resolution": f"{side}x{side}", "num_inference_steps": steps}


def _video(scene: str, seconds: int, side: int) -> dict[str, Any]:
    return {
        "scene_description": scene,
        "duration": seconds,
        "fps": 4,
        "resolution": f"{side}x{side}",
        "quality": "draft",
    }


def _line(text: str, times: int) -> dict[str, Any]:
    return {"text": text * times}


Variants = dict[str, tuple[str, list[dict[str, Any]]]]
# Each type's variants (small to large): the warm-up runs them round-robin, the stream mixes them.
# `tiny`: runs 1-5 of bench/RESULTS.md, most tasks under a second, where the orchestration's own jitter
# (~0.1-0.5 s per step on this host) is most of the error. `seconds`: the same shapes grown until each task
# runs ~0.5-8 s on this CPU, as real renders run seconds to minutes on a GPU.
SIZES: dict[str, Variants] = {
    "tiny": {
        "image": ("generate_image", [_image("a", 32, 2), _image("b", 64, 4), _image("c", 96, 6)]),
        "video": ("generate_video", [_video("s", 1, 64), _video("l", 3, 64)]),
        "voice": (
            "generate_character_voice",
            [_line("Hi.", 1), _line("Hello there, how are you?", 2), _line("A much longer line. ", 8)],
        ),
        "llm": ("test_prompt", [_llm(1, 0.4), _llm(2, 0.4), _llm(4, 0.4)]),
    },
    "seconds": {
        "image": ("generate_image", [_image("a", 96, 6), _image("b", 128, 8), _image("c", 160, 12)]),
        "video": ("generate_video", [_video("s", 1, 64), _video("l", 3, 64)]),
        "voice": (
            "generate_character_voice",
            [_line("Hello there. ", 4), _line("A longer line. ", 12), _line("The longest one. ", 30)],
        ),
        "llm": ("test_prompt", [_llm(1, 1.0), _llm(2, 1.0), _llm(4, 1.0)]),
    },
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


async def _warm_up(api: httpx.AsyncClient, variants: Variants) -> None:
    submitted = []
    for task_type, shapes in variants.values():
        for i in range(MIN_SAMPLES + 1):
            submitted.append(await _submit(api, task_type, shapes[i % len(shapes)]))
    await asyncio.gather(*(_finished(api, s["task_id"]) for s in submitted))
    while True:
        models = (await api.get("/api/v1/tasks/estimates")).json()["models"]
        learned = {m["task_type"] for m in models if m["basis"] == "learned"}
        if all(task_type in learned for task_type, _ in variants.values()):
            return
        await asyncio.sleep(1)


async def _stream(
    api: httpx.AsyncClient, variants: Variants, rounds: int, gap_s: float, detail: bool
) -> dict[str, list[float]]:
    """Submit the rounds (`gap_s` between submits), wait for every task, and return each type's errors."""
    submitted = []
    for _ in range(rounds):
        for kind, (task_type, shapes) in variants.items():
            for data in shapes:
                answer = await _submit(api, task_type, data)
                submitted.append((kind, answer))
                await asyncio.sleep(gap_s)
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
        if detail:
            at = (answer["submitted_at"] - submitted[0][1]["submitted_at"]).total_seconds()
            print(
                f"  {kind:6} at {at:5.1f}s wait {estimate['wait_p50_s']:5.1f}/{waited:5.1f} "
                f"run {estimate['duration_p50_s']:5.1f}/{end['processing_time']:5.1f} "
                f"error {errors[kind][-1]:4.0f}%"
            )
    print("| type | predicted wait s | actual wait s | predicted run s | actual run s | (medians) |")
    print("|---|---|---|---|---|---|")
    for kind, rows in parts.items():
        medians = [quantile([row[i] for row in rows], 0.5) for i in range(4)]
        print(f"| {kind} | " + " | ".join(f"{m:.1f}" for m in medians) + " | |")
    return errors


async def _quotes(api: httpx.AsyncClient, count: int) -> list[float]:
    body = {"project_id": "bench_eta", "task_type": "test_prompt", "task_data": _llm(1, 0.4)}
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        (await api.post("/api/v1/tasks/quote", json=body)).raise_for_status()
        latencies.append(1000 * (time.perf_counter() - started))
    return latencies


async def main(args: argparse.Namespace) -> None:
    rounds, quotes, detail = args.rounds, args.quotes, args.detail
    variants = {kind: SIZES[args.sizes][kind] for kind in args.types.split(",")}
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
    cpus: dict[str, set[int]] = {}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if args.isolate:
        env["OMP_NUM_THREADS"] = "1"
        cpus = {"gpu_heavy": {0}, "gpu_medium": {1}, "cpu_intensive": {1}}
    print(f"machine: {machine_info()}; load before: {os.getloadavg()}")
    async with (
        bench_stack(queues, cpus=cpus, **env) as stack,
        httpx.AsyncClient(base_url=stack.url, headers={"X-API-Key": API_KEY}, timeout=120) as api,
    ):
        started = time.monotonic()
        await _warm_up(api, variants)
        print(f"warm-up done in {time.monotonic() - started:.0f} s; load {os.getloadavg()}")
        errors = await _stream(api, variants, rounds, args.gap, detail)
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
    parser.add_argument("--detail", action="store_true", help="each task's predicted and actual wait and run")
    parser.add_argument("--isolate", action="store_true", help="pin the media workers to cores of their own")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (OMP_NUM_THREADS)")
    parser.add_argument("--sizes", choices=sorted(SIZES), default="seconds", help="task sizes (SIZES)")
    parser.add_argument(
        "--gap",
        type=float,
        default=0.2,
        help="seconds between two submits of the stream (0: a burst, where tasks submitted within ~0.1 s "
        "start in the order their workflows reach their activity, not in submit order)",
    )
    asyncio.run(main(parser.parse_args()))
