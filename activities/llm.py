"""LLM task types on an OpenAI-compatible chat completions endpoint: test_prompt, evaluate_department,
automated_gather_creation."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, Field, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.runtime import TaskProgress, parse_task_data, permanent_error, run_task
from taskservice.contracts import TaskActivityInput
from taskservice.settings import Settings
from taskservice.task_data import (
    AutomatedGatherCreationData,
    EvaluateDepartmentData,
    RunLLMInferenceData,
    TestPromptData,
    render_template,
)

M = TypeVar("M", bound=BaseModel)


class Evaluation(BaseModel):
    """What the model must return for evaluate_department (structured output)."""

    rating: int = Field(ge=0, le=100)
    evaluation_summary: str
    issues: list[str]
    suggestions: list[str]
    confidence_score: float = Field(ge=0, le=1)


class GatherPlanItem(BaseModel):
    title: str
    angle: str


class GatherPlan(BaseModel):
    items: list[GatherPlanItem]


class GatherItemOut(BaseModel):
    content: str
    summary: str
    context: str


@dataclass
class _Usage:
    """Token accounting across the calls one task makes."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    models: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        """OpenAI's usage shape."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total,
        }


class LLMActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        self._client: AsyncOpenAI | None = None
        if settings.openai_base_url or api_key:
            # Retries belong to Temporal's policy, not to the client: one request per attempt.
            self._client = AsyncOpenAI(
                base_url=settings.openai_base_url,
                api_key=api_key or "not-needed",
                timeout=settings.llm_timeout_s,
                max_retries=0,
            )

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [
            self.test_prompt,
            self.evaluate_department,
            self.automated_gather_creation,
            self.run_llm_inference,
        ]

    def cache_stats(self) -> dict[str, int]:
        return {}

    def loaded_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    # --- test_prompt -------------------------------------------------------------------------------

    @activity.defn(name="test_prompt")
    async def test_prompt(self, task: TaskActivityInput) -> dict[str, Any]:
        data = parse_task_data(TestPromptData, task)
        return await run_task(task, lambda progress: self._test_prompt(data, progress))

    async def _test_prompt(self, data: TestPromptData, progress: TaskProgress) -> dict[str, Any]:
        rendered = render_template(data.prompt_template, data.test_parameters)
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": rendered}]
        if data.system_prompt:
            messages.insert(0, {"role": "system", "content": data.system_prompt})
        progress.report(0.1, "calling_llm")
        started = time.monotonic()
        usage = _Usage()
        completion = await self._complete(
            messages,
            usage,
            model=data.model,
            temperature=data.temperature,
            max_tokens=data.max_tokens,
        )
        choice = completion.choices[0]
        return {
            "prompt_id": data.prompt_id,
            "test_result_id": data.test_result_id,
            "agent_type": data.agent_type,
            "rendered_prompt": rendered,
            "output": choice.message.content or "",
            "finish_reason": choice.finish_reason,
            "model": completion.model,
            "usage": usage.as_dict(),
            "tokens_used": usage.total,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
        }

    # --- run_llm_inference (seed 004) ------------------------------------------------------------

    @activity.defn(name="run_llm_inference")
    async def run_llm_inference(self, task: TaskActivityInput) -> dict[str, Any]:
        data = parse_task_data(RunLLMInferenceData, task)
        return await run_task(task, lambda progress: self._inference(data, progress))

    async def _inference(self, data: RunLLMInferenceData, progress: TaskProgress) -> dict[str, Any]:
        progress.report(0.1, "calling_llm")
        usage = _Usage()
        messages: list[ChatCompletionMessageParam] = [m for m in data.chat()]  # type: ignore[misc]
        completion = await self._complete(
            messages, usage, model=data.model, temperature=data.temperature, max_tokens=data.max_tokens
        )
        choice = completion.choices[0]
        return {
            "message": {"role": "assistant", "content": choice.message.content or ""},
            "output": choice.message.content or "",
            "finish_reason": choice.finish_reason,
            "model": completion.model,
            "usage": usage.as_dict(),
        }

    # --- evaluate_department ---------------------------------------------------------------------

    @activity.defn(name="evaluate_department")
    async def evaluate_department(self, task: TaskActivityInput) -> dict[str, Any]:
        data = parse_task_data(EvaluateDepartmentData, task)
        return await run_task(task, lambda progress: self._evaluate(data, progress))

    async def _evaluate(self, data: EvaluateDepartmentData, progress: TaskProgress) -> dict[str, Any]:
        started = time.monotonic()
        if not data.gather_data:
            return {
                "department": data.department_slug,
                "rating": 0,
                "evaluation_result": "fail",
                "evaluation_summary": "Insufficient data provided for evaluation",
                "issues": ["No gather data provided"],
                "suggestions": ["Gather content for department"],
                "iteration_count": 0,
                "processing_time": round(time.monotonic() - started, 3),
                "metadata": {"model": None, "tokens_used": 0, "confidence_score": 0.0},
            }
        progress.report(0.1, "evaluating")
        usage = _Usage()
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": EVALUATION_SYSTEM_PROMPT},
            {"role": "user", "content": _evaluation_prompt(data)},
        ]
        try:
            evaluation = await self._structured(messages, Evaluation, usage)
        except AIServiceUnavailable as err:
            return {
                "department": data.department_slug,
                "rating": 50,
                "evaluation_result": "fail",
                "evaluation_summary": f"Evaluation could not be completed: {err}",
                "issues": ["AI evaluation service unavailable"],
                "suggestions": ["Retry evaluation when service is available"],
                "iteration_count": usage.calls,
                "processing_time": round(time.monotonic() - started, 3),
                "degraded": True,
                "metadata": {"model": self._settings.llm_model, "tokens_used": usage.total},
            }
        return {
            "department": data.department_slug,
            "rating": evaluation.rating,
            "evaluation_result": "pass" if evaluation.rating >= data.threshold else "fail",
            "evaluation_summary": evaluation.evaluation_summary,
            "issues": evaluation.issues,
            "suggestions": evaluation.suggestions,
            "iteration_count": usage.calls,
            "processing_time": round(time.monotonic() - started, 3),
            "metadata": {
                "model": usage.models[-1] if usage.models else self._settings.llm_model,
                "tokens_used": usage.total,
                "confidence_score": evaluation.confidence_score,
            },
        }

    # --- automated_gather_creation -----------------------------------------------------------------

    @activity.defn(name="automated_gather_creation")
    async def automated_gather_creation(self, task: TaskActivityInput) -> dict[str, Any]:
        data = parse_task_data(AutomatedGatherCreationData, task)
        return await run_task(task, lambda progress: self._gather(data, progress))

    async def _gather(self, data: AutomatedGatherCreationData, progress: TaskProgress) -> dict[str, Any]:
        """Plan the items in one call, then write each item in its own call, reporting every step."""
        started = time.monotonic()
        usage = _Usage()
        steps = data.target_items + 1
        progress.report(0.0, f"planning 1/{steps}")
        plan_schema = _with_item_count(GatherPlan.model_json_schema(), data.target_items)
        plan = await self._structured(
            [
                {"role": "system", "content": GATHER_SYSTEM_PROMPT},
                {"role": "user", "content": _gather_plan_prompt(data)},
            ],
            GatherPlan,
            usage,
            schema=plan_schema,
        )
        items: list[dict[str, Any]] = []
        for index, planned in enumerate(plan.items[: data.target_items], start=1):
            progress.report(index / steps, f"creating_item {index}/{data.target_items}")
            item = await self._structured(
                [
                    {"role": "system", "content": GATHER_SYSTEM_PROMPT},
                    {"role": "user", "content": _gather_item_prompt(data, planned)},
                ],
                GatherItemOut,
                usage,
            )
            items.append({"title": planned.title, **item.model_dump()})
        return {
            "department": data.department_slug,
            "items": items,
            "item_count": len(items),
            "iteration_count": usage.calls,
            "processing_time": round(time.monotonic() - started, 3),
            "metadata": {
                "model": usage.models[-1] if usage.models else self._settings.llm_model,
                "tokens_used": usage.total,
            },
        }

    # --- plumbing --------------------------------------------------------------------------------

    async def _complete(
        self,
        messages: list[ChatCompletionMessageParam],
        usage: _Usage,
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
        kwargs: dict[str, Any] = {}
        if response_format is not None:
            kwargs["response_format"] = response_format
        if temperature is not None:
            kwargs["temperature"] = temperature
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        usage.calls += 1
        try:
            completion = await self._client.chat.completions.create(
                model=model or self._settings.llm_model, messages=messages, **kwargs
            )
        except openai.APIStatusError as err:
            if err.status_code in (401, 403):
                raise permanent_error(
                    f"LLM endpoint refused the credentials (HTTP {err.status_code})", "AuthenticationFailed"
                ) from None
            if 400 <= err.status_code < 500 and err.status_code not in (408, 409, 429):
                raise permanent_error(
                    f"LLM endpoint rejected the request (HTTP {err.status_code}): {_error_message(err)}",
                    "UpstreamClientError",
                ) from None
            raise AIServiceUnavailable(f"LLM endpoint answered HTTP {err.status_code}") from None
        except openai.APITimeoutError:
            raise AIServiceUnavailable("AI service timeout") from None
        except openai.APIConnectionError as err:
            raise AIServiceUnavailable(f"AI service unreachable: {err}") from None
        if completion.usage is not None:
            usage.prompt_tokens += completion.usage.prompt_tokens
            usage.completion_tokens += completion.usage.completion_tokens
        usage.models.append(completion.model)
        return completion

    async def _structured(
        self,
        messages: list[ChatCompletionMessageParam],
        model_cls: type[M],
        usage: _Usage,
        *,
        schema: dict[str, Any] | None = None,
    ) -> M:
        """One structured-output call; one re-ask if the reply does not fit the schema."""
        response_format = {
            "type": "json_schema",
            "json_schema": {
                "name": model_cls.__name__,
                "schema": _strict(schema or model_cls.model_json_schema()),
                "strict": True,
            },
        }
        last_error = ""
        for _ in range(2):
            completion = await self._complete(messages, usage, response_format=response_format)
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


class AIServiceUnavailable(ApplicationError):
    """The model could not be reached or gave no usable answer: transient, so Temporal retries it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="AIServiceUnavailable")


def build(settings: Settings) -> LLMActivities:
    return LLMActivities(settings)


def _error_message(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
    return err.message


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
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


def _with_item_count(schema: dict[str, Any], count: int) -> dict[str, Any]:
    schema = json.loads(json.dumps(schema))
    schema["properties"]["items"]["minItems"] = count
    schema["properties"]["items"]["maxItems"] = count
    return schema


EVALUATION_SYSTEM_PROMPT = (
    "You evaluate one department of a movie production for readiness. Rate 0-100 how complete, coherent "
    "and production-ready the gathered material is, summarise the state in 2-4 sentences, list concrete "
    "issues and actionable suggestions, and give your confidence between 0 and 1. Answer in JSON."
)

GATHER_SYSTEM_PROMPT = (
    "You are a development assistant on a movie production. You create 'gather' items: self-contained "
    "pieces of source material for one department (content, a one-line summary, and the context that "
    "explains where it fits). Answer in JSON."
)


def _evaluation_prompt(data: EvaluateDepartmentData) -> str:
    items = "\n\n".join(
        f"Item {i}:\nContent: {g.content}\nSummary: {g.summary or '-'}\nContext: {g.context or '-'}"
        for i, g in enumerate(data.gather_data, start=1)
    )
    previous = "\n".join(
        f"- {p.department}: rating {p.rating if p.rating is not None else '-'}; {p.summary or ''}"
        for p in data.previous_evaluations
    )
    return (
        f"Department: {data.department_slug} (number {data.department_number}); passing threshold "
        f"{data.threshold}.\n\nGathered material:\n{items}\n\n"
        f"Previous department evaluations:\n{previous or '- none'}"
    )


def _gather_plan_prompt(data: AutomatedGatherCreationData) -> str:
    existing = "\n".join(
        f"- {g.summary + ': ' if g.summary else ''}{g.content[:200]}" for g in data.existing_gather_data
    )
    focus = ", ".join(data.focus_areas) or "whatever the department needs most"
    return (
        f"Project: {data.project_title or 'untitled'}\nBrief: {data.project_brief}\n"
        f"Department: {data.department_slug}\nFocus: {focus}\n"
        f"Already gathered:\n{existing or '- nothing yet'}\n\n"
        f"Plan exactly {data.target_items} new gather items that do not repeat what exists: "
        "a short title and the angle each one takes."
    )


def _gather_item_prompt(data: AutomatedGatherCreationData, planned: GatherPlanItem) -> str:
    return (
        f"Project brief: {data.project_brief}\nDepartment: {data.department_slug}\n"
        f"Write the gather item '{planned.title}' (angle: {planned.angle}): the content itself, "
        "a one-line summary, and its context."
    )
