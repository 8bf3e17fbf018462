"""What a worker process tells its supervisor when it recycles, and how the supervisor paces restarts.

A supervised worker gets the write end of a pipe (`--handover-fd`). When a recycling rule trips it writes one
`DrainNotice` line before it stops polling: why (its task quota, or its memory), and whether its replacement
may start right away, while it drains (WORKER_OVERLAP_RECYCLE). It then finishes its running tasks and exits
with RECYCLE_EXIT_CODE. This module imports nothing heavy: the supervisor process only needs this.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Literal

RECYCLE_EXIT_CODE = 75
# A child that ran this long was healthy: whatever ended it, the next restart waits the shortest delay.
HEALTHY_LIFETIME_S = 60.0
RESTART_DELAY_S = (1.0, 30.0)  # first and longest wait before a restart that follows a short-lived child

# `stuck`: a cancelled task's work did not stop within CANCEL_GRACE_S (activities.runtime.abandoned_work).
RecycleReason = Literal["tasks", "memory", "stuck"]


@dataclass(frozen=True)
class DrainNotice:
    reason: RecycleReason
    overlap: bool

    def encode(self) -> bytes:
        return (json.dumps(asdict(self)) + "\n").encode()

    @classmethod
    def decode(cls, line: bytes) -> DrainNotice:
        fields = json.loads(line)
        return cls(reason=fields["reason"], overlap=bool(fields["overlap"]))


class Handover:
    """The worker's end of the pipe; without a supervisor (`--no-supervisor`) there is none."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def notify(self, notice: DrainNotice) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, notice.encode())
        except OSError:
            pass  # the supervisor is gone: nobody to start a replacement anyway
        finally:
            os.close(self._fd)
            self._fd = None


class RestartBackoff:
    """Delays between a child's end and its replacement's start: crashes and memory recycles double it
    (1, 2, 4 … 30 s) while children keep dying young, so a worker that cannot stay up does not spin; a child
    that lived HEALTHY_LIFETIME_S resets it. A recycle after the task quota waits nothing: it did its work;
    nor does one that replaces work stuck past a cancel (the queue needs its poller back)."""

    def __init__(self) -> None:
        self._next = RESTART_DELAY_S[0]

    def delay(self, lived_s: float, reason: RecycleReason | None) -> float:
        """Seconds to wait before the replacement; `reason` None for a crash."""
        if lived_s >= HEALTHY_LIFETIME_S:
            self._next = RESTART_DELAY_S[0]
        if reason in ("tasks", "stuck"):
            return 0.0
        delay = self._next
        self._next = min(self._next * 2, RESTART_DELAY_S[1])
        return delay
