"""The Celery app (Redis broker and result backend) and its `test_prompt` task."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any

import redis
from celery import Celery
from openai import OpenAI

from bench.baseline_celery.config import BaselineConfig, task_key
from taskservice.task_data import TestPromptData, render_template

CONFIG = BaselineConfig.from_env()

app = Celery("baseline", broker=CONFIG.redis_url, backend=CONFIG.redis_url)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,
    result_expires=7 * 24 * 3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(CONFIG.redis_url, decode_responses=True)


@cache
def _openai() -> OpenAI:
    # One request per attempt, like our activity (retries belong to the task system).
    return OpenAI(base_url=CONFIG.openai_base_url, api_key=CONFIG.openai_api_key, max_retries=0, timeout=60)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _test_prompt(task_id: str, task_data: dict[str, Any]) -> dict[str, Any]:
    store = _redis()
    started_at = _now()
    store.hset(task_key(task_id), mapping={"status": "processing", "started_at": started_at, "progress": 0.1})
    begun = time.monotonic()
    try:
        data = TestPromptData.model_validate(task_data)
        rendered = render_template(data.prompt_template, data.test_parameters)
        messages: list[Any] = [{"role": "user", "content": rendered}]
        if data.system_prompt:
            messages.insert(0, {"role": "system", "content": data.system_prompt})
        completion = _openai().chat.completions.create(
            model=data.model or CONFIG.llm_model,
            messages=messages,
            temperature=data.temperature,
            max_tokens=data.max_tokens,
        )
        choice = completion.choices[0]
        usage = completion.usage
        result = {
            "prompt_id": data.prompt_id,
            "test_result_id": data.test_result_id,
            "agent_type": data.agent_type,
            "rendered_prompt": rendered,
            "output": choice.message.content or "",
            "finish_reason": choice.finish_reason,
            "model": completion.model,
            "usage": {
                "prompt_tokens": usage.prompt_tokens if usage else 0,
                "completion_tokens": usage.completion_tokens if usage else 0,
                "total_tokens": usage.total_tokens if usage else 0,
            },
            "tokens_used": usage.total_tokens if usage else 0,
            "latency_ms": round((time.monotonic() - begun) * 1000, 1),
        }
    except Exception as err:
        store.hset(
            task_key(task_id),
            mapping={"status": "failed", "error": f"{type(err).__name__}: {err}", "completed_at": _now()},
        )
        raise
    store.hset(
        task_key(task_id),
        mapping={
            "status": "completed",
            "progress": 1.0,
            "result": json.dumps(result),
            "completed_at": _now(),
            "processing_time": round(time.monotonic() - begun, 3),
        },
    )
    return result


test_prompt = app.task(name="test_prompt")(_test_prompt)
