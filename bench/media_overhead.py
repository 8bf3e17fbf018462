"""What generate_image costs on top of a bare diffusers loop, what batching gains, and how fast it cancels.

For each pipeline size, one run side by side, on the very pipeline object the worker's model cache holds:
- bare: `pipe(prompt, ...)` in a loop, one image per call (and, for scale, four per call);
- service unbatched: the generate_image activity in temporalio's real ActivityEnvironment (validation,
  per-call pipeline view, step callbacks and progress, PNG write and read-back, local storage copy,
  heartbeats) with IMAGE_MAX_BATCH=1 and two tasks in flight, as a worker runs them (one denoises while the
  other encodes and stores its PNG);
- service batched: the same with IMAGE_MAX_BATCH=4 and eight tasks in flight (WORKER_CONCURRENCY_GPU_MEDIUM);
each as images/s and as a ratio to bare; then the first task's latency (cold: the model loaded from disk)
against a warm one, the model loads during the warm phases (a warm worker reloads nothing), and the time
from a cancel to the activity's return. The API → Temporal → worker path is measured by the orchestration
bench; this isolates the activity layer.

    python bench/media_overhead.py                        # tiny SD on this CPU (data/test-models)
    python bench/media_overhead.py --device cuda          # SD-1.5-sized 512²/20 and SDXL-sized 1024²/30
    python bench/media_overhead.py --preset gpu-smoke     # the GPU preset's code at tiny widths, on a CPU
    python bench/media_overhead.py --previews             # live previews off / tiny / vae (media_previews)

The GPU preset builds its pipelines with random weights from the architectures' configs (bench/
random_pipelines.py; no download), once, under data/models/, and stops starting new measurements when
--budget-s is spent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from temporalio.testing import ActivityEnvironment  # noqa: E402

from activities.media.activities import MediaActivities  # noqa: E402
from activities.media.tools import StepEvent  # noqa: E402
from activities.resources import WorkerResources  # noqa: E402
from bench import random_pipelines  # noqa: E402
from taskservice.contracts import TaskActivityInput  # noqa: E402
from taskservice.settings import Settings  # noqa: E402
from tests.support.scripts import build_tiny_models  # noqa: E402

PROMPT = "a lighthouse on a cliff"
UNBATCHED_IN_FLIGHT, BATCHED_IN_FLIGHT, BATCH = 2, 8, 4


@dataclass(frozen=True)
class Case:
    name: str
    model: Callable[[str], Path]  # device -> model folder
    resolution: str
    steps: int
    n: int  # images per measured phase


def _tiny(_device: str) -> Path:
    return build_tiny_models(names=["tiny-sd"])["tiny-sd"]


def _random(name: str, scale: float) -> Callable[[str], Path]:
    def build(device: str) -> Path:
        folder = REPO / "data" / "models" / f"{name}-random{'' if scale == 1 else f'-x{scale}'}"
        return random_pipelines.build(name, folder, device=device, scale=scale)

    return build


PRESETS = {
    "cpu": [Case("tiny SD", _tiny, "128x128", 8, 4)],
    "gpu": [
        Case("SD-1.5-sized", _random("sd15", 1.0), "512x512", 20, 16),
        Case("SDXL-sized", _random("sdxl", 1.0), "1024x1024", 30, 8),
    ],
    "gpu-smoke": [
        Case("SD-1.5-sized x0.1", _random("sd15", 0.1), "128x128", 4, 4),
        Case("SDXL-sized x0.1", _random("sdxl", 0.1), "128x128", 4, 4),
    ],
}


@dataclass
class Row:
    case: Case
    cold_s: float = 0.0
    warm_s: float = 0.0
    rates: dict[str, float] = field(default_factory=dict)  # images/s by path: median of the rounds
    spread: dict[str, tuple[float, float]] = field(default_factory=dict)  # slowest and fastest round
    warm_reloads: int = 0
    cancel: str = ""


def machine_info(device: str) -> str:
    import diffusers
    import torch

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [
        f"python {platform.python_version()} on {platform.machine()} {platform.system()}, "
        f"{os.cpu_count()} CPUs (load average {load}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), diffusers {diffusers.__version__}"
    ]
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        lines.append(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB")
    return "\n".join(lines)


def task(task_id: str, case: Case, seed: int) -> TaskActivityInput:
    data = {"prompt": PROMPT, "resolution": case.resolution, "num_inference_steps": case.steps, "seed": seed}
    return TaskActivityInput(task_id, "bench", "generate_image", data, soft_timeout_s=3600)


async def run_tasks(acts: MediaActivities, case: Case, in_flight: int, prefix: str) -> float:
    """`case.n` tasks through the activity, `in_flight` at a time (a worker's free slots); images/s."""
    slots = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with slots:
            await ActivityEnvironment().run(acts.generate_image, task(f"{prefix}{i}", case, i))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(case.n)))
    return case.n / (time.perf_counter() - started)


