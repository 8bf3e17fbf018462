"""Print the README's task-type table from the catalog (tests/test_readme.py keeps them in sync)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from readme_section import print_or_write  # noqa: E402

from taskservice.catalog import CATALOG, TaskSpec  # noqa: E402

BEGIN = "<!-- task-types-table:begin -->"
END = "<!-- task-types-table:end -->"


def _label(spec: TaskSpec) -> str:
    notes = [note for note in (spec.origin, spec.activity and f"= `{spec.activity}`") if note]
    return f"`{spec.name}`" + (f" ({', '.join(notes)})" if notes else "")


def _minutes(seconds: float) -> float | None:
    """Whole or half minutes, else None."""
    return seconds / 60 if seconds % 30 == 0 else None


def _timeouts(spec: TaskSpec) -> str:
    soft, hard = _minutes(spec.soft_timeout_s), _minutes(spec.hard_timeout_s)
    if soft is not None and hard is not None:
        return f"{soft:g} / {hard:g} min"
    soft_text = f"{soft:g} min" if soft is not None else f"{spec.soft_timeout_s:g} s"
    hard_text = f"{hard:g} min" if hard is not None else f"{spec.hard_timeout_s:g} s"
    return f"{soft_text} / {hard_text}"


def table() -> str:
    rows = ["| task_type | queue | soft / hard timeout | typical |", "|---|---|---|---|"]
    for spec in CATALOG.values():
        rows.append(
            f"| {_label(spec)} | {spec.queue.value} | {_timeouts(spec)} | {spec.estimated_duration_s} s |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print_or_write(table, BEGIN, END)
