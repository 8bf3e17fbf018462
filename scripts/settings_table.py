"""Print the README's configuration table from Settings (tests/test_readme.py keeps them in sync)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskservice.settings import Settings  # noqa: E402

BEGIN = "<!-- settings-table:begin -->"
END = "<!-- settings-table:end -->"


def table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "—" if default is None else f"`{default}`"
        rows.append(f"| `{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def main() -> None:
    if sys.argv[1:] == ["--write"]:
        readme = Path(__file__).resolve().parents[1] / "README.md"
        text = readme.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        readme.write_text(text[:start] + "\n" + table() + "\n" + text[end:])
    else:
        print(table())


if __name__ == "__main__":
    main()
