"""The one library-notice filter: the known harmless notices are dropped, everything else those loggers say
is kept."""

from __future__ import annotations

import logging

import pytest

from taskservice.logs import KNOWN_NOTICES, silence_known_notices


@pytest.mark.parametrize(
    ("logger", "message"),
    [
        (
            "transformers.utils.import_utils",
            "`CLIPImageProcessor` requires torchvision (not installed); falling back to "
            "`CLIPImageProcessorPil`",
        ),
        (
            "diffusers.pipelines.pipeline_utils",
            "The TextToVideoSDPipeline has been deprecated and will not receive bug fixes or feature updates "
            "after Diffusers version 0.33.1.",
        ),
        ("diffusers.pipelines.pipeline_utils", "The VideoToVideoSDPipeline has been deprecated and will not"),
    ],
)
def test_known_notices_are_dropped_and_others_kept(
    logger: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    silence_known_notices()
    silence_known_notices()  # attached once, however often it is called
    target = logging.getLogger(logger)
    # Libraries attach filters of their own (diffusers a rank-zero one once imported): ours is there once.
    assert sum(type(f).__name__ == "DropKnownNotices" for f in target.filters) == 1
    with caplog.at_level(logging.WARNING, logger=logger):
        target.warning(message)
        target.warning("Something the operator must read")
    assert [r.getMessage() for r in caplog.records] == ["Something the operator must read"]
    assert logger in KNOWN_NOTICES
