"""The render cache's rules and contracts: when a task may reuse an earlier result, and what crosses Temporal.

A task's content key (taskservice/content_key.py) names everything that decides its output. Whether a task
looks its key up, and whether its result is kept under it, follows from its type's `CachePolicy` (declared
in the catalog) and the submit's `cache` mode; the API freezes that decision into the workflow input
(`CachePlan`), so the workflow never reads the catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Manifests live in the object store beside the media, one per tenant and key.
MANIFEST_PREFIX = "cache"
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


class CacheMode(StrEnum):
    """The submit's `cache` field."""

    # Reuse where the output is deterministic given the key (the type's policy says when).
    AUTO = "auto"
    # Reuse even where the output is not deterministic (an LLM evaluation asked again).
    REUSE = "reuse"
    # Render again and replace the entry.
    REFRESH = "refresh"
    OFF = "off"


class CachePolicy(StrEnum):
    """When a task type's output is deterministic given its content key (what `auto` reuses)."""

    # Only with an explicit `seed` in task_data (diffusion: no seed means a random one).
    SEEDED = "seeded"
    ALWAYS = "always"
    # LLM types: sampled text; reusable only when the caller asks (`reuse`).
    NEVER = "never"


@dataclass
class CachePlan:
    """What a task does with the cache, decided at submit: look its key up, keep its result under it."""

    lookup: bool
    store: bool


def cache_plan(policy: CachePolicy, mode: str, task_data: dict[str, Any]) -> CachePlan | None:
    """The plan of a task of this policy submitted with this mode; None: the cache is not involved."""
    if mode == CacheMode.OFF:
        return None
    if mode == CacheMode.REUSE:
        return CachePlan(lookup=True, store=True)
    deterministic = policy == CachePolicy.ALWAYS or (
        policy == CachePolicy.SEEDED and task_data.get("seed") is not None
    )
    if mode == CacheMode.REFRESH:
        return CachePlan(lookup=False, store=True)
    return CachePlan(lookup=True, store=True) if deterministic else None


# The coalesced render's workflow type and its attach signal, by name where the `join_render` activity
# starts it (workflows/coalesce.py declares them; importing it there would be circular).
RENDER_WORKFLOW = "RenderWorkflow"
ATTACH_SIGNAL = "attach"
# Sent by a waiting task that is cancelled: the render is cancelled once no task waits on it.
DETACH_SIGNAL = "detach"


def render_workflow_id(tenant: str, key: str) -> str:
    """The one render of a key per tenant: its workflow ID."""
    return f"render-{tenant}-{key}"


def manifest_key(tenant: str, key: str) -> str:
    """Where a tenant's entry of a key is kept: `cache/<tenant>/<key>.json`."""
    if not _SAFE_PART.fullmatch(tenant) or not re.fullmatch(r"[0-9a-f]{64}", key):
        raise ValueError(f"unsafe cache manifest key for tenant {tenant!r}")
    return f"{MANIFEST_PREFIX}/{tenant}/{key}.json"


@dataclass
class CacheLookupInput:
    """Input of the `lookup_cache` activity: the task, and whether an entry may answer it."""

    task_id: str
    tenant: str
    task_type: str
    task_data: dict[str, Any]
    lookup: bool


@dataclass
class CacheHit:
    """An entry that answers a task: the source's result (media URLs signed again for this task)."""

    result: dict[str, Any]
    source_task_id: str
    saved_seconds: float


@dataclass
class CacheLookup:
    """The task's content key (None: it could not be computed, e.g. an input URL failed), and the entry that
    answers it, if any."""

    key: str | None
    hit: CacheHit | None = None
    # The hashes of the inputs given by URL (url → sha256): part of the output's provenance.
    input_hashes: dict[str, str] = field(default_factory=dict)


@dataclass
class CacheStoreInput:
    """Input of the `store_cache` activity: keep a completed task's result under its key."""

    task_id: str
    tenant: str
    task_type: str
    key: str
    result: dict[str, Any]
    processing_seconds: float


@dataclass
class CacheManifest:
    """What the object store keeps per entry (`cache/<tenant>/<key>.json`)."""

    key: str
    task_type: str
    source_task_id: str
    created: str
    processing_seconds: float
    result: dict[str, Any]
    # Storage keys of the entry's files: the entry is a miss once one of them is gone.
    media_keys: list[str] = field(default_factory=list)


def cache_field(key: str, hit: CacheHit | None, *, coalesced: bool = False) -> dict[str, Any]:
    """`result.cache`: whether the result came from the cache, under which key, from which task."""
    if hit is None:
        return {"hit": False, "key": key}
    return {
        "hit": True,
        "key": key,
        "source_task_id": hit.source_task_id,
        "saved_seconds": hit.saved_seconds,
        **({"coalesced": True} if coalesced else {}),
    }
