"""Fixtures of the audio tests: the activities with the espeak-ng engine and with the tiny Coqui VITS, each
session-wide like one worker process (the model is loaded once). Input files come from `file_server`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from activities.audio.activities import AudioActivities
from tests.support.audio import audio_settings
from tests.support.worker_resources import opened


@pytest.fixture(scope="session")
async def espeak_acts(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AudioActivities]:
    async with opened(AudioActivities, audio_settings(tmp_path_factory.mktemp("espeak-data"))) as acts:
        yield acts


@pytest.fixture(scope="session")
async def coqui_acts(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]
) -> AsyncIterator[AudioActivities]:
    # Session scope: the model is loaded once and reused, as in a worker.
    settings = audio_settings(tmp_path_factory.mktemp("coqui-data"), str(tiny_models["tiny-vits"]))
    async with opened(AudioActivities, settings) as acts:
        yield acts
