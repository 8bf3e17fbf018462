"""structlog JSON lines for every process; stdlib loggers (ours, uvicorn, temporalio) go through it too.

`extra=` fields and context bound with `structlog.contextvars` (task_id, project_id, task_type, attempt in
workers) become top-level keys. A last processor scrubs secrets that must never reach a log.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Belt and braces: never let a presigned URL signature or an API key header reach a log line.
_SECRETS = re.compile(
    r"(X-Amz-Signature=|X-Amz-Credential=|Signature=|api_key=|token=|x-api-key[\"']?\s*[:=]\s*[\"']?|whsec_)"
    r"[^&\s\"',]+",
    re.IGNORECASE,
)


def scrub(text: str) -> str:
    return _SECRETS.sub(r"\1[redacted]", text)


def _scrub_values(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = scrub(value)
    return event


def configure_logging(service: str, level: int = logging.INFO) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        lambda _, __, event: {"service": service, **event},
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _scrub_values,
            structlog.processors.JSONRenderer(default=str),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs full request URLs at INFO (presigned URLs, callback tokens): keep it quiet.
    for name in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
