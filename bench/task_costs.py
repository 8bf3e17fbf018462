"""What one task of each type costs Temporal, measured on a real history: the numbers behind docs/scaling.md.

Runs one task at a time through the REST API (workers of every queue, the tiny local models on CPU), waits
for it with `Prefer: wait` and `/status?wait=`, and reports for each: its history events by kind, the
frontend, persistence (writes apart) and visibility-store requests the dev server served meanwhile (from
its metrics, so the bookkeeping workflows' own scans are in them: their rate, measured while idle, is
subtracted), the open-source server's own `action` metric (it also counts memo upserts, which Temporal
Cloud's list of Actions does not), the Actions Temporal Cloud bills counted from the history by its
published rules, and heartbeats.
process_audio mixes two tracks (30 s of tone and noise, from a local HTTP server) with three operations.

    python -m bench.task_costs [--image-steps 30] [--llm-repeats 20] [--only LLM,image,video,audio]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import psutil
import soundfile as sf
from temporalio.client import Client

from bench._stack import API_KEY, bench_stack, machine_info
from tests.support.file_server import StaticFileServer
from tests.support.scripts import build_tiny_models

QUEUES = ["default", "gpu_medium", "gpu_heavy", "cpu_intensive"]
METRIC = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
KINDS = ("frontend", "persistence", "visibility", "actions")
# Cluster and namespace metadata reads run on their own clock, whatever the tasks do.
BACKGROUND = ("ClusterMetadata", "Namespace", "Namespaces", "NexusEndpoints")
WRITES = ("Create", "Update", "Upsert", "Record", "Complete", "RangeComplete", "Delete", "ConflictResolve")
# History events Temporal Cloud bills as Actions (docs.temporal.io/cloud/actions), and how many each.
BILLED_EVENTS = {
    "workflow_execution_started": 1,
    "activity_task_scheduled": 1,
    "timer_started": 1,
    "upsert_workflow_search_attributes": 1,
    "workflow_execution_signaled": 1,
    "signal_external_workflow_execution_initiated": 1,
    "start_child_workflow_execution_initiated": 2,
    "workflow_execution_update_accepted": 1,
}


def server_counters(pid: int) -> dict[str, Counter[str]]:
    """The dev server's counters by operation: frontend requests and actions of the `default` namespace,
    persistence requests of that namespace and of the shards (`system`: transfer, timer and visibility
    queues), and visibility-store requests (not labelled by namespace)."""
    cmdline = psutil.Process(pid).cmdline()
    port = cmdline[cmdline.index("--metrics-port") + 1]
    out: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        match = METRIC.match(line)
        if not match:
            continue
        name, value = match.group(1), int(float(match.group(3)))
        fields = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        namespace = fields.get("namespace")
        if name == "service_requests" and fields.get("service_name") == "frontend" and namespace == "default":
            out["frontend"][fields["operation"]] += value
        elif (
            name == "persistence_requests"
            and namespace in ("default", "system")
            and not fields["operation"].endswith(BACKGROUND)
        ):
            out["persistence"][fields["operation"]] += value
        elif name == "visibility_persistence_requests":
            out["visibility"][fields["operation"]] += value
        elif name == "action" and namespace == "default":
            out["actions"][fields.get("action_type", "?")] += value
    return out


def is_write(operation: str) -> bool:
    return operation.startswith(WRITES)


def billable_actions(events: Sequence[Any]) -> Counter[str]:
    """Temporal Cloud's Actions as its pricing page counts them from a history (heartbeats and queries are
    not in history: they come from the frontend counters). A signal this workflow sends is billed in the
    history of the workflow that receives it (the concurrency limiter): counted here, where it is caused."""
    actions: Counter[str] = Counter()
    marker_tasks: set[int] = set()
    for event in events:
        kind = (event.WhichOneof("attributes") or "").removesuffix("_event_attributes")
        if kind in BILLED_EVENTS:
            actions[kind] += BILLED_EVENTS[kind]
        elif kind == "activity_task_started" and event.activity_task_started_event_attributes.attempt > 1:
            actions["activity_retry"] += event.activity_task_started_event_attributes.attempt - 1
        elif kind == "marker_recorded":  # local activities: one Action per workflow task
            marker_tasks.add(event.marker_recorded_event_attributes.workflow_task_completed_event_id)
    if marker_tasks:
        actions["local_activities"] = len(marker_tasks)
    return actions


def minus(after: dict[str, Counter[str]], before: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
    return {kind: after[kind] - before[kind] for kind in after}


TASKS: dict[str, dict[str, Any]] = {
    "LLM (test_prompt)": {
        "task_type": "test_prompt",
        "task_data": {"prompt_template": "Describe {{x}}", "test_parameters": {"x": "a cat"}},
    },
}


def wav_bytes(seconds: float, rate: int = 44100) -> bytes:
    """A stereo WAV of a tone under noise: real samples for the mix, the denoiser and the loudness meter."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(1)
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    signal = np.stack([tone, tone], axis=1) + 0.05 * rng.standard_normal((t.size, 2))
    out = io.BytesIO()
    sf.write(out, signal.astype(np.float32), rate, format="WAV")
    return out.getvalue()


