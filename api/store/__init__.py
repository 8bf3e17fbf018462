"""Temporal, read and written for the service: commands, the task projection, listings, queue states."""
