"""Small things a newcomer met on the way: resolution errors, the worker's start line, the bench's missing
redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from taskservice.catalog import CATALOG
from taskservice.queues import Queue
from taskservice.task_data import GenerateImageData
from tests.support.processes import ROOT
from tests.support.stack import Stack

OUT_OF_RANGE = "width and height must each be between 16 and 4096"


@pytest.mark.parametrize("resolution", ["100000x100000", "8192x8192", "8x64", "64x" + "9" * 5000])
def test_every_size_out_of_range_gets_the_same_error(resolution: str) -> None:
    with pytest.raises(ValidationError) as refused:
        GenerateImageData(prompt="p", resolution=resolution)
    assert OUT_OF_RANGE in str(refused.value)


@pytest.mark.parametrize("resolution", ["big", "64*64", "x64", "64x"])
def test_a_shape_that_is_no_size_says_what_a_size_looks_like(resolution: str) -> None:
    with pytest.raises(ValidationError, match="must look like WIDTHxHEIGHT"):
        GenerateImageData(prompt="p", resolution=resolution)


def test_sizes_off_the_8_pixel_grid_are_accepted_and_documented_as_rounded() -> None:
    assert GenerateImageData(prompt="p", resolution="63x64").resolution == "63x64"
    readme = (ROOT / "README.md").read_text()
    assert "`63x64` renders 64x64" in readme


def test_the_workers_start_line_names_each_task_type_once(stack: Stack) -> None:
    for queue in Queue:
        log = (stack.workdir / f"worker-{queue.value}.log").read_text()
        started = next(json.loads(line) for line in log.splitlines() if '"Worker started"' in line)
        expected = sorted(name for name, spec in CATALOG.items() if spec.queue == queue)
        assert started["task_types"] == expected, queue


def test_the_benchs_celery_row_says_how_to_install_redis(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no redis-server, no redis-cli
    done = subprocess.run(
        [sys.executable, "-m", "bench.orchestration", "--only", "celery"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "needs redis-server and redis-cli" in done.stderr and "apt-get install redis-server" in done.stderr


def test_building_the_tiny_models_prints_no_meaningless_warnings(tmp_path: Path) -> None:
    runs = [
        [
            "scripts/build_tiny_models.py",
            "--out",
            str(tmp_path),
            "--only",
            "tiny-sd",
            "--only",
            "tiny-animatediff",
        ],
        ["scripts/build_tiny_tts.py", "--out", str(tmp_path / "tiny-vits")],
    ]
    for args in runs:
        done = subprocess.run(
            [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
        )
        lines = (done.stdout + done.stderr).splitlines()
        noise = [line for line in lines if not line.startswith(("built ", "tiny-", "tiny VITS written"))]
        assert noise == [], noise