def tasks(image_steps: int, audio_url: str) -> dict[str, dict[str, Any]]:
    return {
        **TASKS,
        "LLM (run_llm_inference)": {
            "task_type": "run_llm_inference",
            "task_data": {"messages": [{"role": "user", "content": "A logline, please."}]},
        },
        f"image ({image_steps} steps)": {
            "task_type": "generate_image",
            "task_data": {
                "prompt": "noir detective",
                "resolution": "64x64",
                "num_inference_steps": image_steps,
            },
        },
        # The shortest video: at 2 s and 8 fps the tiny model outran its soft time limit on the loaded CPU.
        "video (1 s at 4 fps)": {
            "task_type": "generate_video",
            "task_data": {
                "scene_description": "a dark alley",
                "duration": 1,
                "fps": 4,
                "resolution": "64x64",
            },
        },
        "process_audio (2 tracks, 30 s)": {
            "task_type": "process_audio",
            "task_data": {
                "tracks": [{"url": audio_url}, {"url": audio_url, "gain_db": -12, "fade_in_s": 1.5}],
                "operations": [
                    {"type": "denoise", "strength": "light"},
                    "compress",
                    {"type": "normalize", "target_lufs": -16},
                ],
                "output_format": "mp3",
            },
        },
    }


async def run_one(
    api: httpx.AsyncClient, pid: int, body: dict[str, Any], repeats: int = 1
) -> tuple[str, dict[str, Counter[str]], float, float]:
    """`repeats` tasks one after the other between two counter samples: the last task's id, what the server
    served per task, the mean task time, and the window per task (short tasks are repeated so that the
    idle rate subtracted over the window is small against what they cost)."""
    await asyncio.sleep(1.5)  # the dev server reports its metrics once a second
    before = server_counters(pid)
    sampled = time.monotonic()
    task_id, seconds = "", 0.0
    for _ in range(repeats):
        task_id, took = await submit_and_wait(api, body)
        seconds += took
    await asyncio.sleep(1.5)
    spent = minus(server_counters(pid), before)
    per_task = {kind: Counter({op: n / repeats for op, n in ops.items()}) for kind, ops in spent.items()}
    return task_id, per_task, seconds / repeats, (time.monotonic() - sampled) / repeats


async def submit_and_wait(api: httpx.AsyncClient, body: dict[str, Any]) -> tuple[str, float]:
    began = time.monotonic()
    answer = await api.post(
        "/api/v1/tasks/submit", json={"project_id": "costs", **body}, headers={"Prefer": "wait=60"}
    )
    answer.raise_for_status()
    status = answer.json()
    while status["status"] not in ("completed", "failed", "cancelled"):
        reply = await api.get(
            f"/api/v1/tasks/{status['task_id']}/status", params={"wait": 60, "since_status": status["status"]}
        )
        status = reply.json()
    if status["status"] != "completed":
        raise RuntimeError(status)
    return status["task_id"], time.monotonic() - began


