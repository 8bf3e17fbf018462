"""What the generate_image activity costs on top of the bare diffusers pipeline, and how fast it cancels.

Runs the same pipeline, same size and steps, (a) bare in a loop (`pipe(...)` only) and (b) through the
activity in temporalio's real ActivityEnvironment (validation, per-call pipeline view, step callbacks and
progress, PNG write and read-back, local storage copy, heartbeats), and prints the throughput of each side by
side with their ratio; then cancels one run mid-denoise and prints the time from the cancel request to the
activity returning. The full service path (API → Temporal → worker) is measured by the orchestration bench
in bench/ separately; this isolates the activity layer.

    python bench/media_overhead.py                      # tiny SD on the CPU (data/test-models)
    python bench/media_overhead.py --device cuda --sd-size --resolution 512x512 --steps 20 --n 10

`--sd-size` builds an SD-1.5-sized pipeline with random weights (scripts/build_tiny_models.py) and saves it
once to data/models/sd15-random; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from temporalio.testing import ActivityEnvironment  # noqa: E402

from activities.media import MediaActivities, StepEvent  # noqa: E402
from taskservice.contracts import TaskActivityInput  # noqa: E402
from taskservice.settings import Settings  # noqa: E402


def _builder() -> Any:
    spec = importlib.util.spec_from_file_location(
        "build_tiny_models", REPO / "scripts" / "build_tiny_models.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_path(sd_size: bool) -> Path:
    builder = _builder()
    if not sd_size:
        return Path(builder.build_all(REPO / "data" / "test-models", names=["tiny-sd"])["tiny-sd"])
    target = REPO / "data" / "models" / "sd15-random"
    if not (target / "model_index.json").exists():
        print("building the SD-1.5-sized random pipeline (once)...", file=sys.stderr)
        builder.build_sd15_sized().save_pretrained(target)
    return target


def machine_info(device: str) -> str:
    import diffusers
    import torch

    lines = [
        f"python {platform.python_version()} on {platform.machine()} {platform.system()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"diffusers {diffusers.__version__}"
    ]
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        lines.append(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB")
    return "\n".join(lines)


def task(task_id: str, resolution: str, steps: int, seed: int) -> TaskActivityInput:
    data = {
        "prompt": "a lighthouse on a cliff",
        "resolution": resolution,
        "num_inference_steps": steps,
        "seed": seed,
    }
    return TaskActivityInput(task_id, "bench", "generate_image", data, soft_timeout_s=600)


async def interleaved(
    acts: MediaActivities, model: Path, resolution: str, steps: int, n: int
) -> tuple[list[float], list[float]]:
    """Alternate bare and activity runs (clock ramps and noisy neighbours hit both sides alike).

    "Bare" calls the very pipeline object the activity's cache holds, so both sides run the same weights.
    """
    import torch

    width, height = (int(v) for v in resolution.split("x"))
    await ActivityEnvironment().run(acts.generate_image, task("warm", resolution, steps, 0))
    pipe = acts.models.text_to_image(str(model))
    cuda = acts.models.device.startswith("cuda")

    def bare(seed: int) -> None:
        pipe(
            "a lighthouse on a cliff",
            num_inference_steps=steps,
            width=width,
            height=height,
            generator=torch.Generator("cpu").manual_seed(seed),
        )
        if cuda:
            torch.cuda.synchronize()

    bare(0)
    bare_times, activity_times = [], []
    for i in range(n):
        started = time.perf_counter()
        bare(i)
        bare_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        await ActivityEnvironment().run(acts.generate_image, task(f"t{i}", resolution, steps, i))
        activity_times.append(time.perf_counter() - started)
    return bare_times, activity_times


async def cancel_latency(acts: MediaActivities, events: list[StepEvent], resolution: str, steps: int) -> str:
    env = ActivityEnvironment()
    loop = asyncio.get_running_loop()
    cancel_after = max(1, steps // 3)
    marks: dict[str, float] = {}

    def observe(event: StepEvent) -> None:
        events.append(event)
        if event.step == cancel_after and "cancel" not in marks:
            marks["cancel"] = time.perf_counter()
            loop.call_soon_threadsafe(env.cancel)

    acts._step_observer = observe  # bench-only hook into the same observer the tests use
    try:
        await env.run(acts.generate_image, task("cancel", resolution, steps, 1))
        return "cancel: the run finished before the cancel landed (too few steps?)"
    except asyncio.CancelledError:
        returned = time.perf_counter()
    finally:
        acts._step_observer = None
    after = [e for e in events if e.at > marks["cancel"]]
    noticed = (events[-1].at - marks["cancel"]) * 1000
    step_s = (
        statistics.median(b.at - a.at for a, b in zip(events, events[1:], strict=False))
        if len(events) > 1
        else 0
    )
    return (
        f"cancel at step {cancel_after}/{steps}: loop stopped after {noticed:.0f} ms, "
        f"activity returned after {(returned - marks['cancel']) * 1000:.0f} ms "
        f"({len(after)} step(s) ran after the request; one step ≈ {step_s * 1000:.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--sd-size", action="store_true", help="SD-1.5-sized random pipeline instead of tiny")
    parser.add_argument("--n", type=int, default=10, help="timed runs per side")
    parser.add_argument("--resolution", default=None, help="WxH (default 128x128 tiny, 512x512 sd-size)")
    parser.add_argument(
        "--steps", type=int, default=None, help="denoising steps (default 4 tiny, 20 sd-size)"
    )
    args = parser.parse_args()

    from activities.media_models import resolve_device

    device = resolve_device(args.device)
    resolution = args.resolution or ("512x512" if args.sd_size else "128x128")
    steps = args.steps or (20 if args.sd_size else 4)
    model = model_path(args.sd_size)
    print(machine_info(device))
    print(f"model {model.name} on {device}, {resolution}, {steps} steps, n={args.n}")

    async def measure() -> tuple[list[float], list[float], str]:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(image_model=str(model), torch_device=device, data_dir=Path(tmp))
            acts = MediaActivities(settings)
            try:
                bare, wrapped = await interleaved(acts, model, resolution, steps, args.n)
                cancel = await cancel_latency(acts, [], resolution, max(steps, 12))
            finally:
                await acts.aclose()
        return bare, wrapped, cancel

    bare, wrapped, cancel = asyncio.run(measure())
    bare_med, act_med = statistics.median(bare), statistics.median(wrapped)
    print(f"{'path':<22}{'median s/task':>14}{'tasks/s':>10}{'min s':>9}{'max s':>9}")
    for name, times, med in (("bare pipeline", bare, bare_med), ("activity (ActivityEnv)", wrapped, act_med)):
        print(f"{name:<22}{med:>14.3f}{1 / med:>10.2f}{min(times):>9.3f}{max(times):>9.3f}")
    overhead_ms = (act_med - bare_med) * 1000
    print(f"activity / bare time ratio: {act_med / bare_med:.3f}  (overhead {overhead_ms:+.0f} ms/task)")
    print(cancel)


if __name__ == "__main__":
    main()
