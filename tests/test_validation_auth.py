"""Bad input gets a 400 in the seed's format (never a 500); keys are checked on every route."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.stack import API_KEYS, Stack

GOOD = {"project_id": "p_valid", "task_type": "test_prompt", "task_data": {"prompt_template": "hi"}}


async def _submit(api: httpx.AsyncClient, body: Any) -> httpx.Response:
    return await api.post("/api/v1/tasks/submit", json=body)


async def test_missing_fields_are_named_by_path(api: httpx.AsyncClient) -> None:
    response = await _submit(api, {"task_data": {}})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["details"]["project_id"] == "project_id is required"
    assert body["details"]["task_type"] == "task_type is required"


async def test_unknown_task_type(api: httpx.AsyncClient) -> None:
    response = await _submit(api, {**GOOD, "task_type": "make_coffee"})
    assert response.status_code == 400
    body = response.json()
    assert "Unknown task type 'make_coffee'" in body["details"]["task_type"]
    # The message itself says so and names the valid types (not a generic "Invalid task data").
    assert body["message"].startswith("Unknown task type 'make_coffee'")
    assert "generate_video" in body["message"] and "test_prompt" in body["message"]


@pytest.mark.parametrize(
    ("task_type", "task_data", "path"),
    [
        ("generate_video", {"scene_description": "alley", "duration": 31}, "task_data.duration"),
        ("generate_video", {"scene_description": "alley", "duration": 0}, "task_data.duration"),
        ("generate_video", {"duration": 7}, "task_data.scene_description"),
        (
            "generate_video",
            {"scene_description": "x", "storyboard_images": ["url1"]},
            "task_data.storyboard_images.0",
        ),
        ("generate_image", {"prompt": "cat", "resolution": "big"}, "task_data.resolution"),
        ("generate_image", {"prompt": "cat", "quality": "perfect"}, "task_data.quality"),
        ("generate_image", {"prompt": "cat", "num_inference_steps": 151}, "task_data.num_inference_steps"),
        ("generate_video", {"scene_description": "x", "quality": "perfect"}, "task_data.quality"),
        (
            "generate_video",
            {"scene_description": "x", "num_inference_steps": 0},
            "task_data.num_inference_steps",
        ),
        ("render_animation", {"action": "wave", "quality": "best"}, "task_data.quality"),
        (
            "render_animation",
            {"action": "wave", "num_inference_steps": "20"},
            "task_data.num_inference_steps",
        ),
        ("generate_character_voice", {"text": "hi", "output_format": "aiff"}, "task_data.output_format"),
        (
            "generate_character_voice",
            {"text": "hi", "background_noise": "lasers"},
            "task_data.background_noise",
        ),
        ("process_audio", {"tracks": []}, "task_data.tracks"),
        (
            "process_audio",
            {"tracks": [{"url": "http://a/b.wav"}], "operations": ["explode"]},
            "task_data.operations.0",
        ),
        (
            "evaluate_department",
            {"department_slug": "story", "department_number": 13, "gather_data": []},
            "task_data.department_number",
        ),
        (
            "evaluate_department",
            {"department_slug": "story", "department_number": 1},
            "task_data.gather_data",
        ),
        ("test_prompt", {"prompt_template": "Hello {{name}}"}, "task_data.test_parameters"),
        (
            "automated_gather_creation",
            {"department_slug": "story", "project_brief": "x", "target_items": 50},
            "task_data.target_items",
        ),
    ],
)
async def test_bad_task_data_per_type(
    api: httpx.AsyncClient, task_type: str, task_data: dict[str, Any], path: str
) -> None:
    response = await _submit(api, {"project_id": "p_valid", "task_type": task_type, "task_data": task_data})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["message"] == "Invalid task data"
    assert path in body["details"], body["details"]


async def test_duration_message_is_clear(api: httpx.AsyncClient) -> None:
    response = await _submit(
        api,
        {
            "project_id": "p",
            "task_type": "generate_video",
            "task_data": {"scene_description": "a", "duration": 45},
        },
    )
    assert response.json()["details"]["task_data.duration"] == "Input should be less than or equal to 30"


async def test_missing_template_variable_is_reported(api: httpx.AsyncClient) -> None:
    response = await _submit(
        api, {"project_id": "p", "task_type": "test_prompt", "task_data": {"prompt_template": "Hi {{who}}"}}
    )
    # Reported at the path where the value is missing, not at task_data as a whole.
    assert "{{who}}" in response.json()["details"]["task_data.test_parameters"]


async def test_malformed_json(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/tasks/submit", content=b'{"project_id": "p",', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["details"]["body"].startswith("Malformed JSON")


@pytest.mark.parametrize(
    "body",
    [
        [],
        "just a string",
        {"project_id": 5, "task_type": "test_prompt", "task_data": {}},
        {**GOOD, "task_data": "not an object"},
        {**GOOD, "priority": 9},
        {**GOOD, "project_id": "bad id/with slash"},
        {**GOOD, "callback_url": "ftp://example.com/hook"},
        {**GOOD, "metadata": [1, 2]},
    ],
)
async def test_garbage_is_400_never_500(api: httpx.AsyncClient, body: Any) -> None:
    response = await _submit(api, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "validation_error"


async def test_every_api_route_refuses_missing_or_wrong_key(stack: Stack) -> None:
    routes = [
        ("POST", "/api/v1/tasks/submit"),
        ("GET", "/api/v1/tasks/00000000-0000-4000-8000-000000000000/status"),
        ("DELETE", "/api/v1/tasks/00000000-0000-4000-8000-000000000000"),
        ("POST", "/api/v1/tasks/00000000-0000-4000-8000-000000000000/retry"),
        ("GET", "/api/v1/projects/p/tasks"),
        ("GET", "/api/v1/health"),
        ("GET", "/api/v1/tasks/metrics"),
        ("GET", "/api/v1/tasks/health"),
    ]
    async with httpx.AsyncClient(base_url=stack.api_url) as client:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": API_KEYS[0] + "x"}):
            for method, path in routes:
                response = await client.request(method, path, headers=headers, json=GOOD)
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["error"] == "authentication_failed"


async def test_both_configured_keys_are_accepted(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as client:
        for key in API_KEYS:
            response = await client.get("/api/v1/tasks/metrics", headers={"X-API-Key": key})
            assert response.status_code == 200


async def test_priority_accepts_seed_numbers_and_names(api: httpx.AsyncClient) -> None:
    for priority in (1, 2, 3, "1", "LOW", "normal", "HIGH", "URGENT"):
        response = await _submit(api, {**GOOD, "priority": priority})
        assert response.status_code == 200, (priority, response.text)
    for priority in (0, 4, "SUPER", True, 1.5):
        response = await _submit(api, {**GOOD, "priority": priority})
        assert response.status_code == 400, priority
        assert "priority" in response.json()["details"]
        # Every refusal names both accepted forms.
        assert "LOW|NORMAL|HIGH|URGENT" in response.json()["details"]["priority"], priority
