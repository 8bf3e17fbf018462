"""`make demo` against the test stack, as a newcomer runs it after `make dev`: one task of each kind
completes, and every result file it names exists where it says, with the URL it gives."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT
from tests.support.stack import API_KEYS, Stack

KINDS = ("text", "image", "video", "animation", "voice", "caption", "audio mix")


def test_make_demo_shows_every_kind_and_where_its_file_is(stack: Stack, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "CELERY_TASK_API_KEY")}
    env |= {
        "TASK_SERVICE_URL": stack.api_url,
        "TASK_SERVICE_API_KEY": API_KEYS[0],
        "DATA_DIR": stack.env["DATA_DIR"],
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = done.stdout.split("\nResults:\n", 1)[1]
    for kind in KINDS:
        assert re.search(rf"^  {kind} +\S+  completed$", results, re.M), (kind, results)
    assert "%" in done.stdout.split("Results:")[0]  # progress was shown
    files = [Path(line.split("file:", 1)[1].strip()) for line in results.splitlines() if "file:" in line]
    urls = [line.split("url:", 1)[1].strip() for line in results.splitlines() if "url:" in line]
    assert len(files) == len(urls) == len(KINDS) - 2  # text and caption answer in words, the others in files
    for path, url in zip(files, urls, strict=True):
        assert path.is_file() and path.stat().st_size > 0, path
        assert url.startswith(stack.env["MEDIA_PUBLIC_URL"]) and path.name in url
