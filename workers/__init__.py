"""Worker processes: one per task queue (`python -m workers <queue>`), built from the catalog."""
