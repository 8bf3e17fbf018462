"""structlog JSON lines for every process; stdlib loggers (ours, uvicorn, temporalio) go through it too.

`extra=` fields and context bound with `structlog.contextvars` (task_id, project_id, task_type, attempt in
workers) become top-level keys. A last processor scrubs secrets that must never reach a log.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

# Belt and braces: never let a presigned URL signature or an API key header reach a log line.
_SECRETS = re.compile(
    r"(X-Amz-Signature=|X-Amz-Credential=|Signature=|api_key=|token=|x-api-key[\"']?\s*[:=]\s*[\"']?|whsec_)"
    r"[^&\s\"',]+",
    re.IGNORECASE,
)


# Library notices known to be harmless here, by the logger that emits them (what the message contains).
KNOWN_NOTICES = {
    # transformers 5 without torchvision falls back to the PIL image processors: exactly what the captioner
    # and the diffusers pipelines' feature extractors use here (torchvision is not a dependency).
    "transformers.utils.import_utils": ("requires torchvision (not installed); falling back to",),
    # ModelScope text-to-video is in diffusers' deprecated set, and diffusers names no successor for it.
    "diffusers.pipelines.pipeline_utils": (
        "TextToVideoSDPipeline has been deprecated",
        "VideoToVideoSDPipeline has been deprecated",
    ),
}


class DropKnownNotices(logging.Filter):
    """Drops the records of one library logger that say one of `fragments`, and nothing else."""

    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def silence_known_notices() -> None:
    """Attach the filters (once) to the loggers by name: the libraries need not be imported for it."""
    for name, fragments in KNOWN_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropKnownNotices) for f in logger.filters):
            logger.addFilter(DropKnownNotices(fragments))


# What building the tiny random models (scripts/build_tiny_*.py) prints that means nothing for them: diffusers
# notes that no modules of an AnimateDiff UNet must stay in float32 (an empty list), Coqui TTS that a config
# without a language falls back to English (the tiny VITS has none), and the libraries' progress bars for
# writing one small file.
MODEL_BUILD_NOTICES = {
    "diffusers.models.modeling_utils": ("that should be kept in float32: []",),
    "TTS.tts.utils.languages": ("Could not identify language from config",),
}


def silence_model_build_notices() -> None:
    """For the model-building scripts: the known notices, the build-only ones, and no progress bars."""
    silence_known_notices()
    for name, fragments in MODEL_BUILD_NOTICES.items():
        logging.getLogger(name).addFilter(DropKnownNotices(fragments))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when the libraries are imported


def scrub(text: str) -> str:
    return _SECRETS.sub(r"\1[redacted]", text)


def _scrub_values(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = scrub(value)
    return event


def _add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """`trace_id` and `span_id` of the span the line is logged in (none when tracing is off)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = trace.format_trace_id(context.trace_id)
        event["span_id"] = trace.format_span_id(context.span_id)
    return event


def configure_logging(service: str, level: int = logging.INFO) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_trace_ids,
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
    silence_known_notices()
    # httpx logs full request URLs at INFO (presigned URLs, callback tokens): keep it quiet.
    for name in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