async def idle_rate(pid: int, seconds: float = 10.0) -> dict[str, Counter[str]]:
    """What the server does per second with no task running (bookkeeping scans, pollers, API refresh)."""
    before = server_counters(pid)
    await asyncio.sleep(seconds)
    spent = minus(server_counters(pid), before)
    return {kind: Counter({op: n / seconds for op, n in counts.items()}) for kind, counts in spent.items()}


def _kinds(events: Sequence[Any]) -> Counter[str]:
    return Counter((e.WhichOneof("attributes") or "").removesuffix("_event_attributes") for e in events)


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine_info()}")
    models = build_tiny_models(names=["tiny-sd", "tiny-video"])
    env = {
        "IMAGE_MODEL": str(models["tiny-sd"]),
        "VIDEO_MODEL": str(models["tiny-video"]),
        "TORCH_DEVICE": "cpu",
    }
    with StaticFileServer() as files:
        audio_url = files.add(wav_bytes(30), "audio/wav", name="track.wav")
        await measure(args, audio_url, env)


async def measure(args: argparse.Namespace, audio_url: str, env: dict[str, str]) -> None:
    async with bench_stack(QUEUES, **env) as stack:
        assert stack.temporal.process is not None
        pid = stack.temporal.process.pid
        temporal = await Client.connect(stack.temporal.address)
        async with httpx.AsyncClient(base_url=stack.url, headers={"X-API-Key": API_KEY}, timeout=600) as api:
            await run_one(api, pid, TASKS["LLM (test_prompt)"])  # warm-up
            idle = await idle_rate(pid)
            for name, body in tasks(args.image_steps, audio_url).items():
                if args.only and not any(word in name for word in args.only.split(",")):
                    continue
                repeats = args.llm_repeats if name.startswith("LLM") else 1
                task_id, spent, seconds, window = await run_one(api, pid, body, repeats)
                handle = temporal.get_workflow_handle(task_id)
                history = await handle.fetch_history()
                memo = (await handle.describe()).raw_description.workflow_execution_info.memo
                label = name if repeats == 1 else f"{name}, mean of {repeats}"
                report(label, history.events, spent, idle, seconds, window)
                print(f"  memo at the close: {memo.ByteSize() / 1024:.1f} KiB")


def report(
    name: str,
    events: Sequence[Any],
    spent: dict[str, Counter[str]],
    idle: dict[str, Counter[str]],
    seconds: float,
    window: float,
) -> None:
    size_kb = sum(e.ByteSize() for e in events) / 1024
    print(f"\n== {name}: {seconds:.1f} s, {len(events)} history events ({size_kb:.1f} KiB)")
    print("  events: " + ", ".join(f"{k} {n}" for k, n in _kinds(events).most_common()))
    for kind in KINDS:
        net = {op: max(n - idle[kind].get(op, 0.0) * window, 0.0) for op, n in spent[kind].items()}
        shown = {op: round(n, 1) for op, n in sorted(net.items(), key=lambda x: -x[1]) if n >= 0.5}
        writes = sum(n for op, n in net.items() if is_write(op))
        split = f" (writes {writes:.1f})" if kind in ("persistence", "visibility") else ""
        print(f"  {kind} (net of idle): {sum(net.values()):.1f}{split} {shown}")
    heartbeats = spent["frontend"].get("RecordActivityTaskHeartbeat", 0)
    queries = spent["frontend"].get("QueryWorkflow", 0)
    billed = billable_actions(events) + Counter({"heartbeat": heartbeats, "query": queries})
    print(f"  heartbeats: {heartbeats:.1f}")
    shown = {kind: round(n, 1) for kind, n in (+billed).items()}
    print(f"  Cloud-billable actions: {sum(billed.values()):.1f} {shown}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image-steps", type=int, default=30)
    parser.add_argument("--llm-repeats", type=int, default=20, help="LLM tasks measured per row")
    parser.add_argument("--only", help="comma-separated words: only the rows whose name has one")
    asyncio.run(main(parser.parse_args()))
