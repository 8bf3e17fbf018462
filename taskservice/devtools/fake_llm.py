"""A real HTTP stand-in for the OpenAI chat completions API: `make dev`'s LLM when none is configured, and the
tests' LLM, so both exercise the genuine `openai` client.

Standard library only. Behaviour is deterministic and steered by directives embedded in message text:

- ``[[sleep=SECONDS]]``   sleep (float seconds) before answering; interrupted by ``stop()``.
- ``[[status=CODE]]``     answer with that HTTP status and an OpenAI-style error body.
- ``[[fail_times=N]]``    answer 500 to the first N requests with the same last user message, then succeed.
- ``[[reply=TEXT]]``      the text reply is exactly TEXT (everything up to the closing ``]]``).
- ``[[rating=NN]]``       structured output: a property named ``rating`` gets NN verbatim (not clamped, so
                          tests can also provoke out-of-range values).

Directives are searched in every message; when one appears more than once the last occurrence wins.
Without directives a text reply is ``"FAKE-LLM: " + <last user message>``; structured output
(``response_format`` ``json_schema``) is generated from the schema so that it validates (see
``schema_sample.generate``).

    python -m taskservice.devtools.fake_llm --port 8002
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from taskservice.devtools.local_server import LocalHandler, LocalHTTPServer
from taskservice.devtools.schema_sample import generate

__all__ = ["FakeOpenAIServer", "RecordedRequest", "parse_directives"]

DEFAULT_MODEL = "fake-gpt"
_DIRECTIVE = re.compile(r"\[\[(sleep|status|fail_times|reply|rating)=(.*?)\]\]", re.DOTALL)
_ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout_error", "timeout"),
    409: ("conflict_error", "conflict"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, so tests can assert what the client actually sent."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    received_at: float = field(default_factory=time.monotonic)


# --- directives & text helpers -------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """Message content is a string or a list of parts; only text parts count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(parts)
    return ""


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("messages")
    return [m for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def parse_directives(text: str) -> dict[str, str]:
    """All ``[[name=value]]`` directives in ``text``; a later occurrence overrides an earlier one."""
    return {name: value for name, value in _DIRECTIVE.findall(text)}


def _words(text: str) -> int:
    return len(text.split())


def _number(raw: str) -> int | float:
    value = float(raw)
    return int(value) if value.is_integer() and "." not in raw else value


# --- HTTP plumbing ---------------------------------------------------------------------------------------


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Handler(LocalHandler):
    server_version = "FakeOpenAI/1.0"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        owner: FakeOpenAIServer = self.owner
        raw = self.read_body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        path = self.path.split("?", 1)[0].rstrip("/")
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner._record(RecordedRequest(method, path, headers, body))
        try:
            owner._check_auth(headers)
            if method == "GET" and path == "/v1/models":
                self._send(200, {"object": "list", "data": [owner._model_card(owner.model)]})
            elif method == "GET" and path.startswith("/v1/models/"):
                self._send(200, owner._model_card(path.removeprefix("/v1/models/")))
            elif method == "POST" and path == "/v1/chat/completions":
                if not isinstance(body, dict):
                    raise _ApiError(400, "We could not parse the JSON body of your request.")
                result = owner._chat_completion(body)
                if result is None:  # stopped while sleeping: drop the connection without an answer
                    self.close_connection = True
                    return
                self._send(200, result)
            else:
                raise _ApiError(404, f"Unknown request URL: {method} {self.path}")
        except _ApiError as err:
            self._send(err.status, _error_body(err.status, err.message))

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        self.send_body(status, json.dumps(payload).encode())


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_KINDS.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# --- the server --------------------------------------------------------------------------------------------


class FakeOpenAIServer(LocalHTTPServer):
    """Serves ``/v1/chat/completions`` and ``/v1/models`` on 127.0.0.1 from a daemon thread.

    ``api_key=None`` accepts any ``Authorization: Bearer <key>``; a key given here must match exactly.
    """

    handler = _Handler
    thread_name = "fake-openai"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        model: str = DEFAULT_MODEL,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.model = model
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failures: dict[str, int] = {}
        self._counter = 0

    # introspection

    @property
    def base_url(self) -> str:
        """What to pass as ``OpenAI(base_url=...)``."""
        return self.url("/v1")

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot (copy) of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the chat completion requests only."""
        return [
            r.json for r in self.requests if r.path == "/v1/chat/completions" and isinstance(r.json, dict)
        ]

    def clear(self) -> None:
        """Forget recorded requests and fail_times counters."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()

    # request handling (called from handler threads)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _check_auth(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise _ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if self.api_key is not None and key.strip() != self.api_key:
            raise _ApiError(401, "Incorrect API key provided.")

    def _model_card(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "fake-openai"}

    def _chat_completion(self, body: dict[str, Any]) -> dict[str, Any] | None:
        messages = _messages(body)
        if not messages:
            raise _ApiError(400, "'messages' must be a non-empty array.")
        if body.get("stream"):
            raise _ApiError(400, "Streaming is not supported by the fake OpenAI server.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _ApiError(400, "you must provide a model parameter")
        texts = [_text_of(m.get("content")) for m in messages]
        last_user = _last_user_text(messages)
        directives = parse_directives("\n".join(texts))

        if "sleep" in directives and self.stopping.wait(float(directives["sleep"])):
            return None
        if "status" in directives:
            status = int(directives["status"])
            raise _ApiError(status, f"Forced HTTP {status} by [[status={status}]] directive.")
        if "fail_times" in directives:
            with self._lock:
                seen = self._failures.get(last_user, 0)
                self._failures[last_user] = seen + 1
            if seen < int(directives["fail_times"]):
                raise _ApiError(500, f"Forced failure {seen + 1}/{directives['fail_times']} (fail_times).")

        reply = directives.get("reply", f"FAKE-LLM: {last_user}")
        content = self._content(body.get("response_format"), reply, directives)
        with self._lock:
            self._counter += 1
            counter = self._counter
        prompt_tokens = sum(_words(t) for t in texts)
        completion_tokens = _words(content)
        return {
            "id": f"chatcmpl-{counter}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    @staticmethod
    def _content(response_format: Any, reply: str, directives: dict[str, str]) -> str:
        if not isinstance(response_format, dict):
            return reply
        kind = response_format.get("type")
        if kind == "json_object":
            return json.dumps({"reply": reply})
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise _ApiError(400, "Missing required parameter: 'response_format.json_schema.schema'.")
            overrides = {"rating": _number(directives["rating"])} if "rating" in directives else {}
            try:
                return json.dumps(generate(schema, overrides=overrides))
            except (ValueError, KeyError, TypeError) as err:
                raise _ApiError(400, f"Invalid schema for response_format: {err}") from None
        return reply


def main(argv: list[str] | None = None) -> None:
    """Foreground entry point, e.g. for ``make dev``."""
    parser = argparse.ArgumentParser(description="Deterministic fake OpenAI chat completions server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--api-key", default=None, help="require exactly this bearer key")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model id listed by GET /v1/models")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(api_key=args.api_key, model=args.model, host=args.host, port=args.port).start()
    print(f"fake OpenAI server listening on {server.base_url} (Ctrl-C to stop)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
