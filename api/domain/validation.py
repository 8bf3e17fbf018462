"""Pydantic and request errors as the seed's `details`: one message per dotted field path."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError


def _message(error: dict[str, Any], field: str) -> str:
    if error.get("type") == "missing":
        return f"{field or 'value'} is required"
    if error.get("type") == "json_invalid":
        return f"Malformed JSON: {error.get('ctx', {}).get('error', error.get('msg'))}"
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def details_from_errors(
    errors: Iterable[dict[str, Any]], *, strip: Sequence[str] = (), prefix: str = ""
) -> dict[str, str]:
    details: dict[str, str] = {}
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        if loc and loc[0] in strip:
            loc = loc[1:]
        if error.get("type") == "json_invalid":
            loc = []
        path = ".".join([prefix, *loc] if prefix else loc) or "body"
        details.setdefault(path, _message(error, loc[-1] if loc else path))
    return details


def pydantic_details(err: ValidationError, *, prefix: str = "") -> dict[str, str]:
    return details_from_errors(err.errors(), prefix=prefix)  # type: ignore[arg-type]
