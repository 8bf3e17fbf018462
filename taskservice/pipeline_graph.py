"""A pipeline's graph, as pure functions: references inside task_data, dependencies, order, cycles, the
resolution of references against upstream outcomes, the steps a change reaches, the critical path.

Deterministic and free of I/O: the API validates with them and the pipeline workflow resolves with them.
A reference is the object `{"from": "<step id>", "path": "<dotted path into that step's status body>"}`,
standing anywhere a value may (inside lists and nested objects too).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A location inside task_data: keys and list indexes, from the top.
Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Reference:
    step: str
    path: str

    @property
    def parts(self) -> list[str]:
        return self.path.split(".")


class UnresolvedReference(Exception):
    """A reference whose path names nothing in the upstream step's status body."""

    def __init__(self, reference: Reference) -> None:
        super().__init__(f"step '{reference.step}' has no value at '{reference.path}'")
        self.reference = reference


def as_reference(value: Any) -> Reference | None:
    """The reference a value is: exactly the keys `from` and `path`, both strings."""
    if isinstance(value, dict) and set(value) == {"from", "path"}:
        step, path = value["from"], value["path"]
        if isinstance(step, str) and isinstance(path, str):
            return Reference(step, path)
    return None


def references(value: Any, at: Location = ()) -> Iterator[tuple[Location, Reference]]:
    """Every reference inside `value` and where it stands, in document order."""
    found = as_reference(value)
    if found is not None:
        yield at, found
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from references(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from references(item, (*at, index))


def dotted(location: Location) -> str:
    return ".".join(str(part) for part in location)


def substitute(value: Any, replace: Any) -> Any:
    """`value` with each reference replaced by `replace(reference)`."""
    found = as_reference(value)
    if found is not None:
        return replace(found)
    if isinstance(value, dict):
        return {key: substitute(item, replace) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, replace) for item in value]
    return value


def value_at(body: Mapping[str, Any], reference: Reference) -> Any:
    """The value a reference names in an upstream step's status body (list items by index)."""
    current: Any = body
    for part in reference.parts:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise UnresolvedReference(reference)
    if current is None:
        raise UnresolvedReference(reference)
    return current


def resolve(task_data: dict[str, Any], bodies: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """task_data with every reference replaced by the value it names in its step's body."""
    resolved: dict[str, Any] = substitute(task_data, lambda ref: value_at(bodies[ref.step], ref))
    return resolved


def dependencies(task_data: dict[str, Any], after: Sequence[str] = ()) -> list[str]:
    """The steps a step waits for: those it references, then those it is `after`, once each, in order."""
    found: list[str] = []
    for step in [*(ref.step for _, ref in references(task_data)), *after]:
        if step not in found:
            found.append(step)
    return found


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle of the graph (step → the steps it depends on) as the steps along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(step: str) -> list[str] | None:
        state[step] = 1
        path.append(step)
        for upstream in graph.get(step, ()):
            if state.get(upstream) == 1:
                return [*path[path.index(upstream) :], upstream]
            if upstream in graph and upstream not in state and (cycle := visit(upstream)) is not None:
                return cycle
        path.pop()
        state[step] = 2
        return None

    for step in graph:
        if step not in state and (cycle := visit(step)) is not None:
            return cycle
    return None


def downstream(graph: Mapping[str, Sequence[str]], changed: set[str]) -> set[str]:
    """The changed steps and every step that depends on one of them, directly or not."""
    reached = set(changed)
    grew = True
    while grew:
        grew = False
        for step, upstream in graph.items():
            if step not in reached and reached.intersection(upstream):
                reached.add(step)
                grew = True
    return reached


def critical_path(graph: Mapping[str, Sequence[str]], durations: Mapping[str, float]) -> float:
    """The longest chain of durations through the (acyclic) graph: the pipeline's least run time."""
    finish: dict[str, float] = {}

    def finish_of(step: str) -> float:
        if step not in finish:
            start = max((finish_of(u) for u in graph.get(step, ()) if u in graph), default=0.0)
            finish[step] = start + durations.get(step, 0.0)
        return finish[step]

    return max((finish_of(step) for step in graph), default=0.0)
