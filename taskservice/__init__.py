"""Shared domain of the task service: settings, the task catalog and the typed contracts."""
