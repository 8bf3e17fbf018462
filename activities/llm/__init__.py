"""Prompt tests, evaluations and translations through an OpenAI-compatible endpoint."""
