"""The API's layers import downwards only: domain <- store <- service <- runtime <- adapters (REST, GraphQL,
Socket.IO) <- main, read from every module's imports (those inside functions and TYPE_CHECKING blocks too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each layer of api/ and its rank: a module may import the api modules of its own rank and below.
LAYERS = {
    "api.domain": 0,
    "api.store": 1,
    "api.service": 2,
    "api.auth": 2,
    "api.runtime": 3,
    "api.rest": 4,
    "api.graphql": 4,
    "api.socketio": 4,
    "api.main": 5,
    "api.__main__": 5,
}
# Web frameworks belong to the adapters: the layers below them are plain Python.
FRAMEWORKS = ("fastapi", "starlette", "strawberry", "socketio")
MODULES = sorted((ROOT / "api").rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    """The layer a module belongs to (the longest prefix of LAYERS), None for the package itself."""
    found = [name for name in LAYERS if module == name or module.startswith(f"{name}.")]
    return max(found, key=len) if found else None


def _imports(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from api.service import submission` imports the module api.service.submission.
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def _violations(module: str, source: str) -> list[str]:
    """The imports of `module` (its source) that reach a layer above its own, or a web framework below
    the adapters."""
    layer = _layer(module)
    if layer is None:
        return []
    imports = _imports(source)
    upward = [
        name
        for name in imports
        if (imported := _layer(name)) is not None and LAYERS[imported] > LAYERS[layer]
    ]
    if LAYERS[layer] <= LAYERS["api.runtime"]:
        upward += [name for name in imports if name.split(".")[0] in FRAMEWORKS]
    return sorted(upward)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_a_layer_imports_only_the_layers_below_it(path: Path) -> None:
    module = _module_name(path)
    assert not _violations(module, path.read_text()), f"{module} imports from above its layer"


def test_every_module_has_a_layer() -> None:
    """A new top-level module of api/ is placed in a layer here, or the walk above would skip it."""
    unplaced = [str(p.relative_to(ROOT)) for p in MODULES if _layer(_module_name(p)) is None]
    assert unplaced == ["api/__init__.py"]


def test_the_walk_finds_what_goes_upward() -> None:
    """The check can fail: what the service layer once imported (the REST body) is reported, wherever the
    import stands, and so is a framework below the adapters."""
    source = """
from api.store.store import TaskStore
from api.rest import schemas
def f():
    import fastapi
    from api.graphql.types import ai_task
"""
    assert _violations("api.service.tasks", source) == [
        "api.graphql.types",
        "api.graphql.types.ai_task",
        "api.rest",
        "api.rest.schemas",
        "fastapi",
    ]
    assert _violations("api.rest.routes.tasks", source) == []
