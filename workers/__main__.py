"""`python -m workers <queue>`: a supervisor that runs the queue's worker and replaces it when recycled."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

from taskservice.logs import configure_logging
from taskservice.queues import Queue
from taskservice.settings import Settings
from workers.runner import RECYCLE_EXIT_CODE, run_worker

log = logging.getLogger("taskservice.workers")


def _supervise(queue: Queue) -> int:
    """Run the worker in a child process; start a fresh one after each recycle (or crash)."""
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    crash_backoff = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "workers", queue.value, "--child"])
        code = child.wait()
        if stopping:
            return 0
        if code == RECYCLE_EXIT_CODE:
            log.info("Worker recycled, starting a fresh one", extra={"queue": queue.value, "pid": child.pid})
            crash_backoff = 1.0
            continue
        log.error("Worker exited unexpectedly", extra={"queue": queue.value, "exit_code": code})
        if time.monotonic() - started > 60:
            crash_backoff = 1.0
        time.sleep(crash_backoff)
        crash_backoff = min(crash_backoff * 2, 30.0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("queue", choices=[q.value for q in Queue])
    parser.add_argument("--child", action="store_true", help="run the worker itself (used by the supervisor)")
    parser.add_argument(
        "--no-supervisor", action="store_true", help="run one worker in this process; exit when recycled"
    )
    args = parser.parse_args()
    settings = Settings()
    configure_logging(f"worker-{args.queue}")
    queue = Queue(args.queue)
    if args.child or args.no_supervisor:
        code = asyncio.run(run_worker(settings, queue))
        # Client-only teardown can crash at interpreter exit (sdk-python#300): leave promptly.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(_supervise(queue))


if __name__ == "__main__":
    main()
