"""What each task type's result holds, declared once (the catalog names one of these per type): the
top-level fields of `result` and the kind of value each is. A pipeline checks its references against them
before anything starts, and stands a typed placeholder in for a reference while it validates the step."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class ResultKind(StrEnum):
    """The kind of a result field's value."""

    URL = "url"
    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    OBJECT = "object"
    LIST = "list"
    # Unknown shape (a path inside an object field): no placeholder stands for it.
    ANY = "any"


ResultFields = Mapping[str, ResultKind]

# Every result the render cache may answer carries `cache` ({hit, key, ...}).
_CACHED: ResultFields = {"cache": ResultKind.OBJECT}
# Image, video and animation files: the file's signed URL and what it is (size, duration, fps, provenance).
MEDIA_RESULT: ResultFields = {
    "media_url": ResultKind.URL,
    "payload_media_id": ResultKind.STRING,
    "metadata": ResultKind.OBJECT,
    **_CACHED,
}
# Voice lines and mixes: the same shape (metadata: duration, sample_rate, format, channels, loudness).
AUDIO_RESULT: ResultFields = MEDIA_RESULT
_LLM_USAGE: ResultFields = {"model": ResultKind.STRING, "usage": ResultKind.OBJECT}
TEST_PROMPT_RESULT: ResultFields = {
    "prompt_id": ResultKind.STRING,
    "test_result_id": ResultKind.STRING,
    "agent_type": ResultKind.STRING,
    "rendered_prompt": ResultKind.STRING,
    "output": ResultKind.STRING,
    "finish_reason": ResultKind.STRING,
    "tokens_used": ResultKind.INTEGER,
    "latency_ms": ResultKind.NUMBER,
    **_LLM_USAGE,
}
LLM_INFERENCE_RESULT: ResultFields = {
    "message": ResultKind.OBJECT,
    "output": ResultKind.STRING,
    "finish_reason": ResultKind.STRING,
    **_LLM_USAGE,
}
TRANSLATION_RESULT: ResultFields = {
    "lines": ResultKind.LIST,
    "target_language": ResultKind.STRING,
    "source_language": ResultKind.STRING,
    **_LLM_USAGE,
}
_DEPARTMENT: ResultFields = {
    "department": ResultKind.STRING,
    "iteration_count": ResultKind.INTEGER,
    "processing_time": ResultKind.NUMBER,
    "metadata": ResultKind.OBJECT,
}
EVALUATION_RESULT: ResultFields = {
    "rating": ResultKind.INTEGER,
    "evaluation_result": ResultKind.STRING,
    "evaluation_summary": ResultKind.STRING,
    "issues": ResultKind.LIST,
    "suggestions": ResultKind.LIST,
    "confidence_score": ResultKind.NUMBER,
    "degraded": ResultKind.BOOLEAN,
    **_DEPARTMENT,
}
GATHER_RESULT: ResultFields = {"items": ResultKind.LIST, "item_count": ResultKind.INTEGER, **_DEPARTMENT}
CAPTION_RESULT: ResultFields = {
    "text": ResultKind.STRING,
    "prompt": ResultKind.STRING,
    "model": ResultKind.STRING,
    "image_width": ResultKind.INTEGER,
    "image_height": ResultKind.INTEGER,
    "image_source": ResultKind.STRING,
    "generated_tokens": ResultKind.INTEGER,
    "max_new_tokens": ResultKind.INTEGER,
}

_PLACEHOLDERS: dict[ResultKind, Any] = {
    ResultKind.STRING: "placeholder",
    ResultKind.NUMBER: 1.0,
    ResultKind.INTEGER: 1,
    ResultKind.BOOLEAN: True,
    ResultKind.OBJECT: {},
    ResultKind.LIST: [],
}


def placeholder(kind: ResultKind, marker: str) -> Any:
    """A value of `kind` to validate a downstream input with; a URL carries `marker` (it is found again by
    value after validation), None where the kind is unknown."""
    if kind == ResultKind.URL:
        return f"https://pipeline.invalid/{marker}"
    return _PLACEHOLDERS.get(kind)
