"""What the LLM task types ask the model: system prompts, user prompts built from task_data, and the
shapes the structured answers must take."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from taskservice.task_data import AutomatedGatherCreationData, EvaluateDepartmentData


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


def with_item_count(schema: dict[str, Any], count: int) -> dict[str, Any]:
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


def evaluation_prompt(data: EvaluateDepartmentData) -> str:
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


def gather_plan_prompt(data: AutomatedGatherCreationData) -> str:
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


def gather_item_prompt(data: AutomatedGatherCreationData, planned: GatherPlanItem) -> str:
    return (
        f"Project brief: {data.project_brief}\nDepartment: {data.department_slug}\n"
        f"Write the gather item '{planned.title}' (angle: {planned.angle}): the content itself, "
        "a one-line summary, and its context."
    )
