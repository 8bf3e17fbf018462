"""Bare Temporal: the engine's own cost per task, the floor `bench.orchestration` measures us against.

One workflow and one no-op activity on another task queue, started and awaited with the SDK
(`execute_workflow`: a start and one long-poll on the result) — no API, no memo, no search attributes, no
signals. The dev server has the project's flags (`tests/support/processes.py`), and one worker process runs
both queues with 8 concurrent activities, as the service's `default` worker does in the bench.

    python -m bench.bare_temporal --worker ADDRESS    (the worker process the bench starts)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from tests.support.processes import ServiceProcess, TemporalDevServer

WORKFLOW_QUEUE = "bare-workflows"
ACTIVITY_QUEUE = "bare-activities"
CONCURRENCY = 8


@activity.defn(name="bare_noop")
async def bare_noop(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


@workflow.defn(name="BareTaskWorkflow", sandboxed=False)
class BareTaskWorkflow:
    @workflow.run
    async def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_activity(
            "bare_noop",
            payload,
            task_queue=ACTIVITY_QUEUE,
            start_to_close_timeout=timedelta(seconds=60),
            result_type=dict,
        )
        return result


async def run_worker(address: str) -> None:
    client = await Client.connect(address)
    workflows = Worker(
        client,
        task_queue=WORKFLOW_QUEUE,
        workflows=[BareTaskWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    activities = Worker(
        client, task_queue=ACTIVITY_QUEUE, activities=[bare_noop], max_concurrent_activities=CONCURRENCY
    )
    await asyncio.gather(workflows.run(), activities.run())


@dataclass
class BareStack:
    address: str
    client: Client
    pids: dict[str, int]


@asynccontextmanager
async def bare_stack() -> AsyncIterator[BareStack]:
    """A dev server with the project's flags and the bare worker process."""
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        workdir = Path(tmp)
        temporal = TemporalDevServer(workdir).start()
        worker = ServiceProcess(
            "bare-worker",
            ["bench.bare_temporal", "--worker", temporal.address],
            {"PYTHONUNBUFFERED": "1"},
            workdir / "worker.log",
        ).start()
        try:
            client = await Client.connect(temporal.address)
            await execute(client)  # the worker is polling once one task went through
            assert temporal.process is not None
            pids = {
                "worker (workflows + activities)": worker.pid,
                "Temporal dev server": temporal.process.pid,
            }
            yield BareStack(temporal.address, client, pids)
        finally:
            worker.stop()
            temporal.stop()


async def execute(client: Client) -> str:
    """One task: start the workflow and wait for its result; returns its workflow id."""
    workflow_id = str(uuid.uuid4())
    await client.execute_workflow(
        BareTaskWorkflow.run,
        {"prompt_template": "noop"},
        id=workflow_id,
        task_queue=WORKFLOW_QUEUE,
        execution_timeout=timedelta(minutes=5),
    )
    return workflow_id


async def timed_execute(client: Client) -> tuple[str, float, float]:
    """(workflow id, wall-clock start, seconds from start request to result)."""
    wall, began = time.time(), time.perf_counter()
    workflow_id = await execute(client)
    return workflow_id, wall, time.perf_counter() - began


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", metavar="ADDRESS", required=True)
    try:
        asyncio.run(run_worker(parser.parse_args().worker))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    os._exit(0)
