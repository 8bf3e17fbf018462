"""The repository's scripts (model builders, the README tables) loaded as modules; the tiny
models.

scripts/ is not a package: each script is loaded from its file, once per process.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
TEST_MODELS = ROOT / "data" / "test-models"


@functools.cache
def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_tiny_models(folder: Path = TEST_MODELS, names: list[str] | None = None) -> dict[str, Path]:
    """Tiny randomly initialised models (no downloads), built once into `folder` and reused across runs.

    `tiny-vits` (the voice) comes from build_tiny_tts.py, every other name from build_tiny_models.py;
    without `names`, all of them.
    """
    wanted = names or [*load_script("build_tiny_models").BUILDERS, "tiny-vits"]
    pipelines = [name for name in wanted if name != "tiny-vits"]
    folders: dict[str, Path] = (
        load_script("build_tiny_models").build_all(folder, names=pipelines) if pipelines else {}
    )
    if "tiny-vits" in wanted:
        vits = folder / "tiny-vits"
        if not (vits / "config.json").exists():
            load_script("build_tiny_tts").build(vits)
        folders["tiny-vits"] = vits
    return folders
