"""A scene as one pipeline against the same scene chained by a client (what Aladdin does today).

The README's scene at CPU sizes (a frame → a video from it, two voice lines → their mix → the clip), run cold
(everything renders) and warm (one line of dialogue changed: the frame, the video and the other line are
render-cache hits), two ways on one stack: one `POST /api/v1/pipelines`, and a client that submits each task
itself, waits for its webhook and submits the next with the URLs it got. Reported per run: wall time (submit →
the clip's result), GPU-queue busy time (processing time of the image and video steps that rendered), and the
steps that rendered.

    python -m bench.pipelines
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from bench._stack import API_KEY, bench_stack, machine_info
from tests.support.processes import free_port
from tests.support.scripts import build_tiny_models
from tests.support.webhook_receiver import WebhookReceiver

GPU_TYPES = {"generate_image", "generate_video"}
QUEUES = ["gpu_medium", "gpu_heavy", "cpu_intensive"]


@dataclass
class Run:
    wall_s: float
    gpu_busy_s: float
    rendered: list[str]

    def row(self, label: str) -> str:
        steps = f"{len(self.rendered)} ({', '.join(self.rendered)})"
        return f"| {label} | {self.wall_s:.1f} | {self.gpu_busy_s:.1f} | {steps} |"


def scene(tag: str, line: str) -> list[dict[str, Any]]:
    def ref(step: str) -> dict[str, str]:
        return {"from": step, "path": "result.media_url"}

    image = {"prompt": f"alley {tag}", "resolution": "64x64", "num_inference_steps": 4, "seed": 7}
    video = {"scene_description": f"walk {tag}", "duration": 1, "fps": 8, "resolution": "64x64",
             "num_inference_steps": 2, "seed": 7}  # fmt: skip
    voice = "generate_character_voice"
    tracks = [{"url": ref("line1")}, {"url": ref("line2"), "offset_s": 0.5}]
    return [
        {"id": "frame", "task_type": "generate_image", "task_data": image},
        {
            "id": "video",
            "task_type": "generate_video",
            "task_data": {**video, "storyboard_images": [ref("frame")]},
        },
        {"id": "line1", "task_type": voice, "task_data": {"text": line, "seed": 1}},
        {"id": "line2", "task_type": voice, "task_data": {"text": f"Then why. {tag}", "seed": 1}},
        {"id": "mix", "task_type": "process_audio", "task_data": {"tracks": tracks}},
        {"id": "clip", "task_type": "assemble_clip",
         "task_data": {"video": ref("video"), "tracks": [{"url": ref("mix")}], "loudness_lufs": -16}},
    ]  # fmt: skip


async def _tally(client: httpx.AsyncClient, task_ids: dict[str, str], began: float) -> Run:
    wall = time.perf_counter() - began
    busy, rendered = 0.0, []
    for step, task_id in task_ids.items():
        status = (await client.get(f"/api/v1/tasks/{task_id}/status")).json()
        if status["status"] != "completed":
            raise RuntimeError(f"step {step} did not complete: {status}")
        if not ((status.get("result") or {}).get("cache") or {}).get("hit"):
            rendered.append(step)
            if status["task_type"] in GPU_TYPES:
                busy += status.get("processing_time") or 0.0
    return Run(wall, busy, rendered)


async def as_pipeline(client: httpx.AsyncClient, steps: list[dict[str, Any]]) -> Run:
    began = time.perf_counter()
    answer = (
        await client.post("/api/v1/pipelines", json={"project_id": "bench_pipelines", "steps": steps})
    ).json()
    while True:
        done = (await client.get(f"/api/v1/pipelines/{answer['pipeline_id']}", params={"wait": 30})).json()
        if done["status"] in ("completed", "failed", "cancelled"):
            break
    return await _tally(client, {s["id"]: s["task_id"] for s in done["steps"]}, began)


async def as_client_chain(
    client: httpx.AsyncClient, hooks: WebhookReceiver, steps: list[dict[str, Any]]
) -> Run:
    """Each task submitted by the client once what it needs has arrived by webhook (the client's glue)."""
    began = time.perf_counter()
    by_id = {s["id"]: s for s in steps}
    results: dict[str, dict[str, Any]] = {}
    task_ids: dict[str, str] = {}

    async def run(step_id: str, task_data: dict[str, Any]) -> None:
        path = f"/chain-{uuid.uuid4().hex}"
        task_type = by_id[step_id]["task_type"]
        body = {"project_id": "bench_pipelines", "task_type": task_type, "task_data": task_data}
        body["callback_url"] = hooks.url(path)
        task_ids[step_id] = (await client.post("/api/v1/tasks/submit", json=body)).json()["task_id"]
        while not (arrived := [h for h in hooks.received if h.path == path]):
            await asyncio.sleep(0.05)
        results[step_id] = (arrived[0].json or {})["result"]

    async def video() -> None:
        await run("frame", by_id["frame"]["task_data"])
        data = {**by_id["video"]["task_data"], "storyboard_images": [results["frame"]["media_url"]]}
        await run("video", data)

    async def audio() -> None:
        await asyncio.gather(
            run("line1", by_id["line1"]["task_data"]), run("line2", by_id["line2"]["task_data"])
        )
        tracks = [
            {"url": results["line1"]["media_url"]},
            {"url": results["line2"]["media_url"], "offset_s": 0.5},
        ]
        await run("mix", {"tracks": tracks})

    await asyncio.gather(video(), audio())
    clip = {"video": results["video"]["media_url"], "tracks": [{"url": results["mix"]["media_url"]}]}
    await run("clip", {**clip, "loudness_lufs": -16})
    return await _tally(client, task_ids, began)


async def main() -> None:
    models = build_tiny_models()
    port = free_port()
    env = {
        "IMAGE_MODEL": str(models["tiny-sd"]),
        "VIDEO_MODEL": str(models["tiny-video"]),
        "TTS_MODEL": str(models["tiny-vits"]),
        "TORCH_DEVICE": "cpu",
        "API_PORT": str(port),
        "MEDIA_PUBLIC_URL": f"http://127.0.0.1:{port}/media",
    }
    print(f"Machine: {machine_info()}; load before: {os.getloadavg()}")
    with WebhookReceiver() as hooks:
        await _compare(hooks, env)
    print(f"load after: {os.getloadavg()}")


async def _compare(hooks: WebhookReceiver, env: dict[str, str]) -> None:
    async with bench_stack(QUEUES, **env) as stack:
        async with httpx.AsyncClient(
            base_url=stack.url, headers={"X-API-Key": API_KEY}, timeout=120
        ) as client:
            await as_pipeline(client, scene("warm-up", "Warming up."))  # model loads
            print("| run | wall s | GPU-queue busy s | steps rendered |")
            print("|---|---|---|---|")
            for way in ("pipeline", "client chain"):
                tag = uuid.uuid4().hex[:8]
                for label, line in (
                    ("cold", f"Expecting you. {tag}"),
                    ("warm, one line changed", f"Not you. {tag}"),
                ):
                    steps = scene(tag, line)
                    run = await (
                        as_pipeline(client, steps)
                        if way == "pipeline"
                        else as_client_chain(client, hooks, steps)
                    )
                    print(run.row(f"{way}, {label}"), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
