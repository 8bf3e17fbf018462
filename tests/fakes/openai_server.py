"""A real HTTP stand-in for the OpenAI chat completions API, so tests exercise the genuine `openai` client.

Standard library only. Behaviour is deterministic and steered by directives embedded in message text:

- ``[[sleep=SECONDS]]``   sleep (float seconds) before answering; interrupted by ``stop()``.
- ``[[status=CODE]]``     answer with that HTTP status and an OpenAI-style error body.
- ``[[fail_times=N]]``    answer 500 to the first N requests with the same last user message, then succeed.
- ``[[reply=TEXT]]``      the text reply is exactly TEXT (everything up to the closing ``]]``).
- ``[[rating=NN]]``       structured output: a property named ``rating`` gets NN verbatim (not clamped, so
                          tests can also provoke out-of-range values).

Directives are searched in every message; when one appears more than once the last occurrence wins.
Without directives a text reply is ``"FAKE-LLM: " + <last user message>``; structured output
(``response_format`` ``json_schema``) is generated from the schema so that it validates (see ``generate``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast

__all__ = ["FakeOpenAIServer", "RecordedRequest", "generate", "parse_directives"]

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


# --- schema-driven value generator --------------------------------------------------------------------


def generate(
    schema: dict[str, Any], *, overrides: dict[str, Any] | None = None, root: dict[str, Any] | None = None
) -> Any:
    """A deterministic value that validates against ``schema`` (the JSON Schema subset used by OpenAI).

    Choices: objects get every property; arrays get 2 items clamped to minItems/maxItems; the n-th array
    item (n=1 outside arrays) takes the n-th enum value (cycling) or the string ``"Sample <name> <n>."``
    padded/truncated to minLength/maxLength (``format`` date/date-time/email/uri/uuid get a fitting
    constant); integers/numbers take the midpoint of minimum..maximum (integers floored, so 50 for
    0..100 and 0.5 for 0..1), or 42 clamped to a single bound; booleans are ``true``.
    ``anyOf``/``oneOf``/type lists take the first non-null branch. ``overrides`` maps a property name
    to a value used verbatim (the ``[[rating=NN]]`` directive). ``pattern`` is not honoured.
    """
    return _Generator(root or schema, overrides or {}).value(schema, "value", 1)


class _Generator:
    def __init__(self, root: dict[str, Any], overrides: dict[str, Any]) -> None:
        self.root = root
        self.overrides = overrides

    def resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        node: Any = self.root
        for token in [t for t in ref[1:].split("/") if t]:
            node = node[token.replace("~1", "/").replace("~0", "~")]
        return cast(dict[str, Any], node)

    def value(self, schema: dict[str, Any], name: str, index: int, depth: int = 0) -> Any:
        if depth > 32:
            raise ValueError("schema nesting too deep (recursive $ref?)")
        if "$ref" in schema:
            merged = {**self.resolve(schema["$ref"]), **{k: v for k, v in schema.items() if k != "$ref"}}
            return self.value(merged, name, index, depth + 1)
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part["$ref"]) if "$ref" in part else part
                for key, val in part.items():
                    if key == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **val}
                    elif key == "required":
                        merged["required"] = [*merged.get("required", []), *val]
                    else:
                        merged.setdefault(key, val)
            return self.value(merged, name, index, depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
                return self.value(options[0], name, index, depth + 1)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            choices = [c for c in schema["enum"] if c is not None] or schema["enum"]
            return choices[(index - 1) % len(choices)]
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if kind == "object":
            props: dict[str, Any] = schema.get("properties", {})
            return {
                key: self.overrides[key] if key in self.overrides else self.value(sub, key, index, depth + 1)
                for key, sub in props.items()
            }
        if kind == "array":
            return self.array(schema, name, depth)
        if kind == "string":
            return self.string(schema, name, index)
        if kind in ("integer", "number"):
            return self.number(schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        raise ValueError(f"unsupported schema type {kind!r}")

    def array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        count = max(2, int(schema.get("minItems", 0)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        prefix: list[dict[str, Any]] = schema.get("prefixItems", [])
        items = schema.get("items")
        item_schema: dict[str, Any] = items if isinstance(items, dict) else {}
        out: list[Any] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else item_schema
            out.append(self.value(sub, f"{name} item", i + 1, depth + 1))
        return out

    @staticmethod
    def string(schema: dict[str, Any], name: str, index: int) -> str:
        fixed = {
            "date-time": "2024-01-01T00:00:00Z",
            "date": "2024-01-01",
            "time": "00:00:00",
            "email": f"user{index}@example.com",
            "uri": f"https://example.com/{index}",
            "uuid": f"00000000-0000-4000-8000-{index:012d}",
        }
        text = fixed.get(str(schema.get("format")), f"Sample {name.replace('_', ' ')} {index}.")
        min_len, max_len = int(schema.get("minLength", 0)), schema.get("maxLength")
        if len(text) < min_len:
            text += "x" * (min_len - len(text))
        if max_len is not None:
            text = text[: int(max_len)]
        return text

    @staticmethod
    def number(schema: dict[str, Any], *, integer: bool) -> int | float:
        lo: float | None = schema.get("minimum")
        hi: float | None = schema.get("maximum")
        step = 1 if integer else 1e-6
        if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
            lo = schema["exclusiveMinimum"] + step
        if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
            hi = schema["exclusiveMaximum"] - step
        if lo is not None and hi is not None:
            value: float = (lo + hi) / 2
        else:
            value = 42
            if lo is not None:
                value = max(value, lo)
            if hi is not None:
                value = min(value, hi)
        if integer:
            value = math.floor(value)
            if lo is not None and value < lo:
                value = math.ceil(lo)
            return int(value)
        return value


# --- HTTP plumbing ---------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-response (timeouts, teardown) are expected; keep test output clean."""


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a stopped server never keeps serving a pooled connection.
    protocol_version = "HTTP/1.0"
    server_version = "FakeOpenAI/1.0"

    @property
    def owner(self) -> FakeOpenAIServer:
        return cast(_HTTPServer, self.server).owner

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        path = self.path.split("?", 1)[0].rstrip("/")
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.owner._record(RecordedRequest(method, path, headers, body))
        try:
            self.owner._check_auth(headers)
            if method == "GET" and path == "/v1/models":
                self._send(200, {"object": "list", "data": [self.owner._model_card(self.owner.model)]})
            elif method == "GET" and path.startswith("/v1/models/"):
                self._send(200, self.owner._model_card(path.removeprefix("/v1/models/")))
            elif method == "POST" and path == "/v1/chat/completions":
                if not isinstance(body, dict):
                    raise _ApiError(400, "We could not parse the JSON body of your request.")
                result = self.owner._chat_completion(body)
                if result is None:  # stopped while sleeping: drop the connection without an answer
                    self.close_connection = True
                    return
                self._send(200, result)
            else:
                raise _ApiError(404, f"Unknown request URL: {method} {self.path}")
        except _ApiError as err:
            self._send(err.status, _error_body(err.status, err.message))

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_KINDS.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# --- the server --------------------------------------------------------------------------------------------


class FakeOpenAIServer:
    """Serves ``/v1/chat/completions`` and ``/v1/models`` on 127.0.0.1 from a daemon thread.

    ``api_key=None`` accepts any ``Authorization: Bearer <key>``; a key given here must match exactly.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        model: str = DEFAULT_MODEL,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.model = model
        self.host = host
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failures: dict[str, int] = {}
        self._counter = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Self:
        """Bind (port 0 = a free one) and serve in a daemon thread; returns self for chaining."""
        if self._httpd is not None:
            raise RuntimeError("FakeOpenAIServer already started")
        self._stopping = threading.Event()
        httpd = _HTTPServer((self.host, self._port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, abort in-flight sleeps, close the socket. Idempotent."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Foreground mode (``python -m tests.fakes.openai_server``): serve until Ctrl-C."""
        if self._httpd is None:
            self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # introspection

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """What to pass as ``OpenAI(base_url=...)``."""
        return f"http://{self.host}:{self._port}/v1"

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

        if "sleep" in directives and self._stopping.wait(float(directives["sleep"])):
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
