"""What made an output (`result.metadata.provenance`): model and its fingerprint, libraries, recipe, build,
inputs and the output's own hash. Enough to tell whether two outputs share a recipe, and to compare a
re-render with its source."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskservice.content_key import ModelFingerprints
from taskservice.settings import Settings

LIBRARIES = ("diffusers", "torch", "transformers", "coqui-tts")
_HASH_CHUNK = 1024 * 1024


@dataclass
class Recipe:
    """How an output was made, as the activity ran it."""

    model_id: str
    seeds: list[int]
    steps: int
    size: tuple[int, int]
    device: str
    # Hashes of the inputs given by URL (url → sha256), in the order fetched.
    input_hashes: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class ProvenanceRecorder:
    """Builds provenance records; model fingerprints and the build are computed once per process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._fingerprints = ModelFingerprints()

    def record(self, recipe: Recipe, output: Path) -> dict[str, Any]:
        """Blocking (hashes the output file): the provenance of `output`, made by `recipe`."""
        models = [part for part in recipe.model_id.split("|") if part]
        width, height = recipe.size
        return {
            "model_id": recipe.model_id,
            "model_fingerprints": {m: self._fingerprints.of(m) for m in models},
            "libraries": library_versions(),
            "scheduler": _pipeline_config(models[0]).get("scheduler") if models else None,
            "guidance_scale": _pipeline_config(models[0]).get("guidance_scale") if models else None,
            "seeds": recipe.seeds,
            "steps": recipe.steps,
            "size": f"{width}x{height}",
            "device": recipe.device.split(":")[0],
            "build": build_commit(self._settings.build_commit),
            "input_hashes": recipe.input_hashes,
            "output_sha256": file_sha256(output),
            **recipe.extra,
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@functools.cache
def build_commit(setting: str | None) -> str | None:
    """BUILD_COMMIT, else the checkout's `git rev-parse HEAD` (read once per process), else None."""
    if setting:
        return setting
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def audio_provenance(
    settings: Settings, output: Path, *, model: str | None, input_hashes: dict[str, str], **recipe: Any
) -> dict[str, Any]:
    """Blocking (hashes the output): the provenance of an audio output."""
    return {
        "model_id": model,
        "libraries": library_versions(),
        "build": build_commit(settings.build_commit),
        "input_hashes": input_hashes,
        "output_sha256": file_sha256(output),
        **recipe,
    }


@functools.cache
def _pipeline_config(model_id: str) -> dict[str, Any]:
    """The scheduler class and the pipeline's default guidance scale, from a local folder's config files
    (a hub id: nothing; its revision pins both)."""
    folder = Path(model_id)
    config: dict[str, Any] = {}
    scheduler = folder / "scheduler" / "scheduler_config.json"
    if scheduler.is_file():
        config["scheduler"] = json.loads(scheduler.read_text()).get("_class_name")
    index = folder / "model_index.json"
    if index.is_file():
        pipeline = json.loads(index.read_text()).get("_class_name")
        config["guidance_scale"] = _default_guidance(pipeline) if isinstance(pipeline, str) else None
    return config


def _default_guidance(pipeline: str) -> float | None:
    import diffusers  # a media worker has it loaded already

    cls = getattr(diffusers, pipeline, None)
    if cls is None:
        return None
    parameter = inspect.signature(cls.__call__).parameters.get("guidance_scale")
    if parameter is None or not isinstance(parameter.default, int | float):
        return None
    return float(parameter.default)
