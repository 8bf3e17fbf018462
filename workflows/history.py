"""When a long-lived workflow continues as new: shared by the bookkeeping and limiter workflows."""

from __future__ import annotations

from temporalio import workflow

# Continue-as-new before the history gets long; state is carried over whole.
HISTORY_LIMIT = 4000


def history_is_long() -> bool:
    return workflow.info().get_current_history_length() > HISTORY_LIMIT
