"""Orchestration overhead: no-op-like `test_prompt` tasks through our REST API vs. a FastAPI + Celery + Redis
baseline (the seed's architecture, `bench/baseline_celery/`), measured in one run with the same client.

For each service and each level of submissions in flight (1, 16, 64) it prints completed tasks/s and
submit→completed latency p50/p99 as the client saw it (polling `/status` every `--poll-ms`), then the
ratios ours/Celery, the CPU each process spent per task, and — from the event times of our tasks'
workflow histories — where one task's time goes (API, Temporal start, workflow-task and activity polls,
activity, outcome recorded, seen by the client). The LLM is the local fake (~1 ms per answer), so the
numbers are each service's own cost.

    python -m bench.orchestration [--tasks 200] [--pool threads|prefork] [--variant baseline|fast|lean]
                                  [--only ours|celery]

`--variant fast` runs our worker with changes proposed in bench/RESULTS.md applied by patching at start-up
(bench-only; the service code is unchanged): the workflow sandbox off for our own (deterministic,
import-free) workflows, and the worker's "task started" signal sent without holding the activity back.
`--variant lean` adds: the task workflow completes in the same workflow task that sends its metrics signal
instead of waiting for the signal's delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from bench._stack import API_KEY, machine_info
from tests.conftest import _base_env, wait_for_pollers
from tests.fakes.openai_server import FakeOpenAIServer
from tests.stack import ServiceProcess, TemporalDevServer, free_port, wait_http_ok

LEVELS = (1, 16, 64)
SUBMIT_BODY_TASK_DATA = {"prompt_template": "noop"}


# --- the client, identical for both services ------------------------------------------------------------


@dataclass
class TaskTiming:
    task_id: str
    submitted_at: float  # wall clock (time.time) before the submit request
    submit_s: float  # submit request round trip
    latency_s: float  # submit → the client saw `completed`
    polls: int  # status requests it took


async def run_one(client: httpx.AsyncClient, n: int, poll_s: float) -> TaskTiming:
    wall = time.time()
    started = time.perf_counter()
    response = await client.post(
        "/api/v1/tasks/submit",
        json={
            "project_id": f"bench_{n % 40}",
            "task_type": "test_prompt",
            "task_data": SUBMIT_BODY_TASK_DATA,
        },
    )
    response.raise_for_status()
    submit_s = time.perf_counter() - started
    task_id = response.json()["task_id"]
    polls = 0
    while True:
        polls += 1
        try:
            reply = await client.get(f"/api/v1/tasks/{task_id}/status")
        except httpx.TransportError:  # a kept-alive connection closed under us: read again
            continue
        reply.raise_for_status()
        status = reply.json()
        if status["status"] == "completed":
            return TaskTiming(task_id, wall, submit_s, time.perf_counter() - started, polls)
        if status["status"] in ("failed", "cancelled"):
            raise RuntimeError(status)
        await asyncio.sleep(poll_s)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class LevelResult:
    service: str
    in_flight: int
    tasks: int
    rate: float
    timings: list[TaskTiming]
    cpu_ms_per_task: dict[str, float] = field(default_factory=dict)
    rpcs_per_task: dict[str, float] = field(default_factory=dict)

    @property
    def p50_ms(self) -> float:
        return statistics.median(t.latency_s for t in self.timings) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile([t.latency_s for t in self.timings], 0.99) * 1000


async def measure(
    client: httpx.AsyncClient, tasks: int, in_flight: int, poll_s: float
) -> tuple[float, list[TaskTiming]]:
    gate = asyncio.Semaphore(in_flight)
    timings: list[TaskTiming] = []

    async def one(n: int) -> None:
        async with gate:
            timings.append(await run_one(client, n, poll_s))

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(tasks)))
    return tasks / (time.perf_counter() - started), timings


# --- CPU accounting per process -------------------------------------------------------------------------


def _cpu_s(pid: int, children: bool = True) -> float:
    """CPU seconds of a process and (by default) all its descendants (supervisors, prefork children)."""
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *(root.children(recursive=True) if children else [])]:
            with _gone_ok():
                times = proc.cpu_times()
                total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


@contextmanager
def _gone_ok() -> Iterator[None]:
    try:
        yield
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        pass


class CpuMeter:
    """CPU seconds spent by named processes between `start()` and `per_task()`."""

    CLIENT = "bench client + fake LLM"

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, self.CLIENT: os.getpid()}
        self._before: dict[str, float] = {}

    def _now(self, name: str) -> float:
        # The bench process is the parent of every service: count only its own CPU.
        return _cpu_s(self.pids[name], children=name != self.CLIENT)

    def start(self) -> None:
        self._before = {name: self._now(name) for name in self.pids}

    def per_task(self, tasks: int) -> dict[str, float]:
        return {name: (self._now(name) - self._before[name]) * 1000 / tasks for name in self.pids}


def temporal_frontend_requests(pid: int) -> Counter[str]:
    """Requests the Temporal frontend served so far, per operation (from the dev server's metrics)."""
    cmdline = psutil.Process(pid).cmdline()
    port = cmdline[cmdline.index("--metrics-port") + 1]
    counts: Counter[str] = Counter()
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        match = re.match(r'service_requests\{.*operation="(\w+)".*service_name="frontend".*\} (\S+)', line)
        if match:
            counts[match.group(1)] += int(float(match.group(2)))
    return counts


# --- the two stacks --------------------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    url: str
    pids: dict[str, int]
    temporal_address: str | None = None


@asynccontextmanager
async def our_stack(variant: str) -> AsyncIterator[Service]:
    """Temporal dev server, the `default` worker (8 concurrent activities) and the API, as in bench._stack."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp,
        FakeOpenAIServer(api_key="sk-test-llm-key") as llm,
    ):
        workdir = Path(tmp)
        temporal = TemporalDevServer(workdir).start()
        env = {
            **_base_env(temporal, llm, workdir),
            "API_KEY": API_KEY,
            "WORKER_CONCURRENCY_DEFAULT": "8",
            "WORKER_REPORT_INTERVAL_S": "10",
        }
        worker_args = ["workers", "default"]
        if variant in ("fast", "lean"):
            worker_args = ["bench.orchestration", "--as-fast-worker", "default"]
        if variant == "lean":
            env["BENCH_FAST_METRICS_NOWAIT"] = "1"
        processes = {
            "worker": ServiceProcess("worker-default", worker_args, env, workdir / "worker.log").start()
        }
        port = free_port()
        processes["api"] = ServiceProcess(
            "api", ["api"], {**env, "API_PORT": str(port)}, workdir / "api.log"
        ).start()
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http_ok(f"{url}/health", process=processes["api"])
            await wait_for_pollers(temporal.address, "default", ["default"])
            await asyncio.sleep(1)
            assert temporal.process is not None
            pids = {
                "API": processes["api"].pid,
                "worker (workflows + activities)": processes["worker"].pid,
                "Temporal dev server": temporal.process.pid,
            }
            yield Service(f"ours ({variant})", url, pids, temporal.address)
        finally:
            for process in processes.values():
                process.stop()
            temporal.stop()


def _start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / "redis.log", "ab")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if ping.stdout.strip() == "PONG":
            return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("redis-server did not start (apt-get install redis-server)")


@asynccontextmanager
async def celery_stack(pool: str, concurrency: int = 8) -> AsyncIterator[Service]:
    """redis-server, a Celery worker (`--pool`, `--concurrency 8`) and the baseline API."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp,
        FakeOpenAIServer(api_key="sk-test-llm-key") as llm,
    ):
        workdir = Path(tmp)
        redis_port = free_port()
        redis = _start_redis(redis_port, workdir)
        env = {
            "BASELINE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "API_KEY": API_KEY,
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "sk-test-llm-key",
            "LLM_MODEL": "fake-model-1",
            "PYTHONUNBUFFERED": "1",
        }
        worker_args = ["celery", "-A", "bench.baseline_celery.tasks", "worker", "--pool", pool]
        worker_args += ["--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-gossip"]
        worker_args += ["--without-mingle", "--without-heartbeat"]
        processes = {"worker": ServiceProcess("celery", worker_args, env, workdir / "celery.log").start()}
        port = free_port()
        processes["api"] = ServiceProcess(
            "baseline-api", ["bench.baseline_celery.api"], {**env, "API_PORT": str(port)}, workdir / "api.log"
        ).start()
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http_ok(f"{url}/health", process=processes["api"])
            pids = {
                "API": processes["api"].pid,
                f"Celery worker ({pool})": processes["worker"].pid,
                "redis-server": redis.pid,
            }
            yield Service(f"celery ({pool})", url, pids)
        finally:
            for process in processes.values():
                process.stop()
            redis.send_signal(signal.SIGTERM)
            redis.wait(10)


