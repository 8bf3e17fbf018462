"""The SDK's version: sent as its User-Agent, printed by ``taskctl --version``, read by its pyproject."""

__version__ = "0.1.0"
