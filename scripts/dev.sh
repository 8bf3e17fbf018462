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
# shellcheck source=scripts/dev_key.sh
source scripts/dev_key.sh
dev_api_key

# Every process runs in its own process group (setsid), so Ctrl-C reaches only this script, which then stops
# them in order: the workers and the API first (they stop polling while Temporal still answers them), then
# the Temporal server. Stopping the server first made the workers log screens of gRPC retries.
pids=()        # the workers (Ctrl-C, as SIGINT, makes them stop polling and drain)
others=()      # the API and the echo model (SIGTERM)
server_pid=""  # the Temporal dev server
stop_groups() {  # stop_groups SIGNAL SECONDS PID...: signal each group, wait until all are gone, then KILL
    local signal="$1" deadline=$((SECONDS + $2)) pid alive
    shift 2
    for pid in "$@"; do kill "-$signal" -- "-$pid" 2>/dev/null || true; done
    while [ "$SECONDS" -lt "$deadline" ]; do
        alive=0
        for pid in "$@"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && return 0
        sleep 0.2
    done
    for pid in "$@"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
cleanup() {
    trap - INT TERM EXIT
    echo "stopping: workers, API, then Temporal..."
    # A task still running after 5 s is left to Temporal: it is retried when make dev runs again. The API
    # and the echo model go after the workers, so a running task does not fail on a vanished LLM first.
    [ "${#pids[@]}" -gt 0 ] && stop_groups INT 5 "${pids[@]}"
    [ "${#others[@]}" -gt 0 ] && stop_groups TERM 5 "${others[@]}"
    [ -n "$server_pid" ] && stop_groups TERM 10 "$server_pid"
    wait 2>/dev/null || true
    echo "stopped."
}
trap cleanup INT TERM EXIT

if [ -z "${OPENAI_BASE_URL:-}${OPENAI_API_KEY:-}" ]; then
    # No LLM configured: an echo model stands in, so the LLM task types run end to end.
    # Its answers are canned ("FAKE-LLM: ..."); set OPENAI_BASE_URL/OPENAI_API_KEY for a real model.
    setsid python -m taskservice.devtools.fake_llm --port "${FAKE_LLM_PORT:-8002}" &
    others+=($!)
    export OPENAI_BASE_URL="http://127.0.0.1:${FAKE_LLM_PORT:-8002}/v1" OPENAI_API_KEY="dev-echo-model"
    LLM_NOTE="echo model at $OPENAI_BASE_URL (set OPENAI_BASE_URL for a real one)"
else
    LLM_NOTE="${OPENAI_BASE_URL:-api.openai.com}"
fi

# limit.memoSize.warn: the worker registry's memo holds ~500 bytes per live worker, above the 2 KiB at which
# the dev server warns on every report; the hard limit (32 KiB) stays, and the registry forgets gone workers.
if [ "$TEMPORAL_ADDRESS" = "localhost:$TEMPORAL_PORT" ]; then
    setsid temporal server start-dev \
        --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
        --db-filename data/temporal-dev.db \
        --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
        --dynamic-config-value matching.useNewMatcher=true \
        --dynamic-config-value matching.enableFairness=true \
        --dynamic-config-value matching.numTaskqueueReadPartitions=1 \
        --dynamic-config-value matching.numTaskqueueWritePartitions=1 \
        --dynamic-config-value frontend.namespaceRPS.visibility=1000 \
        --dynamic-config-value frontend.namespaceBurstRatio.visibility=2 \
        --dynamic-config-value limit.memoSize.warn=16384 \
        --search-attribute ProjectId=Keyword --search-attribute TaskType=Keyword \
        --search-attribute TaskStatus=Keyword --search-attribute TaskOwner=Keyword \
        --search-attribute TaskUser=Keyword --search-attribute TaskScope=Keyword \
        --search-attribute WebhookStatus=Keyword \
        --log-level "${TEMPORAL_LOG_LEVEL:-error}" &
    server_pid=$!
    for _ in $(seq 1 100); do
        temporal operator cluster health --address "$TEMPORAL_ADDRESS" 2>/dev/null | grep -q SERVING && break
        sleep 0.3
    done
    temporal operator namespace update --address "$TEMPORAL_ADDRESS" -n default \
        --retention "${TASK_RETENTION_HOURS:-24}h" >/dev/null
fi

for queue in gpu_heavy gpu_medium cpu_intensive default; do
    setsid python -m workers "$queue" &
    pids+=($!)
done
setsid python -m api &
others+=($!)

cat <<BANNER

  Task Service (development)
    API            http://localhost:$API_PORT        (docs: http://localhost:$API_PORT/docs)
    Temporal UI    http://localhost:$TEMPORAL_UI_PORT
    X-API-Key      $KEY_SHOWN
    LLM            $LLM_NOTE
    CLIs           temporal, taskctl:  export PATH="$PWD/${VENV:-.venv}/bin:\$PATH" TASK_SERVICE_API_KEY=$KEY_IN_CURL
    State          kept in data/ across runs (make clean starts over)
  Try:
    curl -s -X POST http://localhost:$API_PORT/api/v1/tasks/submit -H "X-API-Key: $KEY_IN_CURL" \\
      -H 'Content-Type: application/json' \\
      -d '{"project_id":"demo","task_type":"test_prompt","task_data":{"prompt_template":"Hello {{who}}","test_parameters":{"who":"world"}}}'
  Ctrl-C stops everything.

BANNER
wait -n "${pids[@]}" "${others[@]}" ${server_pid:+"$server_pid"} || true
