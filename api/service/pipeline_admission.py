"""A pipeline's admission, before anything starts: its graph (steps, references, cycles), each reference
against the fields its upstream type returns, then each step through the start path's own admission with a
typed placeholder standing in for each reference. Every error is a `validation_error` naming step and field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from api.domain.commands import StartTask
from api.domain.errors import ValidationFailed
from api.domain.pipelines import STEP_ID_PATTERN, StartPipeline, StepRequest
from api.service import submission
from api.service.starts import TaskStarts
from taskservice.catalog import CATALOG, TaskSpec
from taskservice.pipeline_contracts import MAX_PIPELINE_STEPS
from taskservice.pipeline_graph import Location, Reference, dependencies, dotted, find_cycle, references
from taskservice.record import TaskRecord
from taskservice.result_fields import ResultKind, placeholder

# Kinds tried in turn for a reference of unknown kind (a path inside an object field), until one validates.
_ANY_CANDIDATES = (
    ResultKind.URL,
    ResultKind.STRING,
    ResultKind.NUMBER,
    ResultKind.INTEGER,
    ResultKind.OBJECT,
    ResultKind.LIST,
    ResultKind.BOOLEAN,
)


@dataclass
class AdmittedStep:
    """A step that passed: its type, its record (task_data validated, references back in place)."""

    request: StepRequest
    spec: TaskSpec
    record: TaskRecord
    # Its task_data with placeholders: what its duration is estimated from.
    typed_data: dict[str, Any]


def check_graph(command: StartPipeline) -> dict[str, list[str]]:
    """Each step's upstream steps, once the step count, IDs, references and `after` are sound and acyclic."""
    steps = command.steps
    if not 1 <= len(steps) <= MAX_PIPELINE_STEPS:
        message = (
            f"a pipeline has 1 to {MAX_PIPELINE_STEPS} steps (MAX_PIPELINE_STEPS); this one has {len(steps)}"
        )
        raise ValidationFailed({"steps": message}, message=message)
    details: dict[str, str] = {}
    ids = [step.step_id for step in steps]
    for step in steps:
        if not re.fullmatch(STEP_ID_PATTERN, step.step_id):
            details[f"steps.{step.step_id}.id"] = f"a step ID must match {STEP_ID_PATTERN}"
        elif ids.count(step.step_id) > 1:
            details[f"steps.{step.step_id}.id"] = f"step ID '{step.step_id}' is given more than once"
    graph = {step.step_id: dependencies(step.task_data, step.after) for step in steps}
    for step in steps:
        for at, ref in references(step.task_data):
            if ref.step not in graph:
                field = f"steps.{step.step_id}.task_data.{dotted(at)}"
                details[field] = f"references unknown step '{ref.step}'; steps: {', '.join(ids)}"
        for upstream in step.after:
            if upstream not in graph:
                details[f"steps.{step.step_id}.after"] = f"unknown step '{upstream}'; steps: {', '.join(ids)}"
    if details:
        raise ValidationFailed(details, message=_first(details))
    cycle = find_cycle(graph)
    if cycle is not None:
        message = f"the steps form a cycle: {' -> '.join(cycle)}"
        raise ValidationFailed({f"steps.{cycle[0]}": message}, message=message)
    return graph


def reference_kind(ref: Reference, upstream: TaskSpec) -> ResultKind:
    """The kind of value a reference names in a step of the upstream type; ValueError if it names none."""
    parts = ref.parts
    if parts == ["task_id"]:
        return ResultKind.STRING
    if parts[0] != "result" or len(parts) < 2:
        raise ValueError(f"a reference's path is `task_id` or starts with `result.`, not '{ref.path}'")
    kind = upstream.result_fields.get(parts[1])
    if kind is None:
        known = ", ".join(upstream.result_fields)
        raise ValueError(f"{upstream.name} results have no field '{parts[1]}' (they have: {known})")
    if len(parts) == 2:
        return kind
    if kind in (ResultKind.OBJECT, ResultKind.LIST, ResultKind.ANY):
        return ResultKind.ANY
    raise ValueError(f"result.{parts[1]} of {upstream.name} is a {kind.value}: it has no field '{parts[2]}'")


