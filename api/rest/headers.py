"""Parsing of the HTTP headers that make a request wait: `Prefer: wait=N` (RFC 7240) and `If-None-Match`."""

from __future__ import annotations

from api.service.waiting import MAX_WAIT_S


def preferred_wait(prefer: str | None) -> float | None:
    """Seconds of `Prefer: wait=N`, capped at MAX_WAIT_S; None when absent or unreadable (RFC 7240: a
    preference the server cannot honour is ignored, not refused)."""
    if not prefer:
        return None
    for preference in prefer.split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        try:
            seconds = int(value.strip().strip('"'))
        except ValueError:
            return None
        return float(min(max(seconds, 0), MAX_WAIT_S))
    return None


def prefers_strict(prefer: str | None) -> bool:
    """`Prefer: handling=strict` (RFC 7240): refuse what cannot be done as asked (a deadline)."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() == "handling" and value.strip().strip('"').lower() == "strict":
            return True
    return False


def entity_tags(if_none_match: str | None) -> set[str] | None:
    """The tags of `If-None-Match`, compared weakly (without `W/`); `*` matches any."""
    if if_none_match is None:
        return None
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return {tag for tag in tags if tag}


def matches(etag: str, tags: set[str]) -> bool:
    return "*" in tags or etag.removeprefix("W/") in tags
