"""`python -m workers <queue>`: a supervisor that runs the queue's worker and replaces it when recycled."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from taskservice.logs import configure_logging
from taskservice.queues import Queue
from taskservice.settings import load_settings
from taskservice.tracing import configure_tracing


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("queue", choices=[q.value for q in Queue])
    parser.add_argument("--child", action="store_true", help="run the worker itself (used by the supervisor)")
    parser.add_argument("--handover-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-supervisor", action="store_true", help="run one worker in this process; exit when recycled"
    )
    args = parser.parse_args()
    settings = load_settings()
    configure_logging(f"worker-{args.queue}")
    queue = Queue(args.queue)
    if args.child or args.no_supervisor:
        # Only the worker itself imports Temporal's SDK and the activities; the supervisor stays small.
        from workers.handover import Handover
        from workers.runner import run_worker

        tracing = configure_tracing(f"worker-{queue.value}")
        code = asyncio.run(run_worker(settings, queue, handover=Handover(args.handover_fd), tracing=tracing))
        if tracing is not None:
            tracing.shutdown()
        # Client-only teardown can crash at interpreter exit (sdk-python#300): leave promptly.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    from workers.supervisor import Supervisor

    sys.exit(Supervisor(queue).run())


if __name__ == "__main__":
    main()