def bare_rate(acts: MediaActivities, case: Case, per_call: int) -> float:
    """Images/s of the cached pipeline called directly, `per_call` images per call."""
    import torch

    pipe = acts.models.text_to_image(str(acts.models.loaded_models()[0]))
    width, height = (int(v) for v in case.resolution.split("x"))
    cuda = acts.models.device.startswith("cuda")
    calls = max(1, case.n // per_call)
    started = time.perf_counter()
    for i in range(calls):
        pipe(
            [PROMPT] * per_call,
            num_inference_steps=case.steps,
            width=width,
            height=height,
            generator=[torch.Generator("cpu").manual_seed(i * per_call + k) for k in range(per_call)],
        )
        if cuda:
            torch.cuda.synchronize()
    return calls * per_call / (time.perf_counter() - started)


class StepHook:
    """The activity's step observer: `cancel_latency` points it at its own callback for one run."""

    def __init__(self) -> None:
        self.target: Callable[[StepEvent], None] | None = None

    def __call__(self, event: StepEvent) -> None:
        if self.target is not None:
            self.target(event)


async def cancel_latency(acts: MediaActivities, hook: StepHook, case: Case) -> str:
    env = ActivityEnvironment()
    loop = asyncio.get_running_loop()
    steps = max(case.steps, 12)
    cancel_after = max(1, steps // 3)
    events: list[StepEvent] = []
    marks: dict[str, float] = {}

    def observe(event: StepEvent) -> None:
        events.append(event)
        if event.step == cancel_after and "cancel" not in marks:
            marks["cancel"] = time.perf_counter()
            loop.call_soon_threadsafe(env.cancel)

    hook.target = observe
    try:
        longer = Case(case.name, case.model, case.resolution, steps, 1)
        await env.run(acts.generate_image, task("cancel", longer, 1))
        return "cancel: the run finished before the cancel landed (too few steps?)"
    except asyncio.CancelledError:
        returned = time.perf_counter()
    finally:
        hook.target = None
    after = [e for e in events if e.at > marks["cancel"]]
    gaps = [b.at - a.at for a, b in zip(events, events[1:], strict=False)]
    step_s = statistics.median(gaps) if gaps else 0.0
    return (
        f"cancel at step {cancel_after}/{steps}: activity returned after "
        f"{(returned - marks['cancel']) * 1000:.0f} ms ({len(after)} step(s) after the request; "
        f"one step ≈ {step_s * 1000:.0f} ms)"
    )


async def measure(case: Case, device: str, rounds: int, deadline: float) -> Row:
    row = Row(case)
    model = case.model(device)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            image_model=str(model), torch_device=device, data_dir=Path(tmp), image_max_batch=BATCH
        )
        hook = StepHook()
        async with WorkerResources.open(settings) as resources:
            acts = MediaActivities(resources, step_observer=hook)
            try:
                started = time.perf_counter()
                await ActivityEnvironment().run(acts.generate_image, task("cold", case, 0))
                row.cold_s = time.perf_counter() - started
                started = time.perf_counter()
                await ActivityEnvironment().run(acts.generate_image, task("warm", case, 1))
                row.warm_s = time.perf_counter() - started
                loads = acts.models.loads
                await _phases(acts, case, row, rounds, deadline)
                row.warm_reloads = acts.models.loads - loads
                if time.monotonic() < deadline:
                    row.cancel = await cancel_latency(acts, hook, case)
            finally:
                await acts.aclose()
    return row


async def _phases(acts: MediaActivities, case: Case, row: Row, rounds: int, deadline: float) -> None:
    """Rounds of bare / unbatched / batched (noise hits each alike); the median of each path."""
    samples: dict[str, list[float]] = {}
    for round_index in range(rounds):
        for name, per_call in (("bare", 1), (f"bare, {BATCH} per call", BATCH)):
            if time.monotonic() < deadline:
                samples.setdefault(name, []).append(bare_rate(acts, case, per_call))
        for name, batch, in_flight in (
            ("service unbatched", 1, UNBATCHED_IN_FLIGHT),
            ("service batched", BATCH, BATCHED_IN_FLIGHT),
        ):
            if time.monotonic() < deadline:
                acts.images.max_batch = batch  # IMAGE_MAX_BATCH of this phase
                rate = await run_tasks(acts, case, in_flight, f"r{round_index}-{batch}-")
                samples.setdefault(name, []).append(rate)
    row.rates = {name: statistics.median(values) for name, values in samples.items()}
    row.spread = {name: (min(values), max(values)) for name, values in samples.items()}


def report(rows: list[Row]) -> None:
    for row in rows:
        case = row.case
        print(f"\n{case.name}, {case.resolution}, {case.steps} steps, {case.n} images per phase")
        bare = row.rates.get("bare")
        # On a shared machine the best round is the least disturbed one: its ratios are shown too.
        best_bare = row.spread["bare"][1] if bare else None
        header = f"{'path':<24}{'images/s':>10}{'ratio to bare':>15}{'rounds: min–max':>20}"
        print(f"{header}{'best-round ratio':>18}")
        for name, rate in row.rates.items():
            ratio = f"{rate / bare:.2f}×" if bare else "—"
            low, high = row.spread[name]
            best = f"{high / best_bare:.2f}×" if best_bare else "—"
            print(f"{name:<24}{rate:>10.3f}{ratio:>15}{f'{low:.3f}–{high:.3f}':>20}{best:>18}")
        unbatched, batched = row.rates.get("service unbatched"), row.rates.get("service batched")
        if unbatched and batched:
            best = row.spread["service batched"][1] / row.spread["service unbatched"][1]
            print(f"batched / unbatched: {batched / unbatched:.2f}× (best rounds: {best:.2f}×)")
        print(f"first task (cold, model loaded from disk): {row.cold_s:.2f} s; warm: {row.warm_s:.2f} s")
        print(f"model loads during the warm phases: {row.warm_reloads}")
        print(row.cancel or "cancel: not measured (budget spent)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: gpu on a GPU, cpu otherwise")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of phases (5 CPU, 1 GPU)")
    parser.add_argument("--budget-s", type=float, default=None, help="seconds (480 GPU, 1200 CPU)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="only the resume bench (bench/media_resume.py): tiny video model",
    )
    parser.add_argument(
        "--previews",
        action="store_true",
        help="only the preview-cost bench (bench/media_previews.py): off / tiny / vae as a ratio to off",
    )
    args = parser.parse_args()
    if args.resume:
        _resume(args.device)
        return
    if args.previews:
        _previews(args.device, args.rounds or 3)
        return

    from activities.media.models import resolve_device

    started = time.monotonic()
    device = resolve_device(args.device)
    gpu = device.startswith("cuda")
    preset = args.preset or ("gpu" if gpu else "cpu")
    rounds = args.rounds or (1 if gpu else 5)
    print(machine_info(device))
    budget = args.budget_s or (480.0 if gpu else 1200.0)
    print(f"preset {preset} on {device}, {rounds} round(s), budget {budget:.0f} s")
    rows = []
    for case in PRESETS[preset]:
        if time.monotonic() - started > budget:
            print(f"\n{case.name}: skipped (budget spent)")
            continue
        rows.append(asyncio.run(measure(case, device, rounds, started + budget)))
        report(rows[-1:])
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nload average at the end: {load}; total {time.monotonic() - started:.0f} s")


def _resume(device_name: str) -> None:
    from activities.media.models import resolve_device
    from bench.media_resume import resume_costs

    started = time.monotonic()
    device = resolve_device(device_name)
    print(machine_info(device))
    for line in asyncio.run(resume_costs(build_tiny_models()["tiny-video"], device)):
        print(line)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nload average at the end: {load}; total {time.monotonic() - started:.0f} s")


def _previews(device_name: str, rounds: int) -> None:
    from activities.media.models import resolve_device
    from bench.media_previews import preview_costs

    started = time.monotonic()
    device = resolve_device(device_name)
    print(machine_info(device))
    if device.startswith("cuda"):
        models = {"image": _random("sd15", 1.0)(device), "preview": _taesd_sized()}
    else:
        tiny = build_tiny_models(names=["tiny-sd", "tiny-video", "tiny-taesd"])
        models = {"image": tiny["tiny-sd"], "video": tiny["tiny-video"], "preview": tiny["tiny-taesd"]}
    for line in asyncio.run(preview_costs(models, device, rounds=rounds)):
        print(line)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nload average at the end: {load}; total {time.monotonic() - started:.0f} s")


def _taesd_sized() -> Path:
    """An AutoencoderTiny of TAESD's own architecture (its default config), random weights, saved once."""
    from diffusers import AutoencoderTiny

    folder = REPO / "data" / "models" / "taesd-random"
    if not (folder / "config.json").exists():
        AutoencoderTiny().save_pretrained(folder)
    return folder


if __name__ == "__main__":
    main()
