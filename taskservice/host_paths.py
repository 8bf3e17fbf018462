"""Host paths out of what tenants read: a task's `error` and a failure webhook's `traceback`.

A path inside one of the project's own packages becomes relative to the project (`activities/media/image.py`);
a library's becomes relative to its site-packages or standard library folder (`torch/nn/modules/module.py`);
any other absolute path is cut to its last component (`…/model.safetensors`). URLs are left alone.
"""

from __future__ import annotations

import re

PROJECT_PACKAGES = ("activities", "api", "taskservice", "workers", "workflows", "clients")
# An absolute POSIX path not preceded by a word character, a dot, a colon or a slash (URLs keep theirs).
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[\w.@+-]+/)+[\w.@+-]*")
_LIBRARY_ROOTS = re.compile(r".*/(?:site-packages|dist-packages|lib/python\d+\.\d+)/")


def _relative(match: re.Match[str]) -> str:
    path = match.group(0)
    library = _LIBRARY_ROOTS.match(path)
    if library is not None:
        return path[library.end() :]
    parts = path.split("/")
    for index, part in enumerate(parts):
        if part in PROJECT_PACKAGES and index < len(parts) - 1:
            return "/".join(parts[index:])
    return "…/" + parts[-1] if parts[-1] else "…/"


def scrub_host_paths(text: str | None) -> str | None:
    """`text` with every host path made relative (see the module's docstring)."""
    if text is None:
        return None
    return _ABSOLUTE.sub(_relative, text)