async def bench_service(service: Service, tasks: int, poll_s: float) -> list[LevelResult]:
    limits = httpx.Limits(max_connections=100, keepalive_expiry=2)  # < uvicorn keep-alive 5 s
    results: list[LevelResult] = []
    async with httpx.AsyncClient(
        base_url=service.url, headers={"X-API-Key": API_KEY}, limits=limits, timeout=120
    ) as client:
        await asyncio.wait_for(measure(client, 10, 2, poll_s), 120)  # warm-up (and worker ready)
        meter = CpuMeter(service.pids)
        for in_flight in LEVELS:
            n = 40 if in_flight == 1 else tasks
            temporal_pid = service.pids.get("Temporal dev server")
            rpcs_before = temporal_frontend_requests(temporal_pid) if temporal_pid else Counter()
            meter.start()
            rate, timings = await measure(client, n, in_flight, poll_s)
            result = LevelResult(service.name, in_flight, n, rate, timings, meter.per_task(n))
            if temporal_pid:
                rpcs = temporal_frontend_requests(temporal_pid) - rpcs_before
                result.rpcs_per_task = {op: count / n for op, count in rpcs.most_common()}
            results.append(result)
            print(
                f"  {service.name:<16} {in_flight:>4} in flight: {rate:6.1f} tasks/s, "
                f"p50 {result.p50_ms:5.0f} ms, p99 {result.p99_ms:6.0f} ms, "
                f"{statistics.mean(t.polls for t in timings):.1f} status polls/task",
                flush=True,
            )
        if service.temporal_address is not None:
            # Every finished task must reach the metrics workflow (checks the `lean` variant too).
            submitted = 10 + sum(r.tasks for r in results)
            # It counts from visibility every 2 s, 3 s behind now.
            for _ in range(30):
                metrics = (await client.get("/api/v1/tasks/metrics")).json()["metrics"]
                if metrics["completed_tasks"] >= submitted:
                    break
                await asyncio.sleep(0.5)
            print(
                f"  metrics workflow counted {metrics['completed_tasks']} completed of {submitted} submitted"
            )
    return results


