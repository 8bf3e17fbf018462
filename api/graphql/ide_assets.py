"""GraphiQL for /graphql, served by the API itself (no CDN: it works offline, like /docs).

The page is strawberry's GraphiQL page with its scripts and styles pointed at `/graphql/ide/…`; those files
are vendored, gzipped, from their npm packages by `scripts/vendor_graphiql.sh` (versions and checksums in
`ide/assets/SOURCES`).
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response

IDE = Path(__file__).parent / "ide"
ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The files never change under a name (a new version is a new deployment): browsers may keep them a day.
CACHE = "public, max-age=86400"

router = APIRouter(include_in_schema=False)


@cache
def graphiql_html() -> str:
    return (IDE / "graphiql.html").read_text(encoding="utf-8")


@cache
def _asset(name: str) -> bytes | None:
    path = IDE / "assets" / f"{name}.gz"
    return path.read_bytes() if Path(name).suffix in ASSET_TYPES and path.is_file() else None


@router.get("/graphql/ide/{name}")
async def graphiql_asset(name: str, request: Request) -> Response:
    """A script or stylesheet of the GraphiQL page: gzipped as stored when the client accepts it."""
    packed = _asset(name) if "/" not in name else None
    if packed is None:
        raise HTTPException(404, f"No GraphiQL file {name}")
    headers = {"Cache-Control": CACHE, "Vary": "Accept-Encoding"}
    media_type = ASSET_TYPES[Path(name).suffix]
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(packed, media_type=media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(gzip.decompress(packed), media_type=media_type, headers=headers)
