"""`python -m api`: serve the API with uvicorn on API_HOST:API_PORT."""

from __future__ import annotations

import uvicorn

from api.main import create_app
from taskservice.logs import configure_logging
from taskservice.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging("api")
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
