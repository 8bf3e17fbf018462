"""`python -m api`: serve the API with uvicorn on API_HOST:API_PORT."""

from __future__ import annotations

import uvicorn

from api.main import create_app
from taskservice.logs import configure_logging
from taskservice.settings import load_settings
from taskservice.tracing import configure_tracing


def main() -> None:
    settings = load_settings()
    configure_logging("api")
    tracing = configure_tracing("api")
    uvicorn.run(
        create_app(settings, tracing=tracing),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
    )
    if tracing is not None:
        tracing.shutdown()


if __name__ == "__main__":
    main()
