"""The Socket.IO surface (seed 003's events)."""
