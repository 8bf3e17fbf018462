"""evaluate_department and automated_gather_creation against the local OpenAI-compatible server."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from api.domain.errors import ValidationFailed
from api.service.submission import check_llm_options
from taskservice.settings import Settings
from tests.support.stack import Stack
from tests.support.tasks import submit, wait_status

GATHER = [
    {
        "content": "A young detective arrives in a small coastal town...",
        "summary": "Main story premise",
        "context": "Mystery thriller genre",
    },
    {
        "content": "Three-act structure with clear character arcs...",
        "summary": "Story structure",
        "context": "Narrative framework",
    },
]


def _evaluation(
    threshold: int, rating_directive: str = "", gather: list[dict[str, str]] | None = None
) -> dict:
    items = [dict(g) for g in (GATHER if gather is None else gather)]
    if items and rating_directive:
        items[0]["content"] += f" {rating_directive}"
    return {
        "department_slug": "story",
        "department_number": 1,
        "gather_data": items,
        "previous_evaluations": [
            {"department": "concept", "rating": 85, "summary": "Strong conceptual foundation"}
        ],
        "threshold": threshold,
    }


def _requests_with(stack: Stack, marker: str) -> list[dict[str, Any]]:
    """The chat requests that carry this test's marker (other tests' tasks may call the model meanwhile)."""
    return [r for r in stack.llm.chat_requests if any(marker in str(m["content"]) for m in r["messages"])]


async def test_evaluation_passes_at_or_above_threshold(api: httpx.AsyncClient, stack: Stack) -> None:
    marker = f"passes-{uuid.uuid4().hex}"
    task_id = await submit(api, "evaluate_department", _evaluation(80, f"{marker} [[rating=85]]"))
    status = await wait_status(api, task_id, "completed")
    result = status["result"]
    assert result["department"] == "story"
    assert result["rating"] == 85
    assert result["evaluation_result"] == "pass"
    assert isinstance(result["evaluation_summary"], str) and result["evaluation_summary"]
    assert result["issues"] and result["suggestions"]
    assert result["iteration_count"] == 1
    span = datetime.fromisoformat(status["completed_at"]) - datetime.fromisoformat(status["started_at"])
    assert 0 < result["processing_time"] <= span.total_seconds()
    assert result["metadata"]["model"] == "fake-model-1"
    assert result["metadata"]["tokens_used"] > 0
    assert 0 <= result["metadata"]["confidence_score"] <= 1
    [request] = _requests_with(stack, marker)
    assert request["response_format"]["type"] == "json_schema"
    assert "A young detective" in request["messages"][1]["content"]
    assert "concept: rating 85" in request["messages"][1]["content"]


async def test_evaluation_fails_below_threshold(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "evaluate_department", _evaluation(80, "[[rating=79]]"))
    result = (await wait_status(api, task_id, "completed"))["result"]
    assert result["rating"] == 79 and result["evaluation_result"] == "fail"


async def test_empty_gather_data_fails_without_calling_the_model(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    marker = f"empty-{uuid.uuid4().hex}"
    evaluation = _evaluation(80, gather=[])
    evaluation["previous_evaluations"][0]["summary"] = marker
    task_id = await submit(api, "evaluate_department", evaluation)
    result = (await wait_status(api, task_id, "completed"))["result"]
    assert result["rating"] == 0
    assert result["evaluation_result"] == "fail"
    assert result["evaluation_summary"] == "Insufficient data provided for evaluation"
    assert result["issues"] == ["No gather data provided"]
    assert result["suggestions"] == ["Gather content for department"]
    assert _requests_with(stack, marker) == []


async def test_ai_service_failure_gives_the_degraded_result(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "evaluate_department", _evaluation(80, "[[status=503]]"))
    result = (await wait_status(api, task_id, "completed"))["result"]
    assert result["rating"] == 50
    assert result["evaluation_summary"].startswith("Evaluation could not be completed:")
    assert result["issues"] == ["AI evaluation service unavailable"]
    assert result["suggestions"] == ["Retry evaluation when service is available"]
    assert result["degraded"] is True and result["evaluation_result"] == "fail"


async def test_out_of_range_model_output_is_reasked_then_degraded(api: httpx.AsyncClient) -> None:
    task_id = await submit(api, "evaluate_department", _evaluation(80, "[[rating=150]]"))
    result = (await wait_status(api, task_id, "completed"))["result"]
    assert result["degraded"] is True
    assert result["iteration_count"] == 2
    assert "did not match the schema" in result["evaluation_summary"]


async def test_gather_creation_plans_then_writes_each_item(api: httpx.AsyncClient, stack: Stack) -> None:
    marker = f"gather-{uuid.uuid4().hex}"
    task_id = await submit(
        api,
        "automated_gather_creation",
        {
            "department_slug": "character",
            "project_brief": f"A noir detective series in 1920s Chicago. {marker}",
            "project_title": "Detective",
            "target_items": 3,
            "focus_areas": ["protagonist"],
            "existing_gather_data": [{"content": "Detective Jones, 45, ex-boxer", "summary": "Lead"}],
        },
    )
    status = await wait_status(api, task_id, "completed")
    result = status["result"]
    assert result["department"] == "character"
    assert result["item_count"] == 3 and len(result["items"]) == 3
    for item in result["items"]:
        assert set(item) == {"title", "content", "summary", "context"}
    assert result["iteration_count"] == 4
    requests = _requests_with(stack, marker)
    assert len(requests) == 4
    plan_request = requests[0]
    assert "Plan exactly 3 new gather items" in plan_request["messages"][1]["content"]
    assert "Detective Jones" in plan_request["messages"][1]["content"]


async def test_llm_endpoint_rejecting_credentials_fails_without_retry(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    task_id = await submit(api, "test_prompt", {"prompt_template": "who am I [[status=401]]"})
    status = await wait_status(api, task_id, "failed")
    assert status["error"].startswith("AuthenticationFailed:")
    assert status["attempt"] == 1


async def test_dialogue_is_translated_line_by_line_with_the_scene_as_context(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    marker = f"dub-{uuid.uuid4().hex}"
    lines = [
        {"character_id": "jones", "text": f"Where were you last night? {marker}"},
        {"character_id": "mae", "text": "At the pictures, detective."},
        {"text": "(a door slams)"},
    ]
    data = {"lines": lines, "target_language": "French", "style_notes": "1920s Chicago slang"}
    task_id = await submit(api, "translate_dialogue", data)
    status = await wait_status(api, task_id, "completed")
    result = status["result"]
    assert [line["source"] for line in result["lines"]] == [line["text"] for line in lines]
    assert [line["character_id"] for line in result["lines"]] == ["jones", "mae", None]
    assert all(line["text"].startswith("FAKE-LLM:") for line in result["lines"])
    assert result["target_language"] == "French" and result["model"] == "fake-model-1"
    assert result["usage"]["total_tokens"] > 0
    # One completion per line; the second carries the first as the scene so far.
    requests = _requests_with(stack, marker)
    assert len(requests) == 3
    system, prompt = requests[1]["messages"]
    assert "French" in system["content"] and "1920s Chicago slang" in system["content"]
    assert f"jones: Where were you last night? {marker}" in prompt["content"]
    assert prompt["content"].endswith("Translate: mae: At the pictures, detective.")


async def test_translate_dialogue_needs_lines_and_a_language(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/tasks/submit",
        json={"project_id": "p_dub", "task_type": "translate_dialogue", "task_data": {"lines": []}},
    )
    assert response.status_code == 400
    assert {"task_data.lines", "task_data.target_language"} <= set(response.json()["details"])


async def test_only_allowed_models_and_capped_max_tokens_are_accepted(api: httpx.AsyncClient) -> None:
    """The stack allows LLM_MODEL (fake-model-1) only, and LLM_MAX_TOKENS' default cap of 4096."""
    chat = {"prompt": "hello"}
    body = {"project_id": "p_llm_limits", "task_type": "run_llm_inference"}
    refused = await api.post(
        "/api/v1/tasks/submit",
        json={**body, "task_data": {**chat, "model": "gpt-expensive", "max_tokens": 4097}},
    )
    assert refused.status_code == 400 and refused.json()["error"] == "validation_error", refused.text
    details = refused.json()["details"]
    assert "'gpt-expensive' is not allowed; allowed: fake-model-1" in details["task_data.model"]
    assert "at most 4096 tokens" in details["task_data.max_tokens"]
    task_id = await submit(api, "run_llm_inference", {**chat, "model": "fake-model-1", "max_tokens": 4096})
    assert (await wait_status(api, task_id))["status"] == "completed"


def test_allowed_models_and_per_type_caps_come_from_settings() -> None:
    settings = Settings(
        llm_model="fake-model-1",
        llm_allowed_models="fake-model-2, fake-model-3",
        llm_max_tokens=1000,
        llm_max_tokens_test_prompt=100,
    )
    assert settings.llm_models() == ["fake-model-1", "fake-model-2", "fake-model-3"]
    check_llm_options("run_llm_inference", {"model": "fake-model-3", "max_tokens": 1000}, settings)
    check_llm_options("test_prompt", {"max_tokens": 100}, settings)
    with pytest.raises(ValidationFailed) as refused:
        check_llm_options("test_prompt", {"model": "other", "max_tokens": 101}, settings)
    assert set(refused.value.extra["details"]) == {"task_data.model", "task_data.max_tokens"}
