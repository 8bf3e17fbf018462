#!/usr/bin/env bash
# `make dev`: Temporal dev server (+ Web UI), the four workers and the API, on embedded defaults.
# Ctrl-C stops all of it. Every default can be overridden by the environment (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/${VENV:-.venv}/bin:$PATH"
mkdir -p data

export API_PORT="${API_PORT:-8001}"
TEMPORAL_PORT="${TEMPORAL_PORT:-7233}"
TEMPORAL_UI_PORT="${TEMPORAL_UI_PORT:-8233}"
export TEMPORAL_ADDRESS="${TEMPORAL_ADDRESS:-localhost:$TEMPORAL_PORT}"
export WEBHOOK_ALLOW_PRIVATE="${WEBHOOK_ALLOW_PRIVATE:-true}"
export ALLOW_PRIVATE_URLS="${ALLOW_PRIVATE_URLS:-true}"
export MEDIA_PUBLIC_URL="${MEDIA_PUBLIC_URL:-http://localhost:$API_PORT/media}"
export IMAGE_MODEL="${IMAGE_MODEL:-data/models/tiny-sd}"
export VIDEO_MODEL="${VIDEO_MODEL:-data/models/tiny-video}"
export ANIMATION_MODEL="${ANIMATION_MODEL:-data/models/tiny-animatediff}"
export CAPTION_MODEL="${CAPTION_MODEL:-data/models/tiny-blip}"
if [ -z "${API_KEY:-}${CELERY_TASK_API_KEY:-}" ]; then
    [ -s data/dev-api-key ] || python -c 'import secrets; print("dev-" + secrets.token_urlsafe(18))' > data/dev-api-key
    export API_KEY="$(cat data/dev-api-key)"
fi

pids=()
cleanup() {
    trap - INT TERM EXIT
    echo "stopping..."
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

if [ -z "${OPENAI_BASE_URL:-}${OPENAI_API_KEY:-}" ]; then
    # No LLM configured: an echo model stands in, so the LLM task types run end to end.
    # Its answers are canned ("FAKE-LLM: ..."); set OPENAI_BASE_URL/OPENAI_API_KEY for a real model.
    python -m tests.fakes.openai_server --port "${FAKE_LLM_PORT:-8002}" &
    pids+=($!)
    export OPENAI_BASE_URL="http://127.0.0.1:${FAKE_LLM_PORT:-8002}/v1" OPENAI_API_KEY="dev-echo-model"
    LLM_NOTE="echo model at $OPENAI_BASE_URL (set OPENAI_BASE_URL for a real one)"
else
    LLM_NOTE="${OPENAI_BASE_URL:-api.openai.com}"
fi

if [ "$TEMPORAL_ADDRESS" = "localhost:$TEMPORAL_PORT" ]; then
    temporal server start-dev \
        --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
        --db-filename data/temporal-dev.db \
        --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
        --dynamic-config-value matching.useNewMatcher=true \
        --dynamic-config-value matching.numTaskqueueReadPartitions=1 \
        --dynamic-config-value matching.numTaskqueueWritePartitions=1 \
        --dynamic-config-value frontend.namespaceRPS.visibility=1000 \
        --dynamic-config-value frontend.namespaceBurstRatio.visibility=2 \
        --search-attribute ProjectId=Keyword --search-attribute TaskType=Keyword \
        --search-attribute TaskStatus=Keyword --search-attribute TaskOwner=Keyword \
        --log-level warn &
    pids+=($!)
    for _ in $(seq 1 100); do
        temporal operator cluster health --address "$TEMPORAL_ADDRESS" 2>/dev/null | grep -q SERVING && break
        sleep 0.3
    done
    temporal operator namespace update --address "$TEMPORAL_ADDRESS" -n default \
        --retention "${TASK_RETENTION_HOURS:-24}h" >/dev/null
fi

for queue in gpu_heavy gpu_medium cpu_intensive default; do
    python -m workers "$queue" &
    pids+=($!)
done
python -m api &
pids+=($!)

cat <<BANNER

  Task Service (development)
    API            http://localhost:$API_PORT        (docs: http://localhost:$API_PORT/docs)
    Temporal UI    http://localhost:$TEMPORAL_UI_PORT
    X-API-Key      $API_KEY
    LLM            $LLM_NOTE
  Try:
    curl -s -X POST http://localhost:$API_PORT/api/v1/tasks/submit -H "X-API-Key: $API_KEY" \\
      -H 'Content-Type: application/json' \\
      -d '{"project_id":"demo","task_type":"test_prompt","task_data":{"prompt_template":"Hello {{who}}","test_parameters":{"who":"world"}}}'
  Ctrl-C stops everything.

BANNER
wait -n "${pids[@]}" || true
