# Sourced by scripts/dev.sh: the API key of `make dev` and how its banner shows it. A key that make dev
# generated (kept in data/dev-api-key) is printed, since nobody else knows it; a key the user supplied is
# only shown masked, so the banner (often pasted into chats and tickets) never carries a real credential.

mask_key() {
    local key="$1"
    if [ "${#key}" -ge 12 ]; then
        printf '%s… (%d characters)' "${key:0:4}" "${#key}"
    else
        printf '****'
    fi
}

# Exports API_KEY when none is supplied; sets KEY_SHOWN (banner line) and KEY_IN_CURL (the curl example's key).
dev_api_key() {
    if [ -z "${API_KEY:-}${CELERY_TASK_API_KEY:-}" ]; then
        [ -s data/dev-api-key ] || python -c 'import secrets; print("dev-" + secrets.token_urlsafe(18))' > data/dev-api-key
        API_KEY="$(cat data/dev-api-key)"
        export API_KEY
        KEY_SHOWN="$API_KEY   (generated, kept in data/dev-api-key)"
        KEY_IN_CURL="$API_KEY"
        return
    fi
    local name=API_KEY
    [ -n "${API_KEY:-}" ] || name=CELERY_TASK_API_KEY
    local first="${!name%%,*}"
    KEY_SHOWN="$(mask_key "$first")   (yours, from \$$name)"
    KEY_IN_CURL="\$$name"
}
