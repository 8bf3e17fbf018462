"""The baseline's REST API: submit and status with our payloads, state in Redis, work sent to Celery."""

from __future__ import annotations

import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import redis
import uvicorn
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.rest.schemas import SubmitTaskRequest, SubmitTaskResponse, TaskStatusResponse
from bench.baseline_celery.config import BaselineConfig, task_key
from bench.baseline_celery.tasks import CONFIG, test_prompt
from taskservice.contracts import TaskStatus
from taskservice.task_data import TestPromptData, render_template

ESTIMATED_DURATION_S = 10


class _ApiError(Exception):
    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status_code = status_code
        self.body = body


def create_app(config: BaselineConfig = CONFIG) -> FastAPI:
    app = FastAPI(title="Baseline Celery task service")
    store = redis.Redis.from_url(config.redis_url, decode_responses=True)

    @app.exception_handler(_ApiError)
    async def api_error(request: Request, err: _ApiError) -> JSONResponse:
        return JSONResponse(err.body, status_code=err.status_code)

    def authenticate(x_api_key: Annotated[str | None, Header()] = None) -> None:
        provided = (x_api_key or "").encode()
        matched = False
        for key in config.api_keys:
            matched |= hmac.compare_digest(provided, key)
        if not provided or not matched:
            raise _ApiError(401, {"error": "authentication_failed", "message": "Invalid or missing API key"})

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # Sync endpoints: redis-py and kombu block, so FastAPI runs them in its thread pool (as the seed did).
    @app.post("/api/v1/tasks/submit", response_model=SubmitTaskResponse, dependencies=[Depends(authenticate)])
    def submit(body: SubmitTaskRequest) -> SubmitTaskResponse:
        if body.task_type != "test_prompt":
            raise _ApiError(400, {"error": "validation_error", "message": "Only test_prompt in the baseline"})
        try:
            data = TestPromptData.model_validate(body.task_data)
            render_template(data.prompt_template, data.test_parameters)
        except (ValidationError, ValueError) as err:
            raise _ApiError(400, {"error": "validation_error", "message": str(err)}) from None
        task_id = str(uuid.uuid4())
        created_at = datetime.now(UTC)
        task_data = data.model_dump(mode="json", exclude_none=True)
        store.hset(
            task_key(task_id),
            mapping={
                "task_id": task_id,
                "project_id": body.project_id,
                "task_type": body.task_type,
                "status": "queued",
                "progress": 0.0,
                "task_data": json.dumps(task_data),
                "metadata": json.dumps(body.metadata),
                "created_at": created_at.isoformat(),
            },
        )
        store.zadd(f"project:{body.project_id}:tasks", {task_id: created_at.timestamp()})
        test_prompt.apply_async(args=[task_id, task_data], task_id=task_id)
        return SubmitTaskResponse(
            task_id=task_id,
            status=TaskStatus.QUEUED,
            project_id=body.project_id,
            task_type=body.task_type,
            estimated_duration=ESTIMATED_DURATION_S,
            queue_position=max(1, int(store.llen("celery"))),
            created_at=created_at,
        )

    @app.get(
        "/api/v1/tasks/{task_id}/status",
        response_model=TaskStatusResponse,
        dependencies=[Depends(authenticate)],
    )
    def status(task_id: str) -> TaskStatusResponse:
        raw: dict[str, str] = store.hgetall(task_key(task_id))  # type: ignore[assignment]
        if not raw:
            raise _ApiError(
                404, {"error": "task_not_found", "message": f"Task with ID '{task_id}' not found"}
            )
        return TaskStatusResponse(
            task_id=task_id,
            project_id=raw["project_id"],
            task_type=raw["task_type"],
            status=TaskStatus(raw["status"]),
            progress=float(raw.get("progress", 0.0)),
            current_step=raw["status"],
            result=json.loads(raw["result"]) if raw.get("result") else None,
            error=raw.get("error"),
            created_at=datetime.fromisoformat(raw["created_at"]),
            started_at=datetime.fromisoformat(raw["started_at"]) if raw.get("started_at") else None,
            completed_at=datetime.fromisoformat(raw["completed_at"]) if raw.get("completed_at") else None,
            processing_time=float(raw["processing_time"]) if raw.get("processing_time") else None,
            attempt=1 if raw.get("started_at") else 0,
        )

    return app


def main() -> None:
    uvicorn.run(create_app(), host="127.0.0.1", port=CONFIG.api_port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
