"""Fixtures of the media tests: a file server of input images (and a Payload-CMS-shaped endpoint), and the
media activities on the tiny models, warm for the whole session like one worker process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from activities.media.activities import MediaActivities
from tests.support.file_server import StaticFileServer
from tests.support.media import StepRecorder, make_settings, png_bytes
from tests.support.worker_resources import opened


@pytest.fixture(scope="session")
def http_server() -> Iterator[StaticFileServer]:
    """The media tests' own server: the inputs below stay as they are whatever other tests register."""
    with StaticFileServer() as server:
        server.put("/ref.png", png_bytes((96, 80), (200, 30, 30)), "image/png")
        server.put("/story-1.png", png_bytes((64, 64), (20, 200, 20)), "image/png")
        server.put("/story-2.png", png_bytes((64, 64), (20, 20, 200)), "image/png")
        server.put("/not-an-image.png", b"<html>certainly not a PNG</html>", "image/png")
        server.put("/page.html", b"<html></html>", "text/html")
        yield server


@pytest.fixture(scope="session")
def steps() -> StepRecorder:
    return StepRecorder()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media-data")


@pytest.fixture(scope="session")
async def media(
    tiny_models: dict[str, Path], media_dir: Path, steps: StepRecorder
) -> AsyncIterator[MediaActivities]:
    """One MediaActivities for the session, like one worker process: its model cache stays warm."""
    async with opened(MediaActivities, make_settings(tiny_models, media_dir), step_observer=steps) as acts:
        yield acts


@pytest.fixture(autouse=True)
def _reset_steps(steps: StepRecorder) -> None:
    steps.reset()
