"""Helpers and stand-ins shared by the tests (conftest.py holds only fixtures)."""
