"""Environment of both baseline processes (API and Celery worker)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class BaselineConfig:
    redis_url: str
    api_keys: tuple[bytes, ...]
    api_port: int
    openai_base_url: str | None
    openai_api_key: str
    llm_model: str

    @classmethod
    def from_env(cls) -> BaselineConfig:
        keys = tuple(k.strip().encode() for k in os.environ.get("API_KEY", "").split(",") if k.strip())
        return cls(
            redis_url=os.environ.get("BASELINE_REDIS_URL", "redis://127.0.0.1:6379/0"),
            api_keys=keys,
            api_port=int(os.environ.get("API_PORT", "8011")),
            openai_base_url=os.environ.get("OPENAI_BASE_URL") or None,
            openai_api_key=os.environ.get("OPENAI_API_KEY", "not-needed"),
            llm_model=os.environ.get("LLM_MODEL", "gpt-4o-mini"),
        )


def task_key(task_id: str) -> str:
    """The Redis hash holding one task's state (the seed's `task:{id}`)."""
    return f"task:{task_id}"