# --- where our time goes: workflow history event times ---------------------------------------------------


def _t(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


def _kind(event: HistoryEvent) -> str:
    return event.WhichOneof("attributes") or ""


PHASES: list[tuple[str, str]] = [
    (
        "api_before_start",
        "API: submit received → workflow started (auth, validation, project count, start RPC)",
    ),
    ("submit_after_start", "API: workflow started → submit answered (queue-position count, response)"),
    ("wft1_poll", "first workflow task: scheduled → picked up by the worker (poll)"),
    ("wft1_run", "first workflow task: run on the worker (new workflow instance, schedule activity)"),
    ("activity_poll", "activity: scheduled → started on the worker (poll)"),
    ("activity_run", "activity: started → completed (start signal RPC, LLM call, result)"),
    ("outcome", "activity completed → outcome in memo (workflow task poll + run)"),
    ("seen", "outcome in memo → client saw `completed` (status poll interval + status read)"),
    ("close", "outcome in memo → workflow closed (metrics signal; not on the client's path)"),
    ("signal_wft", "CPU aside: the `task_started` signal's workflow task (poll + run)"),
]


def phase_times(events: list[HistoryEvent], timing: TaskTiming) -> dict[str, float]:
    """Seconds per phase of one task, from its history and the client's clock (same machine).

    A phase whose events are missing (e.g. no `task_started` signal recorded) is left out for that task.
    """
    kinds = [_kind(e) for e in events]
    t = [_t(e) for e in events]

    def at(kind: str, after: int | None = 0) -> int | None:
        """Index of the first event of that kind at or after `after` (None when absent)."""
        if after is None:
            return None
        return next((i for i in range(after, len(events)) if kinds[i] == kind), None)

    def span(start: int | None, end: int | None) -> float | None:
        return None if start is None or end is None else t[end] - t[start]

    started = at("workflow_execution_started_event_attributes")
    wft_sched = at("workflow_task_scheduled_event_attributes")
    wft_start = at("workflow_task_started_event_attributes", wft_sched)
    wft_done = at("workflow_task_completed_event_attributes", wft_start)
    act_sched = at("activity_task_scheduled_event_attributes")
    act_start = at("activity_task_started_event_attributes")
    act_done = at("activity_task_completed_event_attributes")
    outcome = at("workflow_properties_modified_event_attributes", act_done)
    closed = at("workflow_execution_completed_event_attributes")
    signaled = at("workflow_execution_signaled_event_attributes")
    sig_sched = at("workflow_task_scheduled_event_attributes", signaled)
    sig_done = at("workflow_task_completed_event_attributes", sig_sched)
    submit_end = timing.submitted_at + timing.submit_s
    seen = timing.submitted_at + timing.latency_s
    phases = {
        "api_before_start": None if started is None else t[started] - timing.submitted_at,
        "submit_after_start": None if started is None else submit_end - t[started],
        "wft1_poll": span(wft_sched, wft_start),
        "wft1_run": span(wft_start, wft_done),
        "activity_poll": span(act_sched, act_start),
        "activity_run": span(act_start, act_done),
        "outcome": span(act_done, outcome),
        "seen": None if outcome is None else seen - t[outcome],
        "close": span(outcome, closed),
        "signal_wft": span(sig_sched, sig_done),
    }
    return {name: value for name, value in phases.items() if value is not None}


async def breakdown(address: str, timings: list[TaskTiming]) -> dict[str, float]:
    """Median seconds per phase over the given tasks."""
    client = await Client.connect(address)
    per_phase: dict[str, list[float]] = {}
    for timing in timings:
        events = [e async for e in client.get_workflow_handle(timing.task_id).fetch_history_events()]
        for name, seconds in phase_times(events, timing).items():
            per_phase.setdefault(name, []).append(seconds)
    return {name: statistics.median(values) for name, values in per_phase.items()}


async def rpc_costs(address: str, tasks: list[str]) -> dict[str, float]:
    """Median ms of the Temporal calls the API makes per submit and per status read (from this process)."""
    client = await Client.connect(address)
    calls: dict[str, Callable[[], Any]] = {
        "count_workflows (project running)": lambda: client.count_workflows(
            'ProjectId = "bench_1" AND ExecutionStatus = "Running"'
        ),
        "count_workflows (queue position)": lambda: client.count_workflows(
            'TaskType IN ("test_prompt") AND TaskStatus = "queued" AND ExecutionStatus = "Running"'
        ),
        "describe (status read)": lambda: client.get_workflow_handle(tasks[0]).describe(),
    }
    out: dict[str, float] = {}
    for name, call in calls.items():
        samples = []
        for _ in range(30):
            began = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - began)
        out[name] = statistics.median(samples) * 1000
    return out


