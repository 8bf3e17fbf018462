"""A pipeline's graph as pure functions: references, resolution, cycles, closure, critical path; and the
admission's graph and reference-type checks (no Temporal needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from api.domain.caller import Caller
from api.domain.errors import ValidationFailed
from api.domain.pipelines import StartPipeline, StepRequest
from api.rest.pipeline_schemas import SubmitPipelineRequest
from api.service.pipeline_admission import check_graph, reference_kind
from taskservice.catalog import CATALOG
from taskservice.pipeline_contracts import MAX_PIPELINE_STEPS, StepOutcome, StepStatus
from taskservice.pipeline_graph import (
    Reference,
    UnresolvedReference,
    critical_path,
    dependencies,
    downstream,
    find_cycle,
    references,
    resolve,
)
from taskservice.result_fields import ResultKind, placeholder
from taskservice.task_examples import scene_pipeline_example


def _ref(step: str, path: str = "result.media_url") -> dict[str, str]:
    return {"from": step, "path": path}


def _pipeline(*steps: StepRequest) -> StartPipeline:
    return StartPipeline(caller=Caller("default"), project_id="p", steps=steps)


MIX = {"tracks": [{"url": _ref("line1")}, {"url": _ref("line2"), "offset_s": 2}]}


def test_references_are_found_anywhere_a_value_may_stand() -> None:
    found = list(references({"a": [1, {"b": _ref("x")}], "c": _ref("y", "task_id"), "d": {"from": 1}}))
    assert found == [(("a", 1, "b"), Reference("x", "result.media_url")), (("c",), Reference("y", "task_id"))]


def test_dependencies_are_references_then_after_once_each() -> None:
    assert dependencies(MIX, ("frame", "line1")) == ["line1", "line2", "frame"]


def test_resolve_takes_the_value_from_the_upstream_body() -> None:
    bodies = {
        "line1": StepOutcome("line1", "t1", StepStatus.COMPLETED, {"media_url": "https://m/1.mp3"}).body(),
        "line2": StepOutcome("line2", "t2", StepStatus.COMPLETED, {"media_url": "https://m/2.mp3"}).body(),
    }
    resolved = resolve(MIX, bodies)
    assert resolved == {"tracks": [{"url": "https://m/1.mp3"}, {"url": "https://m/2.mp3", "offset_s": 2}]}
    assert MIX["tracks"][0]["url"] == _ref("line1")  # type: ignore[index]  # the template is untouched
    lists = {"s": {"task_id": "t", "status": "completed", "result": {"lines": [{"text": "bonjour"}]}}}
    assert resolve({"text": _ref("s", "result.lines.0.text")}, lists) == {"text": "bonjour"}


def test_a_path_that_names_nothing_is_unresolved() -> None:
    bodies: dict[str, dict[str, Any]] = {"line1": {"task_id": "t", "result": {"metadata": {}}}}
    with pytest.raises(UnresolvedReference, match="line1"):
        resolve({"url": _ref("line1", "result.metadata.missing")}, bodies)


def test_cycles_are_found_with_their_path() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None


def test_downstream_is_the_closure_of_dependents() -> None:
    graph = {"frame": [], "video": ["frame"], "line1": [], "line2": [], "mix": ["line1", "line2"]}
    assert downstream(graph, {"line1"}) == {"line1", "mix"}
    assert downstream(graph, {"frame"}) == {"frame", "video"}


def test_critical_path_is_the_longest_chain() -> None:
    graph = {"frame": [], "video": ["frame"], "line1": [], "mix": ["line1"], "clip": ["video", "mix"]}
    durations = {"frame": 60, "video": 300, "line1": 20, "mix": 25, "clip": 10}
    assert critical_path(graph, durations) == 370


def test_reference_kinds_come_from_the_catalogs_result_fields() -> None:
    image, voice = CATALOG["generate_image"], CATALOG["generate_character_voice"]
    assert reference_kind(Reference("f", "result.media_url"), image) == ResultKind.URL
    assert reference_kind(Reference("f", "task_id"), image) == ResultKind.STRING
    assert reference_kind(Reference("f", "result.metadata.duration"), voice) == ResultKind.ANY
    with pytest.raises(ValueError, match="no field 'text'"):
        reference_kind(Reference("f", "result.text"), voice)
    with pytest.raises(ValueError, match="starts with `result.`"):
        reference_kind(Reference("f", "media_url"), voice)
    with pytest.raises(ValueError, match="is a url"):
        reference_kind(Reference("f", "result.media_url.x"), voice)
    assert all(spec.result_fields for spec in CATALOG.values()), "every type declares its result fields"
    assert placeholder(ResultKind.URL, "s/ref-0").startswith("https://")


def test_graph_checks_name_the_step_and_field() -> None:
    voice = {"text": "hi"}
    with pytest.raises(ValidationFailed) as cycle:
        check_graph(
            _pipeline(
                StepRequest("a", "process_audio", {"tracks": [{"url": _ref("b")}]}),
                StepRequest("b", "process_audio", {"tracks": [{"url": _ref("a")}]}),
            )
        )
    assert "cycle" in cycle.value.message and list(cycle.value.extra["details"]) == ["steps.a"]
    with pytest.raises(ValidationFailed) as unknown:
        check_graph(_pipeline(StepRequest("mix", "process_audio", {"tracks": [{"url": _ref("nope")}]})))
    assert list(unknown.value.extra["details"]) == ["steps.mix.task_data.tracks.0.url"]
    with pytest.raises(ValidationFailed) as after:
        check_graph(_pipeline(StepRequest("a", "generate_character_voice", voice, after=("zz",))))
    assert list(after.value.extra["details"]) == ["steps.a.after"]
    with pytest.raises(ValidationFailed) as twice:
        check_graph(_pipeline(*[StepRequest("a", "generate_character_voice", voice)] * 2))
    assert list(twice.value.extra["details"]) == ["steps.a.id"]
    count = MAX_PIPELINE_STEPS + 1
    too_many = [StepRequest(f"s{i}", "generate_character_voice", voice) for i in range(count)]
    with pytest.raises(ValidationFailed, match="MAX_PIPELINE_STEPS"):
        check_graph(_pipeline(*too_many))
    assert check_graph(_pipeline(StepRequest("a", "generate_character_voice", voice))) == {"a": []}


def test_the_readme_scene_and_the_openapi_example_are_sound_pipelines() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Pipelines") :]
    block = re.findall(r"```json\n(.*?)```", section, re.S)[0]
    for body in (json.loads(block), scene_pipeline_example()):
        request = SubmitPipelineRequest.model_validate(body)
        steps = tuple(StepRequest(s.id, s.task_type, s.task_data, tuple(s.after)) for s in request.steps)
        graph = check_graph(_pipeline(*steps))
        assert graph["video"] == ["frame"] and graph["mix"] == ["line1", "line2"]
        assert graph["clip"] == ["video", "mix"]


def test_priorities_are_taken_as_a_submit_takes_them() -> None:
    step = {"id": "a", "task_type": "test_prompt", "task_data": {"prompt_template": "x"}, "priority": 1}
    body = SubmitPipelineRequest.model_validate({"project_id": "p", "steps": [step], "priority": "LOW"})
    assert body.steps[0].priority is not None and body.steps[0].priority.value == "HIGH"
    assert body.priority.value == "LOW"
