"""The `{task_id:task_id}` path convertor: any path segment but the fixed names below /api/v1/tasks/.

With it, `/tasks/{task_id}` routes cannot shadow `/tasks/statistics` and its siblings, whatever order the
routers are included in. Registering a convertor is how Starlette extends path matching; it happens when
this module is first imported (before any route that names it is compiled) and only defines a type.
"""

from __future__ import annotations

from starlette.convertors import CONVERTOR_TYPES, StringConvertor, register_url_convertor

# Fixed paths the API serves below /api/v1/tasks/ (tests/faults/test_auth_routes.py checks the list).
RESERVED_TASK_PATHS = ("submit", "batch", "bulk", "statistics", "metrics", "health", "quote", "estimates")


class TaskIdConvertor(StringConvertor):
    regex = f"(?!(?:{'|'.join(RESERVED_TASK_PATHS)})(?:/|$))[^/]+"


if "task_id" not in CONVERTOR_TYPES:
    register_url_convertor("task_id", TaskIdConvertor())