# --- report ----------------------------------------------------------------------------------------------


def print_table(results: list[LevelResult]) -> None:
    print(f"\n{'service':<16} {'in flight':>9} {'tasks':>6} {'tasks/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(
            f"{r.service:<16} {r.in_flight:>9} {r.tasks:>6} {r.rate:>8.1f} {r.p50_ms:>8.0f} {r.p99_ms:>8.0f}"
        )


def print_ratios(ours: list[LevelResult], celery: list[LevelResult]) -> None:
    print(
        f"\n{'in flight':>9} {'throughput ours/celery':>23} {'p50 ours/celery':>16} {'p99 ours/celery':>16}"
    )
    for o, c in zip(ours, celery, strict=True):
        print(
            f"{o.in_flight:>9} {o.rate / c.rate:>22.2f}x {o.p50_ms / c.p50_ms:>15.2f}x "
            f"{o.p99_ms / c.p99_ms:>15.2f}x"
        )


def print_rpcs(results: list[LevelResult]) -> None:
    for r in results:
        if r.rpcs_per_task:
            total = sum(r.rpcs_per_task.values())
            parts = ", ".join(f"{op} {n:.1f}" for op, n in r.rpcs_per_task.items() if n >= 0.05)
            print(f"  {r.service} @ {r.in_flight} in flight: {total:.1f} ({parts})")


