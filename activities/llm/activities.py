"""LLM task types on an OpenAI-compatible chat completions endpoint: test_prompt, evaluate_department,
automated_gather_creation and seed 004's run_llm_inference."""

from __future__ import annotations

import time
from typing import Any

from openai.types.chat import ChatCompletionMessageParam
from temporalio import activity

from activities.llm.chat import AIServiceUnavailable, ChatClient, Usage
from activities.llm.prompts import (
    EVALUATION_SYSTEM_PROMPT,
    GATHER_SYSTEM_PROMPT,
    Evaluation,
    GatherItemOut,
    GatherPlan,
    evaluation_prompt,
    gather_item_prompt,
    gather_plan_prompt,
    with_item_count,
)
from activities.resources import WorkerResources
from activities.runtime import TaskActivities, TaskProgress, run_task
from taskservice.contracts import TaskActivityInput, TaskAttemptResult
from taskservice.task_data import (
    AutomatedGatherCreationData,
    EvaluateDepartmentData,
    RunLLMInferenceData,
    TestPromptData,
    TranslateDialogueData,
    render_template,
)


class LLMActivities(TaskActivities):
    """The LLM activities, on this process's client of the configured endpoint."""

    def __init__(self, resources: WorkerResources) -> None:
        self._chat = ChatClient(resources.settings)

    async def aclose(self) -> None:
        await self._chat.aclose()

    @activity.defn
    async def test_prompt(self, task: TaskActivityInput) -> TaskAttemptResult:
        return await run_task(task, TestPromptData, self._test_prompt)

    @activity.defn
    async def run_llm_inference(self, task: TaskActivityInput) -> TaskAttemptResult:
        return await run_task(task, RunLLMInferenceData, self._inference)

    @activity.defn
    async def translate_dialogue(self, task: TaskActivityInput) -> TaskAttemptResult:
        return await run_task(task, TranslateDialogueData, self._translate)

    @activity.defn
    async def evaluate_department(self, task: TaskActivityInput) -> TaskAttemptResult:
        return await run_task(task, EvaluateDepartmentData, self._evaluate)

    @activity.defn
    async def automated_gather_creation(self, task: TaskActivityInput) -> TaskAttemptResult:
        return await run_task(task, AutomatedGatherCreationData, self._gather)

    async def _test_prompt(self, data: TestPromptData, progress: TaskProgress) -> dict[str, Any]:
        rendered = render_template(data.prompt_template, data.test_parameters)
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": rendered}]
        if data.system_prompt:
            messages.insert(0, {"role": "system", "content": data.system_prompt})
        progress.report(0.1, "calling_llm")
        started = time.monotonic()
        usage = Usage()
        completion = await self._chat.complete(
            messages, usage, model=data.model, temperature=data.temperature, max_tokens=data.max_tokens
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

    async def _inference(self, data: RunLLMInferenceData, progress: TaskProgress) -> dict[str, Any]:
        progress.report(0.1, "calling_llm")
        usage = Usage()
        messages: list[ChatCompletionMessageParam] = [m for m in data.chat()]  # type: ignore[misc]
        completion = await self._chat.complete(
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

    async def _translate(self, data: TranslateDialogueData, progress: TaskProgress) -> dict[str, Any]:
        """One completion per line (progress and cancellation at each), earlier lines as context."""
        usage = Usage()
        system = (
            f"You translate film dialogue into {data.target_language}"
            + (f" from {data.source_language}" if data.source_language else "")
            + ". Keep each speaker's voice, register and length (for dubbing); answer with the translation."
            + (f" Style: {data.style_notes}" if data.style_notes else "")
        )
        translated: list[dict[str, Any]] = []
        model = data.model
        for index, line in enumerate(data.lines):
            progress.raise_if_stopped()
            progress.report(index / len(data.lines), f"translating {index + 1}/{len(data.lines)}")
            context = "\n".join(f"{t['character_id'] or '-'}: {t['source']}" for t in translated[-5:])
            speaker = f"{line.character_id}: " if line.character_id else ""
            prompt = (f"Scene so far:\n{context}\n\n" if context else "") + f"Translate: {speaker}{line.text}"
            messages: list[ChatCompletionMessageParam] = [
                {"role": "system", "content": system},
                {"role": "user", "content": prompt},
            ]
            completion = await self._chat.complete(messages, usage, model=data.model)
            model = completion.model
            text = (completion.choices[0].message.content or "").strip()
            translated.append({"character_id": line.character_id, "source": line.text, "text": text})
        return {
            "lines": translated,
            "target_language": data.target_language,
            "source_language": data.source_language,
            "model": model,
            "usage": usage.as_dict(),
        }

    async def _evaluate(self, data: EvaluateDepartmentData, progress: TaskProgress) -> dict[str, Any]:
        """The seed's evaluation; no gather data or an unreachable model give its fixed failing results."""
        started = time.monotonic()
        usage = Usage()
        fields: dict[str, Any]
        if not data.gather_data:
            fields = {
                "rating": 0,
                "evaluation_result": "fail",
                "evaluation_summary": "Insufficient data provided for evaluation",
                "issues": ["No gather data provided"],
                "suggestions": ["Gather content for department"],
                "metadata": {"model": None, "tokens_used": 0, "confidence_score": 0.0},
            }
            return _department_result(data.department_slug, usage, started, fields)
        progress.report(0.1, "evaluating")
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": EVALUATION_SYSTEM_PROMPT},
            {"role": "user", "content": evaluation_prompt(data)},
        ]
        try:
            evaluation = await self._chat.structured(messages, Evaluation, usage)
        except AIServiceUnavailable as err:
            fields = {
                "rating": 50,
                "evaluation_result": "fail",
                "evaluation_summary": f"Evaluation could not be completed: {err}",
                "issues": ["AI evaluation service unavailable"],
                "suggestions": ["Retry evaluation when service is available"],
                "degraded": True,
                "metadata": {"model": self._chat.default_model, "tokens_used": usage.total},
            }
            return _department_result(data.department_slug, usage, started, fields)
        fields = {
            "rating": evaluation.rating,
            "evaluation_result": "pass" if evaluation.rating >= data.threshold else "fail",
            "evaluation_summary": evaluation.evaluation_summary,
            "issues": evaluation.issues,
            "suggestions": evaluation.suggestions,
            "metadata": {
                "model": usage.last_model(self._chat.default_model),
                "tokens_used": usage.total,
                "confidence_score": evaluation.confidence_score,
            },
        }
        return _department_result(data.department_slug, usage, started, fields)

    async def _gather(self, data: AutomatedGatherCreationData, progress: TaskProgress) -> dict[str, Any]:
        """Plan the items in one call, then write each item in its own call, reporting every step."""
        started = time.monotonic()
        usage = Usage()
        steps = data.target_items + 1
        progress.report(0.0, f"planning 1/{steps}")
        plan = await self._chat.structured(
            [
                {"role": "system", "content": GATHER_SYSTEM_PROMPT},
                {"role": "user", "content": gather_plan_prompt(data)},
            ],
            GatherPlan,
            usage,
            schema=with_item_count(GatherPlan.model_json_schema(), data.target_items),
        )
        items: list[dict[str, Any]] = []
        for index, planned in enumerate(plan.items[: data.target_items], start=1):
            progress.report(index / steps, f"creating_item {index}/{data.target_items}")
            item = await self._chat.structured(
                [
                    {"role": "system", "content": GATHER_SYSTEM_PROMPT},
                    {"role": "user", "content": gather_item_prompt(data, planned)},
                ],
                GatherItemOut,
                usage,
            )
            items.append({"title": planned.title, **item.model_dump()})
        fields = {
            "items": items,
            "item_count": len(items),
            "metadata": {"model": usage.last_model(self._chat.default_model), "tokens_used": usage.total},
        }
        return _department_result(data.department_slug, usage, started, fields)


def _department_result(
    department: str, usage: Usage, started: float, fields: dict[str, Any]
) -> dict[str, Any]:
    """A department task's result: `fields` with the seed's department, call count and processing time."""
    return {
        "department": department,
        **fields,
        "iteration_count": usage.calls,
        "processing_time": round(time.monotonic() - started, 3),
    }
