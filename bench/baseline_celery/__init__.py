"""A minimal FastAPI + Celery + Redis task service: the seed's architecture, as the orchestration baseline.

Same endpoints and payloads as ours for what the benchmark uses (`POST /api/v1/tasks/submit`,
`GET /api/v1/tasks/{id}/status`, the `X-API-Key` check), a Celery `test_prompt` task that calls the same
OpenAI-compatible endpoint with the `openai` client, and task state kept in Redis hashes as the seed did
(`queued` → `processing` → `completed`/`failed`).

    python -m bench.baseline_celery.api                         # the API (env: see `config`)
    celery -A bench.baseline_celery.tasks worker --pool threads --concurrency 8
"""