def print_cpu(results: list[LevelResult]) -> None:
    print("\nCPU ms per completed task, by process:")
    for r in results:
        parts = ", ".join(f"{name} {ms:.1f}" for name, ms in r.cpu_ms_per_task.items())
        print(
            f"  {r.service} @ {r.in_flight} in flight: total {sum(r.cpu_ms_per_task.values()):.1f} ({parts})"
        )


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine_info()}; load average before: {os.getloadavg()[0]:.2f}")
    poll_s = args.poll_ms / 1000
    ours: list[LevelResult] = []
    celery: list[LevelResult] = []
    phases: dict[str, float] = {}
    rpcs: dict[str, float] = {}
    if args.only in (None, "ours"):
        async with our_stack(args.variant) as service:
            ours = await bench_service(service, args.tasks, poll_s)
            assert service.temporal_address is not None
            phases = await breakdown(service.temporal_address, ours[0].timings)
            rpcs = await rpc_costs(service.temporal_address, [t.task_id for t in ours[0].timings])
    if args.only in (None, "celery"):
        async with celery_stack(args.pool) as service:
            celery = await bench_service(service, args.tasks, poll_s)
    print_table(ours + celery)
    if ours and celery:
        print_ratios(ours, celery)
        print(
            f"\ngoals: throughput ours/celery >= 1.00x at every level; p50 <= 150 ms (poll {args.poll_ms} ms)"
        )
    print_cpu(ours + celery)
    if ours:
        print("\nTemporal frontend requests per completed task (API, worker and client polls together):")
        print_rpcs(ours)
    if phases:
        print("\nwhere one task's time goes (ours, 1 in flight, medians):")
        for name, label in PHASES:
            if name in phases:
                print(f"  {phases[name] * 1000:7.1f} ms  {label}")
        print("Temporal RPCs from a client on this machine (median):")
        for name, ms in rpcs.items():
            print(f"  {ms:7.1f} ms  {name}")


# --- bench-only worker variant ---------------------------------------------------------------------------


def run_fast_worker(queue: str) -> None:
    """Our worker with the proposed changes patched in (see the module docstring)."""
    import functools

    from temporalio import worker as temporal_worker
    from temporalio.worker import UnsandboxedWorkflowRunner

    from taskservice.logs import configure_logging
    from taskservice.queues import Queue
    from taskservice.settings import Settings
    from workers import runner

    def make_worker(*args: Any, **kwargs: Any) -> temporal_worker.Worker:
        if kwargs.get("workflows"):
            kwargs.setdefault("workflow_runner", UnsandboxedWorkflowRunner())
        return temporal_worker.Worker(*args, **kwargs)

    vars(runner)["Worker"] = make_worker
    announce = runner._TaskLifecycleInterceptor.announce_start
    pending: set[asyncio.Task[None]] = set()

    @functools.wraps(announce)
    async def announce_in_background(self: runner._TaskLifecycleInterceptor) -> None:
        task = asyncio.create_task(announce(self))
        pending.add(task)
        task.add_done_callback(pending.discard)

    runner._TaskLifecycleInterceptor.announce_start = announce_in_background  # type: ignore[method-assign]
    if os.environ.get("BENCH_FAST_METRICS_NOWAIT") == "1":
        from workflows import task as task_workflow

        count = task_workflow.TaskWorkflow._count

        async def count_without_waiting(self: Any, task: Any, outcome: Any) -> None:
            # Issue the metrics signal but complete in the same workflow task (no wait for delivery).
            asyncio.ensure_future(count(self, task, outcome))

        task_workflow.TaskWorkflow._count = count_without_waiting  # type: ignore[method-assign]
    configure_logging(f"worker-{queue}")
    code = asyncio.run(runner.run_worker(Settings(), Queue(queue)))
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200, help="tasks per level at 16 and 64 in flight")
    parser.add_argument("--poll-ms", type=float, default=10, help="the client's status poll interval")
    parser.add_argument(
        "--pool",
        choices=["threads", "prefork"],
        default="threads",
        help="Celery worker pool (concurrency 8 either way)",
    )
    parser.add_argument("--variant", choices=["baseline", "fast", "lean"], default="baseline")
    parser.add_argument("--only", choices=["ours", "celery"])
    parser.add_argument("--as-fast-worker", metavar="QUEUE", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.as_fast_worker:
        run_fast_worker(parsed.as_fast_worker)
    else:
        asyncio.run(main(parsed))
