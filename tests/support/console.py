"""Reading a workflow's user metadata back as an operator does: the `temporal` CLI and the event history."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from tests.support.processes import ROOT, temporal_binary

DOCS = (ROOT / "README.md", ROOT / "docs" / "operations.md")
RECIPE = re.compile(r"<!-- recipe: ([a-z-]+) -->\n```bash\n(.*?)```", re.DOTALL)


@dataclass
class Shown:
    """What the CLI shows of one workflow: describe's summary and details, `metadata`'s current details."""

    summary: str
    details: str
    current: str
    describe_text: str


async def cli(address: str, namespace: str, *args: str, env: dict[str, str] | None = None) -> str:
    """`temporal <args>` against the server; its stdout (it must succeed)."""
    process = await asyncio.create_subprocess_exec(
        temporal_binary(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": namespace, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"temporal {' '.join(args)}: {err.decode()}"
    return out.decode()


async def shown(address: str, namespace: str, workflow_id: str) -> Shown:
    described = json.loads(
        await cli(address, namespace, "workflow", "describe", "-w", workflow_id, "-o", "json")
    )
    metadata = described["executionConfig"].get("userMetadata", {})
    queried = json.loads(
        await cli(address, namespace, "workflow", "metadata", "-w", workflow_id, "-o", "json")
    )
    current = queried["queryResult"][0].get("currentDetails", "")
    text = await cli(address, namespace, "workflow", "describe", "-w", workflow_id)
    return Shown(metadata.get("summary", ""), metadata.get("details", ""), current, text)


async def shown_when(
    address: str, namespace: str, workflow_id: str, ready: Callable[[Shown], bool], timeout: float = 30
) -> Shown:
    """`shown` once `ready` holds (current details follow the workflow a moment behind)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = await shown(address, namespace, workflow_id)
        if ready(seen):
            return seen
        assert time.monotonic() < deadline, f"{workflow_id} never got there; last shown: {seen}"
        await asyncio.sleep(0.3)


async def history_summaries(client: Client, workflow_id: str) -> list[tuple[str, str]]:
    """(event type, summary) of every event of the history that carries a summary."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    converter = client.data_converter.payload_converter
    found: list[tuple[str, str]] = []
    for event in history.events:
        if event.HasField("user_metadata") and event.user_metadata.HasField("summary"):
            summary = converter.from_payload(event.user_metadata.summary, str)
            found.append((event.WhichOneof("attributes") or "", summary))
    return found


def recipes(paths: tuple[Path, ...] = DOCS) -> dict[str, str]:
    """The operators' recipes (`<!-- recipe: name -->` then a bash block) of the README and the docs; a recipe
    that appears in both must read the same in both."""
    found: dict[str, str] = {}
    for path in paths:
        for name, body in RECIPE.findall(path.read_text()):
            assert found.get(name, body) == body, f"recipe {name!r} differs between README.md and docs/"
            found[name] = body
    return found
