"""Write the API's OpenAPI document as JSON (what /openapi.json serves), built offline: no Temporal.

`make ts-types` generates the TypeScript SDK's types from it; tests/test_typescript_sdk.py checks that the
committed types match. Usage: `python scripts/openapi_document.py OUT.json`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.main import create_app  # noqa: E402
from taskservice.settings import Settings  # noqa: E402


def document() -> dict[str, Any]:
    """The document as the API serves it (the settings given here do not appear in it)."""
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(Settings(api_key=SecretStr("openapi-document"), data_dir=Path(data_dir)))
        return app.openapi()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/openapi_document.py OUT.json")
    Path(sys.argv[1]).write_text(json.dumps(document(), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
