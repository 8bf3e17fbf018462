"""Chat completions on the configured OpenAI-compatible endpoint: error mapping, token accounting and
structured output (a JSON schema, one re-ask when the reply does not fit)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError

from activities.runtime import permanent_error
from taskservice.settings import Settings
from taskservice.tracing import span

M = TypeVar("M", bound=BaseModel)


class AIServiceUnavailable(ApplicationError):
    """The model could not be reached or gave no usable answer: transient, so Temporal retries it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="AIServiceUnavailable")


@dataclass
class Usage:
    """Token accounting across the calls one task makes."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    models: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def last_model(self, default: str) -> str:
        """The model that answered last (the endpoint's name for it), else `default`."""
        return self.models[-1] if self.models else default

    def as_dict(self) -> dict[str, int]:
        """OpenAI's usage shape."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total,
        }


class ChatClient:
    """The configured endpoint. Retries belong to Temporal's policy, not the client: one request an attempt.

    The OpenAI SDK runs on its own HTTP library (httpx2), so it keeps its own connection pool rather than
    the worker's `httpx` client.
    """

    def __init__(self, settings: Settings) -> None:
        self.default_model = settings.llm_model
        api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        self._client: AsyncOpenAI | None = None
        if settings.openai_base_url or api_key:
            self._client = AsyncOpenAI(
                base_url=settings.openai_base_url,
                api_key=api_key or "not-needed",
                timeout=settings.llm_timeout_s,
                max_retries=0,
            )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def complete(
        self,
        messages: list[ChatCompletionMessageParam],
        usage: Usage,
        *,
        model: str | None = None,
        response_format: dict[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Any:
        if self._client is None:
            raise permanent_error(
                "No LLM endpoint configured: set OPENAI_BASE_URL and/or OPENAI_API_KEY", "ConfigurationError"
            )
        options = {"response_format": response_format, "temperature": temperature, "max_tokens": max_tokens}
        kwargs: dict[str, Any] = {name: value for name, value in options.items() if value is not None}
        usage.calls += 1
        model = model or self.default_model
        try:
            # The OpenAI SDK's httpx2 is not instrumented: the call is a span of ours.
            with span("llm.chat_completion", model=model):
                completion = await self._client.chat.completions.create(
                    model=model, messages=messages, **kwargs
                )
        except openai.APIStatusError as err:
            raise _status_error(err) from None
        except openai.APITimeoutError:
            raise AIServiceUnavailable("AI service timeout") from None
        except openai.APIConnectionError as err:
            raise AIServiceUnavailable(f"AI service unreachable: {err}") from None
        if completion.usage is not None:
            usage.prompt_tokens += completion.usage.prompt_tokens
            usage.completion_tokens += completion.usage.completion_tokens
        usage.models.append(completion.model)
        return completion

    async def structured(
        self,
        messages: list[ChatCompletionMessageParam],
        model_cls: type[M],
        usage: Usage,
        *,
        schema: dict[str, Any] | None = None,
    ) -> M:
        """One structured-output call; one re-ask if the reply does not fit the schema."""
        response_format = {
            "type": "json_schema",
            "json_schema": {
                "name": model_cls.__name__,
                "schema": strict_schema(schema or model_cls.model_json_schema()),
                "strict": True,
            },
        }
        last_error = ""
        for _ in range(2):
            completion = await self.complete(messages, usage, response_format=response_format)
            content = completion.choices[0].message.content or ""
            try:
                return model_cls.model_validate_json(content)
            except ValidationError as err:
                last_error = str(err.errors()[0]["msg"]) if err.errors() else str(err)
                messages = [
                    *messages,
                    {"role": "assistant", "content": content},
                    {
                        "role": "user",
                        "content": f"That reply did not match the schema ({last_error}). Try again.",
                    },
                ]
        raise AIServiceUnavailable(f"model output did not match the schema: {last_error}")


def _status_error(err: openai.APIStatusError) -> ApplicationError:
    """Credentials refused and client errors are permanent; the rest (5xx, 408/409/429) is retried."""
    if err.status_code in (401, 403):
        return permanent_error(
            f"LLM endpoint refused the credentials (HTTP {err.status_code})", "AuthenticationFailed"
        )
    if 400 <= err.status_code < 500 and err.status_code not in (408, 409, 429):
        return permanent_error(
            f"LLM endpoint rejected the request (HTTP {err.status_code}): {_error_message(err)}",
            "UpstreamClientError",
        )
    return AIServiceUnavailable(f"LLM endpoint answered HTTP {err.status_code}")


def _error_message(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
    return err.message


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI strict mode wants every object closed and every property required."""
    schema = json.loads(json.dumps(schema))

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema
