"""The stand-ins the suite trusts (the fake LLM of `make dev`, the webhook receiver), over real sockets."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

from taskservice.devtools.fake_llm import FakeOpenAIServer, parse_directives
from taskservice.devtools.schema_sample import generate
from tests.support.webhook_receiver import WebhookReceiver

EVALUATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rating", "summary", "issues", "verdict", "details", "note"],
    "properties": {
        "rating": {"type": "integer", "minimum": 0, "maximum": 100},
        "summary": {"type": "string"},
        "issues": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 5},
        "verdict": {"type": "string", "enum": ["pass", "fail", "review"]},
        "details": {"$ref": "#/$defs/Details"},
        "note": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 8}]},
    },
    "$defs": {
        "Details": {
            "type": "object",
            "additionalProperties": False,
            "required": ["confidence", "tags", "flagged"],
            "properties": {
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3},
                "flagged": {"type": ["boolean", "null"]},
            },
        }
    },
}


def _schema_format(schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "Evaluation", "schema": schema, "strict": True}}


@pytest.fixture
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key="sk-test") as server:
        yield server


@pytest.fixture
def client(llm: FakeOpenAIServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=llm.base_url, api_key="sk-test", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


# --- FakeOpenAIServer --------------------------------------------------------------------------------------


def test_text_reply_and_usage(llm: FakeOpenAIServer, client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-test",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Rate the heist scene"},
        ],
    )
    choice = completion.choices[0]
    assert choice.message.content == "FAKE-LLM: Rate the heist scene"
    assert choice.finish_reason == "stop"
    assert completion.model == "gpt-test"
    assert completion.id.startswith("chatcmpl-")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 7  # 3 + 4 words
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == 12
    [request] = llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.json["messages"][1]["content"] == "Rate the heist scene"


def test_models_listing(llm: FakeOpenAIServer, client: OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [llm.model]


def test_auth_is_enforced(llm: FakeOpenAIServer) -> None:
    with OpenAI(base_url=llm.base_url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as err:
            bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert isinstance(err.value.body, dict)
    assert err.value.body["code"] == "invalid_api_key"
    response = httpx.post(f"{llm.base_url}/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 401
    assert set(response.json()["error"]) >= {"message", "type", "code"}


def test_streaming_is_refused(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)


def test_structured_output_validates(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Evaluate the script"}],
        response_format=_schema_format(EVALUATION_SCHEMA),
    )
    data = json.loads(completion.choices[0].message.content or "")
    assert set(data) == set(EVALUATION_SCHEMA["properties"])
    assert isinstance(data["rating"], int) and 0 <= data["rating"] <= 100
    assert data["rating"] == 50  # midpoint of 0..100
    assert isinstance(data["summary"], str) and data["summary"]
    assert 1 <= len(data["issues"]) <= 5 and all(isinstance(i, str) for i in data["issues"])
    assert data["verdict"] in ("pass", "fail", "review")
    assert 0 <= data["details"]["confidence"] <= 1
    assert len(data["details"]["tags"]) == 3
    assert data["details"]["flagged"] is True
    assert isinstance(data["note"], str) and len(data["note"]) <= 8
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(data, EVALUATION_SCHEMA)


def test_rating_directive_and_pydantic_parse(client: OpenAI) -> None:
    class Issue(BaseModel):
        title: str
        severity: Literal["low", "high"]

    class Evaluation(BaseModel):
        rating: int = Field(ge=0, le=100)
        evaluation_summary: str
        issues: list[Issue]
        confidence_score: float = Field(ge=0, le=1)

    completion = client.chat.completions.parse(
        model="m",
        messages=[{"role": "user", "content": "Evaluate [[rating=87]] please"}],
        response_format=Evaluation,
    )
    parsed = completion.choices[0].message.parsed
    assert parsed is not None
    assert parsed.rating == 87
    assert len(parsed.issues) == 2


def test_json_object_mode(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hello"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"reply": "FAKE-LLM: hello"}


def test_reply_directive(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [[reply=Exactly this, friend.]] y"}]
    )
    assert completion.choices[0].message.content == "Exactly this, friend."


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, openai.InternalServerError),
        (429, openai.RateLimitError),
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
    ],
)
def test_status_directive(client: OpenAI, status: int, error: type[openai.APIStatusError]) -> None:
    with pytest.raises(error) as caught:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"[[status={status}]]"}]
        )
    assert caught.value.status_code == status


def test_fail_times_then_success(llm: FakeOpenAIServer, client: OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "flaky [[fail_times=2]]"}]
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=messages)
    completion = client.chat.completions.create(model="m", messages=messages)
    assert completion.choices[0].message.content == "FAKE-LLM: flaky [[fail_times=2]]"
    # A different last user message has its own counter.
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "other [[fail_times=1]]"}]
        )
    assert len(llm.chat_requests) == 4


def test_fail_times_with_client_retries(llm: FakeOpenAIServer) -> None:
    with OpenAI(base_url=llm.base_url, api_key="sk-test", max_retries=2) as retrying:
        completion = retrying.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "[[fail_times=2]] retried"}]
        )
    assert completion.choices[0].message.content == "FAKE-LLM: [[fail_times=2]] retried"
    assert len(llm.requests) == 3


def test_sleep_directive_times_out_and_stop_is_quick() -> None:
    server = FakeOpenAIServer().start()
    with OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=0.3) as c:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "[[sleep=30]]"}])
        assert time.monotonic() - started < 5
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2


def test_sleep_directive_delays_answer(client: OpenAI) -> None:
    started = time.monotonic()
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "[[sleep=0.3]] hi"}])
    assert time.monotonic() - started >= 0.3


def test_generator_edge_cases() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "exclusiveMinimum": 10},
            "x": {"type": "number", "maximum": -5},
            "code": {"type": "string", "minLength": 40},
            "fixed": {"const": "v1"},
            "one": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 1},
            "many": {"type": "array", "items": {"type": "integer"}, "minItems": 4},
            "nested": {"allOf": [{"$ref": "#/definitions/Inner"}]},
        },
        "definitions": {"Inner": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
    }
    value = generate(schema)
    assert value["n"] == 42 and value["x"] == -5 and len(value["code"]) >= 40
    assert value["fixed"] == "v1" and value["one"] == ["a"] and value["many"] == [42] * 4
    assert value["nested"] == {"ok": True}
    assert parse_directives("[[reply=a]] [[sleep=1.5]] [[reply=b]]") == {"reply": "b", "sleep": "1.5"}


# --- WebhookReceiver ---------------------------------------------------------------------------------------


def test_webhook_records_body_and_headers(receiver: WebhookReceiver) -> None:
    response = httpx.post(
        receiver.url("/hook?x=1"), json={"event": "task.completed"}, headers={"Webhook-Id": "msg_1"}
    )
    assert response.status_code == 200
    [hook] = receiver.wait_for(1, timeout=2)
    assert hook.path == "/hook?x=1"
    assert hook.headers["webhook-id"] == "msg_1"
    assert hook.headers["content-type"] == "application/json"
    assert hook.json == {"event": "task.completed"}
    assert json.loads(hook.body_bytes) == hook.json
    httpx.post(receiver.url(), content=b"not json")
    assert receiver.wait_for(2, timeout=2)[1].json is None


def test_webhook_respond_sequence_then_default(receiver: WebhookReceiver) -> None:
    receiver.respond_with(202)
    receiver.respond_sequence([(500, 0.0), (503, 0.2)])
    started = time.monotonic()
    statuses = [httpx.post(receiver.url(), json={"n": i}).status_code for i in range(3)]
    assert statuses == [500, 503, 202]
    assert time.monotonic() - started >= 0.2
    assert [w.json for w in receiver.received] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_webhook_delay_does_not_block_others(receiver: WebhookReceiver) -> None:
    receiver.respond_sequence([(200, 1.0)])
    slow = threading.Thread(target=lambda: httpx.post(receiver.url("/slow"), json={}, timeout=5))
    slow.start()
    receiver.wait_for(1, timeout=2)
    started = time.monotonic()
    assert httpx.post(receiver.url("/fast"), json={}).status_code == 200
    assert time.monotonic() - started < 0.5
    slow.join()


def test_webhook_slow_response_stop_is_quick() -> None:
    receiver = WebhookReceiver().start()
    receiver.respond_with(200, delay_s=35)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(receiver.url(), json={}, timeout=0.3)
    started = time.monotonic()
    receiver.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(httpx.ConnectError):
        httpx.post(receiver.url(), json={}, timeout=1)


def test_webhook_wait_for_times_out(receiver: WebhookReceiver) -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match="expected at least 1 webhook"):
        receiver.wait_for(1, timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 1
