"""A task's content key: SHA-256 over a canonical encoding of everything that decides its output.

What goes in: the canonical task type (aliases resolved to the activity that runs them), the validated
task_data with its defaults (inputs given by URL replaced by the SHA-256 of their fetched content), the
identity of each model the type's settings name (a local folder: a hash of its config JSONs and its files'
names and sizes, so a new checkpoint at the same path is a new key; a hub id: the id), and the other
output-affecting settings the type declares. What stays out: project, priority, callbacks, webhook events,
metadata (none of them are in task_data), and the URLs themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Version of the encoding below: changing what a key covers changes this, so old entries stop matching.
KEY_VERSION = 1
# Settings that name a model (hub id or local folder); the rest of a type's settings go in by value.
MODEL_SETTINGS = frozenset(
    {"image_model", "image_reference_model", "video_model", "animation_model", "caption_model", "tts_model"}
)
# Files of a model folder read whole into its fingerprint (the rest count by name and size).
_CONFIG_SUFFIXES = (".json", ".txt", ".model", ".yaml")
_CONFIG_MAX_BYTES = 4 * 1024 * 1024


def canonical_json(value: Any) -> bytes:
    """One encoding per value: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def input_urls(task_data: Any) -> list[str]:
    """Every string of task_data that is an http(s) URL, in order, once each."""
    found: list[str] = []
    for value in _strings(task_data):
        if is_url(value) and value not in found:
            found.append(value)
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _replace_urls(value: Any, hashes: dict[str, str]) -> Any:
    if isinstance(value, str) and value in hashes:
        return {"sha256": hashes[value]}
    if isinstance(value, dict):
        return {k: _replace_urls(v, hashes) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_urls(v, hashes) for v in value]
    return value


def content_key(
    task_type: str,
    task_data: dict[str, Any],
    settings: dict[str, Any],
    input_hashes: dict[str, str],
    fingerprints: ModelFingerprints,
) -> str:
    """The key of a task. `settings`: the type's output-affecting settings by name (model settings are
    replaced by their identity); `input_hashes`: the SHA-256 of each URL in task_data."""
    encoded = {
        "v": KEY_VERSION,
        "task_type": task_type,
        "task_data": _replace_urls(task_data, input_hashes),
        "settings": {
            name: fingerprints.identity(value) if name in MODEL_SETTINGS else value
            for name, value in sorted(settings.items())
        },
    }
    return hashlib.sha256(canonical_json(encoded)).hexdigest()


class ModelFingerprints:
    """Fingerprints of local model folders, computed once per folder state per process: the folder's
    files are listed (names, sizes, mtimes) on every call, the config files read again only when that
    listing changed."""

    def __init__(self, compute: Callable[[Path, list[tuple[str, int]]], str] | None = None) -> None:
        self._compute = compute or folder_fingerprint
        self._known: dict[str, tuple[tuple[tuple[str, int, int], ...], str]] = {}
        self._lock = threading.Lock()

    def of(self, path: str) -> str | None:
        """The folder's fingerprint; None when `path` is not a local folder (a hub id)."""
        folder = Path(path)
        if not folder.is_dir():
            return None
        listing = tuple(_listing(folder))
        with self._lock:
            known = self._known.get(path)
        if known is not None and known[0] == listing:
            return known[1]
        fingerprint = self._compute(folder, [(name, size) for name, size, _ in listing])
        with self._lock:
            self._known[path] = (listing, fingerprint)
        return fingerprint

    def identity(self, value: Any) -> Any:
        """A model setting's identity: for local folders (`a|b` names two) their fingerprints, else the id."""
        if not isinstance(value, str) or not value:
            return value
        return [
            {"path": part, "fingerprint": fingerprint} if (fingerprint := self.of(part)) else {"id": part}
            for part in value.split("|")
        ]


def _listing(folder: Path) -> Iterator[tuple[str, int, int]]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith("."):
                continue
            stat = path.stat()
            yield str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns


def folder_fingerprint(folder: Path, files: list[tuple[str, int]]) -> str:
    """SHA-256 of every file's name and size, and of the config files' contents (weights by size only:
    hashing gigabytes of weights per worker start would cost minutes)."""
    digest = hashlib.sha256()
    for name, size in files:
        digest.update(f"{name}\0{size}\n".encode())
        if name.endswith(_CONFIG_SUFFIXES) and size <= _CONFIG_MAX_BYTES:
            digest.update((folder / name).read_bytes())
    return digest.hexdigest()