async def admit_step(
    starts: TaskStarts, command: StartPipeline, step: StepRequest, types: dict[str, str]
) -> AdmittedStep:
    """One step through the start path's admission, a typed placeholder for each of its references."""
    spec = submission.task_spec(step.task_type, field=f"steps.{step.step_id}.task_type")
    found = list(references(step.task_data))
    kinds: dict[Location, ResultKind] = {}
    details: dict[str, str] = {}
    for at, ref in found:
        try:
            kinds[at] = reference_kind(ref, CATALOG[types[ref.step]])
        except ValueError as err:
            details[f"steps.{step.step_id}.task_data.{dotted(at)}"] = str(err)
    if details:
        raise ValidationFailed(details, message=_first(details))
    unknown = {at: 0 for at, kind in kinds.items() if kind == ResultKind.ANY}
    while True:
        values = {
            at: _placeholder(kinds[at], unknown.get(at), step.step_id, n) for n, (at, _) in enumerate(found)
        }
        typed = _set_all(step.task_data, values)
        try:
            _, record = await starts.admit(_start_task(command, step, typed))
            break
        except ValidationFailed as err:
            failing = {at for at in unknown if _fails_at(err, at)}
            if not failing or any(unknown[at] + 1 >= len(_ANY_CANDIDATES) for at in failing):
                raise _for_step(err, step.step_id) from None
            unknown |= {at: unknown[at] + 1 for at in failing}
    task_data = _reinsert(record.task_data, [(at, ref, values[at]) for at, ref in found])
    return AdmittedStep(step, spec, replace(record, task_data=task_data), typed)


def _placeholder(kind: ResultKind, candidate: int | None, step_id: str, n: int) -> Any:
    if candidate is not None:
        kind = _ANY_CANDIDATES[candidate]
    return placeholder(kind, f"{step_id}/ref-{n}")


def _start_task(command: StartPipeline, step: StepRequest, task_data: dict[str, Any]) -> StartTask:
    """The step as a task start (its callback is the pipeline's, checked once for the pipeline)."""
    return StartTask(
        tenant=command.tenant,
        user=command.caller.subject,
        caller=command.caller,
        project_id=command.project_id,
        task_type=step.task_type,
        task_data=task_data,
        priority=step.priority or command.priority,
        metadata=command.metadata,
        cache=step.cache or command.cache,
    )


def _set_all(value: dict[str, Any], values: dict[Location, Any]) -> dict[str, Any]:
    copy: dict[str, Any] = _copy(value)
    for at, item in values.items():
        _set(copy, at, item)
    return copy


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _set(container: Any, at: Location, item: Any) -> None:
    for part in at[:-1]:
        container = container[part]
    container[at[-1]] = item


def _reinsert(validated: dict[str, Any], found: list[tuple[Location, Reference, Any]]) -> dict[str, Any]:
    """The validated task_data with each reference back where its placeholder stands (a URL placeholder is
    found by value, wherever validation put it; another, or one validation rewrote, by its location)."""
    by_value = {
        value: ref for _, ref, value in found if isinstance(value, str) and value.startswith("https://")
    }
    seen: set[str] = set()

    def back(value: Any) -> Any:
        if isinstance(value, str) and value in by_value:
            seen.add(value)
            ref = by_value[value]
            return {"from": ref.step, "path": ref.path}
        if isinstance(value, dict):
            return {k: back(v) for k, v in value.items()}
        if isinstance(value, list):
            return [back(v) for v in value]
        return value

    data: dict[str, Any] = back(validated)
    for at, ref, value in found:
        if not (isinstance(value, str) and value in seen):
            try:
                _set(data, at, {"from": ref.step, "path": ref.path})
            except (KeyError, IndexError, TypeError):
                raise ValidationFailed({f"task_data.{dotted(at)}": "a reference cannot stand here"}) from None
    return data


def _fails_at(err: ValidationFailed, at: Location) -> bool:
    field = f"task_data.{dotted(at)}"
    return any(key == field or key.startswith(f"{field}.") for key in err.extra.get("details", {}))


def _for_step(err: ValidationFailed, step_id: str) -> ValidationFailed:
    """A step's admission error, its fields under `steps.<id>.`."""
    details = {f"steps.{step_id}.{key}": value for key, value in err.extra.get("details", {}).items()}
    return ValidationFailed(details, message=f"step '{step_id}': {err.message}")


def _first(details: dict[str, str]) -> str:
    field, message = next(iter(details.items()))
    return f"{field}: {message}"
