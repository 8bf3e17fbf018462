#!/usr/bin/env bash
# `make dev`: Temporal dev server (+ Web UI), the four workers and the API, on embedded defaults.
# Ctrl-C, SIGTERM or SIGHUP stops all of it. Every default can be overridden by the environment (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/${VENV:-.venv}/bin:$PATH"
export DATA_DIR="${DATA_DIR:-data}"
mkdir -p data "$DATA_DIR"

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
export PREVIEW_MODEL_IMAGE="${PREVIEW_MODEL_IMAGE:-data/models/tiny-taesd}"
export PREVIEW_MODEL_VIDEO="${PREVIEW_MODEL_VIDEO:-data/models/tiny-taesd}"
# shellcheck source=scripts/dev_key.sh
source scripts/dev_key.sh

# Refuse to start over a running stack (or anything else on our ports): name the port and its holder.
ports=("API=$API_PORT")
[ -z "${OPENAI_BASE_URL:-}${OPENAI_API_KEY:-}" ] && ports+=("echo model=${FAKE_LLM_PORT:-8002}")
[ "$TEMPORAL_ADDRESS" = "localhost:$TEMPORAL_PORT" ] && ports+=("Temporal=$TEMPORAL_PORT" "Temporal UI=$TEMPORAL_UI_PORT")
if ! python -m taskservice.devtools.ports "${ports[@]}"; then
    echo "make dev not started: stop what holds the port (another make dev? see $DATA_DIR/dev.pid) or choose" \
        "other ports (API_PORT, TEMPORAL_PORT, TEMPORAL_UI_PORT, FAKE_LLM_PORT)." >&2
    exit 1
fi
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
stopping=""
cleanup() {
    # Ignore the signals from now on: make forwards a SIGTERM it receives to this script, so a stop by
    # `kill -TERM -- -<make's group>` arrives twice, and a second one must not cut the stop short.
    trap '' INT TERM HUP
    [ -n "$stopping" ] && return 0
    stopping=1
    echo "stopping: workers, API, then Temporal..."
    # A task still running after 5 s is left to Temporal: it is retried when make dev runs again. The API
    # and the echo model go after the workers, so a running task does not fail on a vanished LLM first.
    [ "${#pids[@]}" -gt 0 ] && stop_groups INT 5 "${pids[@]}"
    [ "${#others[@]}" -gt 0 ] && stop_groups TERM 5 "${others[@]}"
    [ -n "$server_pid" ] && stop_groups TERM 10 "$server_pid"
    wait 2>/dev/null || true
    rm -f "$DATA_DIR/dev.pid"
    echo "stopped."
}
trap cleanup INT TERM HUP EXIT
echo $$ > "$DATA_DIR/dev.pid"   # `make clean` refuses while this process lives

if [ -z "${OPENAI_BASE_URL:-}${OPENAI_API_KEY:-}" ]; then
    # No LLM configured: an echo model stands in, so the LLM task types run end to end.
    # Its answers are canned ("FAKE-LLM: ..."); set OPENAI_BASE_URL/OPENAI_API_KEY for a real model.
    # Its model is named as what it is, so results say `"model": "echo-model"`, not a real model's name.
    setsid python -m taskservice.devtools.fake_llm --port "${FAKE_LLM_PORT:-8002}" --model echo-model &
    others+=($!)
    export OPENAI_BASE_URL="http://127.0.0.1:${FAKE_LLM_PORT:-8002}/v1" OPENAI_API_KEY="dev-echo-model"
    export LLM_MODEL="echo-model"
    LLM_NOTE="echo model at $OPENAI_BASE_URL (set OPENAI_BASE_URL for a real one)"
else
    LLM_NOTE="${OPENAI_BASE_URL:-api.openai.com}"
fi

# limit.memoSize.warn: the worker registry's memo holds ~500 bytes per live worker, above the 2 KiB at which
# the dev server warns on every report; the hard limit (32 KiB) stays, and the registry forgets gone workers.
if [ "$TEMPORAL_ADDRESS" = "localhost:$TEMPORAL_PORT" ]; then
    setsid temporal server start-dev \
        --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
        --db-filename "$DATA_DIR/temporal-dev.db" \
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
        --search-attribute WebhookStatus=Keyword --search-attribute PipelineId=Keyword \
        --search-attribute PipelineStep=Keyword \
        --log-level "${TEMPORAL_LOG_LEVEL:-error}" &
    server_pid=$!
    serving=""
    for _ in $(seq 1 100); do
        temporal operator cluster health --address "$TEMPORAL_ADDRESS" 2>/dev/null | grep -q SERVING \
            && serving=1 && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.3
    done
    if [ -z "$serving" ]; then
        echo "make dev not started: the Temporal dev server did not come up on $TEMPORAL_ADDRESS" >&2
        exit 1
    fi
    temporal operator namespace update --address "$TEMPORAL_ADDRESS" -n default \
        --retention "${TASK_RETENTION_HOURS:-24}h" >/dev/null
fi

# Three workers run torch on this host (gpu_heavy, gpu_medium, cpu_intensive): each takes a third of the cores
# for its thread pool unless OMP_NUM_THREADS says otherwise. Torch's default (every core, per process)
# oversubscribes them: three workers on 2 cores ran a video 3-16x slower (bench/RESULTS.md, time estimates).
cores="$(nproc)"
torch_threads="${OMP_NUM_THREADS:-$(( cores >= 3 ? cores / 3 : 1 ))}"
for queue in gpu_heavy gpu_medium cpu_intensive default; do
    OMP_NUM_THREADS="$torch_threads" setsid python -m workers "$queue" &
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
    State          kept in $DATA_DIR/ across runs (make clean starts over)
  Try:
    curl -s -X POST http://localhost:$API_PORT/api/v1/tasks/submit -H "X-API-Key: $KEY_IN_CURL" \\
      -H 'Content-Type: application/json' \\
      -d '{"project_id":"demo","task_type":"test_prompt","task_data":{"prompt_template":"Hello {{who}}","test_parameters":{"who":"world"}}}'
  Results:       make demo  (one task of each kind, then where each result file is)
  Ctrl-C (or SIGTERM) stops everything.

BANNER
wait -n "${pids[@]}" "${others[@]}" ${server_pid:+"$server_pid"} || true
