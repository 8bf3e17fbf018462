"""The README's generated sections: print one, or write it between its markers (`--write`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def print_or_write(table: Callable[[], str], begin: str, end: str) -> None:
    if sys.argv[1:] == ["--write"]:
        text = README.read_text()
        start, stop = text.index(begin) + len(begin), text.index(end)
        README.write_text(text[:start] + "\n" + table() + "\n" + text[stop:])
    else:
        print(table())
