"""Known, harmless warnings of the ML libraries, kept out of a worker's log.

Each one is named by the logger that emits it and the start of its message, and was checked to need no
action from the operator:
- transformers: "`CLIPImageProcessor` requires torchvision (not installed); falling back to
  `CLIPImageProcessorPil`" (and the same for other processors). The PIL processors give the same inputs;
  torchvision is deliberately not a dependency.
- diffusers: "The TextToVideoSDPipeline has been deprecated and will not receive bug fixes or feature
  updates after Diffusers version 0.33.1." diffusers 0.42 names no successor for ModelScope-style
  text-to-video checkpoints (nor for VideoToVideoSDPipeline), so VIDEO_MODEL keeps loading them with it.

Everything else these loggers say still reaches the log.
"""

from __future__ import annotations

import logging

KNOWN_HARMLESS = {
    "transformers.utils.import_utils": ("requires torchvision (not installed); falling back to",),
    "diffusers.pipelines.pipeline_utils": (
        "The TextToVideoSDPipeline has been deprecated",
        "The VideoToVideoSDPipeline has been deprecated",
    ),
}


class _DropKnownHarmless(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self._fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self._fragments)


def silence_known_library_warnings() -> None:
    """Install the filters (before the libraries are imported: their loggers are plain stdlib loggers)."""
    for name, fragments in KNOWN_HARMLESS.items():
        logging.getLogger(name).addFilter(_DropKnownHarmless(fragments))
