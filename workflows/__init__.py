"""Deterministic orchestration: the task workflow and the service's bookkeeping workflows."""
