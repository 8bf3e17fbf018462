#!/usr/bin/env bash
# `make clean`: delete make dev's state (Temporal's database, result files) and start over. Refused while
# make dev runs: the server would go on handing out tasks and media URLs whose files are gone.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR="${DATA_DIR:-data}"

if [ -s "$DATA_DIR/dev.pid" ] && kill -0 "$(cat "$DATA_DIR/dev.pid")" 2>/dev/null; then
    echo "make clean refused: make dev is running (pid $(cat "$DATA_DIR/dev.pid")); stop it first (Ctrl-C)." >&2
    exit 1
fi
rm -rf "$DATA_DIR"/temporal-dev.db* "$DATA_DIR/media" "$DATA_DIR/dev.pid"
echo "deleted: $DATA_DIR/temporal-dev.db (tasks, metrics, worker registry) and $DATA_DIR/media (result files)"
kept=()
for path in data/dev-api-key "$DATA_DIR/media-signing-key" data/models; do
    [ -e "$path" ] && kept+=("$path")
done
echo "kept:    ${kept[*]:-nothing else} (delete by hand to start from nothing)"
