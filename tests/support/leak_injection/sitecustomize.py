"""A leak for the recycling tests, loaded by Python at start in processes with this folder on PYTHONPATH.

SIGUSR2 makes the process hold LEAK_INJECTION_MB more resident memory (written, so it is resident), as a
leaking library would. Nothing else changes: the worker runs its real code.
"""

from __future__ import annotations

import os
import signal
from typing import Any

_held: list[bytearray] = []


def _leak(_signum: int, _frame: Any) -> None:
    _held.append(bytearray(b"\x01") * (int(os.environ.get("LEAK_INJECTION_MB", "256")) << 20))


signal.signal(signal.SIGUSR2, _leak)
