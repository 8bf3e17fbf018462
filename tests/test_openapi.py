"""The API describes itself: /openapi.json types every task type's `task_data`, declares its credentials and
each operation's real errors, describes every operation and parameter; /docs and /redoc work offline; a path
that is no route, or a method a route does not serve, is said plainly.

These build the application without its lifespan (no Temporal): the document, the docs pages and the
router's own errors need nothing else. `test_typescript_client_types_task_data_per_type` runs the generator
the TypeScript SDK is made with (openapi-typescript, from the npm registry) and the TypeScript compiler.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate
from pydantic import SecretStr

from api.main import create_app
from api.rest.openapi import variant_name
from api.rest.schemas import SubmitTaskRequest
from api.service import submission
from taskservice.catalog import CATALOG
from taskservice.settings import Settings
from taskservice.task_examples import SEED_EXAMPLES, TASK_DATA_EXAMPLES

PUBLIC = {("get", "/health"), ("get", "/media/{key}")}
SCHEMES = [{"APIKeyHeader": []}, {"HTTPBearer": []}]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(Settings(api_key=SecretStr("k" * 16), data_dir=tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        yield c


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_submit_body_is_a_union_discriminated_by_task_type(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    union = schemas["SubmitTaskRequest"]
    assert union["discriminator"]["propertyName"] == "task_type"
    mapping = union["discriminator"]["mapping"]
    assert list(mapping) == list(CATALOG)
    assert [one["$ref"] for one in union["oneOf"]] == list(mapping.values())
    for name, spec in CATALOG.items():
        variant = schemas[variant_name(spec)]
        assert mapping[name] == f"#/components/schemas/{variant_name(spec)}"
        assert variant["properties"]["task_type"]["const"] == name
        model = spec.input_model.__name__
        assert variant["properties"]["task_data"]["$ref"] == f"#/components/schemas/{model}"
        assert set(variant["required"]) == {"project_id", "task_type", "task_data"}
        # The model's own fields, required ones included, are in the document.
        fields = schemas[model]["properties"]
        assert set(spec.input_model.model_fields) <= set(fields)
        assert all(f.description for f in spec.input_model.model_fields.values()), model
        assert schemas[model]["examples"] and variant["examples"]
    batch_item = schemas["BatchSubmitRequest"]["properties"]["tasks"]["items"]
    assert batch_item == {"$ref": "#/components/schemas/SubmitTaskRequest"}
    examples = document["paths"]["/api/v1/tasks/submit"]["post"]["requestBody"]["content"]["application/json"]
    assert list(examples["examples"]) == list(CATALOG)


def test_every_example_is_accepted_by_the_submit_validation(document: dict[str, Any]) -> None:
    assert set(TASK_DATA_EXAMPLES) == set(CATALOG)
    for name, spec in CATALOG.items():
        submission.validate_task_data(spec, TASK_DATA_EXAMPLES[name])
    body = document["paths"]["/api/v1/tasks/submit"]["post"]["requestBody"]["content"]["application/json"]
    for example in body["examples"].values():
        parsed = SubmitTaskRequest.model_validate(example["value"])
        submission.validate_task_data(submission.task_spec(parsed.task_type), parsed.task_data)
    # Seed 001's examples appear verbatim.
    assert body["examples"]["generate_video"]["value"]["task_data"] == SEED_EXAMPLES["generate_video"]


def test_credentials_are_security_schemes_applied_per_operation(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["APIKeyHeader"]["description"],
    }
    assert schemes["HTTPBearer"]["scheme"] == "bearer" and schemes["HTTPBearer"]["bearerFormat"] == "JWT"
    for method, path, operation in _operations(document):
        headers = {p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"}
        assert not headers & {"x-api-key", "authorization"}, (method, path)
        if (method, path) in PUBLIC:
            assert "security" not in operation and "401" not in operation["responses"], (method, path)
        else:
            assert operation["security"] == SCHEMES, (method, path)
            assert "401" in operation["responses"], (method, path)


def test_each_operation_lists_the_errors_it_can_give(document: dict[str, Any]) -> None:
    codes = {(m, p): set(op["responses"]) for m, p, op in _operations(document)}
    assert codes[("get", "/health")] == {"200"}
    # /metrics counts every tenant's work: the admin key's, 403 for a tenant's key.
    assert codes[("get", "/metrics")] == {"200", "401", "403"}
    assert codes[("get", "/api/v1/tasks/{task_id}/status")] == {
        "200",
        "304",
        "400",
        "401",
        "404",
        "429",
        "503",
    }
    assert codes[("delete", "/api/v1/tasks/{task_id}")] == {"200", "400", "401", "404", "429", "503"}
    assert codes[("post", "/api/v1/tasks/submit")] == {"200", "400", "401", "413", "422", "429", "503"}
    assert codes[("get", "/media/{key}")] == {"200", "400", "404"}
    assert sorted(key for key, c in codes.items() if "403" in c) == [
        ("get", "/metrics"),
        ("post", "/api/v1/admin/cleanup"),
        ("post", "/api/v1/webhooks/secret/rotate"),
    ]
    assert sorted(key for key, c in codes.items() if "422" in c) == [
        ("post", "/api/v1/tasks/quote"),
        ("post", "/api/v1/tasks/submit"),
    ]
    submit_422 = document["paths"]["/api/v1/tasks/submit"]["post"]["responses"]["422"]
    assert set(submit_422["content"]["application/json"]["examples"]) == {
        "idempotency_key_reused",
        "deadline_unreachable",
    }
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and (method, path) != ("get", "/api/v1/health"):
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
                assert content["examples"], (path, status)
            if status in ("429", "503") and path != "/api/v1/health":
                assert "Retry-After" in response["headers"], (path, status)


def test_submit_status_and_quote_carry_their_estimates(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("SubmitTaskResponse", "TaskStatusResponse", "TaskQuoteResponse"):
        assert {"estimated_start_at", "estimated_completion_at", "estimate"} <= set(
            schemas[name]["properties"]
        )
    estimate = schemas["TaskEstimateBody"]["properties"]
    assert {"duration_p50_s", "duration_p90_s", "wait_p50_s", "completion_p90_at", "basis", "samples"} <= set(
        estimate
    )
    assert "/api/v1/tasks/estimates" in document["paths"]


def test_every_operation_and_parameter_is_described(document: dict[str, Any]) -> None:
    handlers = []
    for method, path, operation in _operations(document):
        assert operation.get("summary") and operation.get("description"), (method, path)
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), (method, path, parameter["name"])
        handlers.append(operation["operationId"])
    # Operation IDs are the handlers' names (what generated SDK methods are called), each once.
    assert len(handlers) == len(set(handlers)) and "submit_task" in handlers and "task_status" in handlers


def test_typescript_client_types_task_data_per_type(document: dict[str, Any], tmp_path: Path) -> None:
    """openapi-typescript (the TypeScript SDK's generator) gives each task type its typed `task_data`: tsc
    accepts a well-typed submit per type and rejects a wrong field type or another type's inputs."""
    npx = shutil.which("npx")
    assert npx, "Node.js (npx) is needed to check the document with the TypeScript generator"
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    # Fields with a default are optional in a request (the generator's default makes them required outside
    # `requestBody`, as in every FastAPI document): the README gives this command.
    generate = [npx, "--yes", "openapi-typescript@7", "openapi.json", "--default-non-nullable", "false"]
    generate += ["-o", "api.d.ts"]
    done = subprocess.run(generate, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    types = (tmp_path / "api.d.ts").read_text()
    assert re.search(r'task_type: "generate_video"', types) and "GenerateVideoData" in types
    (tmp_path / "check.ts").write_text(TYPESCRIPT_CHECK)
    compile_ = [npx, "--yes", "-p", "typescript@5", "tsc", "--noEmit", "--strict", "check.ts"]
    done = subprocess.run(compile_, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


TYPESCRIPT_CHECK = """
import type { components } from "./api";
type Submit = components["schemas"]["SubmitTaskRequest"];

const video: Submit = {
  project_id: "detective_series_001",
  task_type: "generate_video",
  task_data: { scene_description: "Detective enters the dark alley", duration: 7, resolution: "64x64" },
};
const voice: Submit = {
  project_id: "p",
  task_type: "generate_character_voice",
  task_data: { text: "Hello", emotion: "mysterious", sample_rate: 44100 },
  priority: "HIGH",
};
// @ts-expect-error: duration is a number
const wrongType: Submit = {
  project_id: "p",
  task_type: "generate_video",
  task_data: { scene_description: "x", duration: "7" },
};
// @ts-expect-error: a test_prompt's inputs are not a video's (scene_description is required)
const otherInputs: Submit = {
  project_id: "p",
  task_type: "generate_video",
  task_data: { prompt_template: "Hi" },
};
// @ts-expect-error: not an emotion the service knows
const badEmotion: Submit = {
  project_id: "p",
  task_type: "run_tts_inference",
  task_data: { text: "x", emotion: "bored" },
};

function inputs(task: Submit): string {
  // Narrowing on task_type types task_data.
  return task.task_type === "test_prompt" ? task.task_data.prompt_template : task.project_id;
}
export { video, voice, wrongType, otherInputs, badEmotion, inputs };
"""


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_every_asset_from_the_api_itself(client: httpx.AsyncClient, page: str) -> None:
    html = (await client.get(page)).text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(
        r"""(?:url|spec-url)[:=] ?['"]([^'"]+)""", html
    )
    assert assets and any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
        response = await client.get(asset)
        assert response.status_code == 200 and response.content, asset
    assert not re.search(r"https?://", html), f"{page} names an outside address"


async def test_a_path_that_is_no_route_is_404_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "message": "No route GET /api/v1/no-such-thing; the routes are listed at /docs",
    }


async def test_a_method_a_route_does_not_serve_is_405_with_allow(client: httpx.AsyncClient) -> None:
    wrong = await client.get("/api/v1/tasks/submit")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json() == {
        "error": "method_not_allowed",
        "message": "GET is not allowed on /api/v1/tasks/submit; it answers POST",
    }
    # A typo of a fixed path under /tasks/ is a task ID to the router: Allow names both methods of that path.
    typo = await client.post("/api/v1/tasks/submitt", json={})
    assert typo.status_code == 405 and typo.headers["allow"] == "GET, DELETE"
    assert typo.json()["message"] == "POST is not allowed on /api/v1/tasks/submitt; it answers GET, DELETE"
