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

from taskservice.credential_formats import CREDENTIAL_PARAMETERS

# Belt and braces: never let a presigned URL's signature, a credential the service accepts (under any of its
# names: `?api_key=`, `apiKey: …`, `"Authorization": "Bearer …"`) or a webhook secret reach a log line.
_NAMES = "|".join(
    re.escape(name).replace("_", "[-_]?").replace("\\-", "[-_]?")
    for name in (*CREDENTIAL_PARAMETERS, "access_token", "x-amz-signature", "x-amz-credential", "signature")
)
_SECRETS = re.compile(
    rf"((?<![\w-])(?:{_NAMES})[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?|\bbearer\s+|whsec_)[^&\s\"',;]+",
    re.IGNORECASE,
)
_CREDENTIAL_KEY = re.compile(f"(?:{_NAMES})", re.IGNORECASE)


# Library notices known to be harmless here, by the logger that emits them (what the message contains). Each
# was checked to need no action from the operator; everything else these loggers say still reaches the log.
KNOWN_NOTICES = {
    # transformers 5 without torchvision: "`CLIPImageProcessor` requires torchvision (not installed); falling
    # back to `CLIPImageProcessorPil`" (and the same for other processors). The PIL processors give the same
    # inputs to the captioner and the diffusers pipelines' feature extractors; torchvision is deliberately
    # not a dependency.
    "transformers.utils.import_utils": ("requires torchvision (not installed); falling back to",),
    # "The TextToVideoSDPipeline has been deprecated and will not receive bug fixes or feature updates after
    # Diffusers version 0.33.1.": diffusers 0.42 names no successor for ModelScope-style text-to-video
    # checkpoints (nor for VideoToVideoSDPipeline), so VIDEO_MODEL keeps loading them with it.
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
    """Attach the filters (once) to the loggers by name: the libraries need not be imported for it (their
    loggers are plain stdlib loggers), so `configure_logging` does it for every process."""
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
        if _CREDENTIAL_KEY.fullmatch(key) and value is not None:
            event[key] = "[redacted]"  # a field named like a credential, whatever its value
        elif isinstance(value, str):
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
