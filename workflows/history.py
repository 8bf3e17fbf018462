"""When a long-lived workflow continues as new: shared by the bookkeeping and limiter workflows.

By events, and by bytes: each memo upsert records the whole memo, so a history of 4000 events reached 572 KB,
and its workflow tasks took over 5 s (TMPRL1104) on every worker restart. A run ends past 48 KiB, once it has
50 events of its own (carried-over state can be large itself: a limiter's line of 250 waiting tasks is
~60 KB), so a history stays under ~100 KB and replays in well under a second.
"""

from __future__ import annotations

from temporalio import workflow

# Continue-as-new before the history gets long; state is carried over whole.
HISTORY_LIMIT = 4000
HISTORY_BYTES_LIMIT = 48 * 1024
HISTORY_BYTES_MIN_EVENTS = 50
BYTES_LIMIT_PATCH = "history-bytes-limit"


def history_is_long() -> bool:
    info = workflow.info()
    # The byte limit is new: a run that began before it keeps the event limit (patched is False on replay).
    # The patch is taken at a run's first check, in a workflow task that does not close the run, so its
    # marker is recorded: taken only once the limit is hit, it would ride with the continue-as-new, which the
    # server rejects when signals arrived meanwhile, and the replay would then read it as absent for good.
    bytes_limited = workflow.patched(BYTES_LIMIT_PATCH)
    length = info.get_current_history_length()
    if length > HISTORY_LIMIT:
        return True
    return (
        bytes_limited
        and length > HISTORY_BYTES_MIN_EVENTS
        and info.get_current_history_size() > HISTORY_BYTES_LIMIT
    )


def history_is_long_mid_step() -> bool:
    """`history_is_long()` for a check inside a long step, which runs from before the byte limit did not
    make: always False in those runs, so that their replay does not stop where they did not."""
    return workflow.patched(BYTES_LIMIT_PATCH) and history_is_long()
