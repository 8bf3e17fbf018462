"""The supervisor of `python -m workers <queue>`: runs the queue's worker in a child process and replaces it.

A child that recycles tells the supervisor first (`workers.handover`); when it allows an overlap, the
replacement starts at once and polls while the old child drains its running tasks, so the queue's capacity
never drops to zero. Otherwise the replacement starts when the old child has exited. Crashes and memory
recycles of short-lived children back off (`RestartBackoff`). At most two children live at once: one
serving, one draining; a second drain waits for the first to end before its replacement starts.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from taskservice.queues import Queue
from workers.handover import RECYCLE_EXIT_CODE, DrainNotice, RestartBackoff

log = logging.getLogger("taskservice.workers")

POLL_S = 0.5


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    notices: int  # read end of its handover pipe
    started: float = field(default_factory=time.monotonic)
    notice: DrainNotice | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_notice(self) -> DrainNotice | None:
        """The drain notice, once it has come (an empty read: the child closed the pipe without one)."""
        line = os.read(self.notices, 4096)
        if line:
            self.notice = DrainNotice.decode(line)
        return self.notice

    def close(self) -> None:
        os.close(self.notices)


class Supervisor:
    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.stopping = False
        self.serving: _Child | None = None
        self.draining: list[_Child] = []
        self.backoff = RestartBackoff()
        self.start_at = 0.0  # monotonic time the next replacement may start
        self._pending_delay = 0.0  # the wait of a replacement that starts once the old child has exited

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGINT, self._forward)
        while True:
            if self.stopping:
                return self._wait_all()
            if self.serving is None and len(self.draining) < 2 and time.monotonic() >= self.start_at:
                self.serving = self._spawn()
            self._watch_notice()
            self._reap()

    def _forward(self, signum: int, _frame: object) -> None:
        self.stopping = True
        for child in self._children():
            if child.process.poll() is None:
                child.process.send_signal(signum)

    def _children(self) -> list[_Child]:
        return [*self.draining, *([self.serving] if self.serving is not None else [])]

    def _spawn(self) -> _Child:
        notices, handover = os.pipe()
        command = [sys.executable, "-m", "workers", self.queue.value, "--child"]
        process = subprocess.Popen([*command, "--handover-fd", str(handover)], pass_fds=(handover,))
        os.close(handover)
        return _Child(process, notices)

    def _watch_notice(self) -> None:
        """Wait (up to POLL_S) for the serving child's drain notice; on an overlap, start its replacement."""
        child = self.serving
        if child is None:
            time.sleep(POLL_S)
            return
        ready, _, _ = select.select([child.notices], [], [], POLL_S)
        if not ready or child.read_notice() is None:
            return
        assert child.notice is not None
        self.draining.append(child)
        self.serving = None
        lived = time.monotonic() - child.started
        delay = self.backoff.delay(lived, child.notice.reason)
        if child.notice.overlap:
            self._replacing(child, delay, "draining")
        else:
            self.start_at = float("inf")  # once it has exited (see _reap)
            self._pending_delay = delay

    def _replacing(self, child: _Child, delay: float, old_state: str) -> None:
        self.start_at = time.monotonic() + delay
        log.info(
            "Worker recycled, starting a fresh one",
            extra={"queue": self.queue.value, "pid": child.pid, "old_worker": old_state, "delay_s": delay},
        )

    def _reap(self) -> None:
        for child in list(self.draining):
            if child.process.poll() is None:
                continue
            self.draining.remove(child)
            child.close()
            if self.start_at == float("inf") and self.serving is None:
                self._replacing(child, self._pending_delay, "exited")
        serving = self.serving
        if serving is None or serving.process.poll() is None:
            return
        self.serving = None
        serving.close()
        code = serving.process.returncode
        if self.stopping:
            return
        lived = time.monotonic() - serving.started
        if code == RECYCLE_EXIT_CODE:  # a recycle without a notice: paced like a memory recycle
            self._replacing(serving, self.backoff.delay(lived, "memory"), "exited")
            return
        log.error("Worker exited unexpectedly", extra={"queue": self.queue.value, "exit_code": code})
        self.start_at = time.monotonic() + self.backoff.delay(lived, None)

    def _wait_all(self) -> int:
        for child in self._children():
            if child.process.poll() is None:
                # Again, for a child started just as the signal came (drain on SIGTERM is idempotent).
                child.process.send_signal(signal.SIGTERM)
            child.process.wait()
            child.close()
        self.serving, self.draining = None, []
        return 0
