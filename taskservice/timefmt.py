"""Timestamps as the service writes them: ISO-8601 in UTC with a `Z` (visibility queries, memos, bodies)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_z(moment: datetime) -> str:
    """`2026-12-02T01:50:00.123456Z`; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now_z() -> str:
    return iso_z(datetime.now(UTC))


def parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
