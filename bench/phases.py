"""Where one of our tasks' time goes, from the event times of its workflow history and the client's clock."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client


@dataclass
class TaskTiming:
    task_id: str
    submitted_at: float  # wall clock (time.time) before the submit request
    submit_s: float  # submit request round trip
    latency_s: float  # submit → the client saw `completed`
    requests: int  # status requests it took (polls or waits)


def _t(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


def _kind(event: HistoryEvent) -> str:
    return event.WhichOneof("attributes") or ""


PHASES: list[tuple[str, str]] = [
    (
        "api_before_start",
        "API: submit received → workflow started (auth, validation, project count, start RPC)",
    ),
    ("submit_after_start", "API: workflow started → submit answered (cached queue position, response)"),
    ("wft1_poll", "first workflow task: scheduled → picked up by the worker (poll)"),
    ("wft1_run", "first workflow task: run on the worker (new workflow instance, schedule activity)"),
    ("activity_poll", "activity: scheduled → started on the worker (poll)"),
    ("activity_run", "activity: started → completed (LLM call, result; no start signal under 0.5 s)"),
    ("outcome", "activity completed → outcome in memo (workflow task poll + run)"),
    ("seen", "outcome in memo → client saw `completed` (status poll or long-poll wake + read)"),
    ("close", "outcome in memo → workflow closed (search attribute, slots; not on the client's path)"),
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
