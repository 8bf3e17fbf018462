"""Results kept by the local storage backend, served only at the signed URLs workers hand out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse

from api.domain.errors import MediaNotFound, ValidationFailed
from api.rest.deps import ServicesDep
from api.rest.openapi import DocumentedRoute, error_responses

router = APIRouter(tags=["media"], route_class=DocumentedRoute)


@router.get(
    "/media/{key:path}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The file (`Content-Type` as its kind: image/png, video/mp4, audio/mpeg, ...).",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        **error_responses(ValidationFailed, MediaNotFound),
    },
)
async def media_file(
    key: Annotated[
        str, Path(description="The file's storage key: `{project_id}/{task_type}/{task_id}.{ext}`.")
    ],
    services: ServicesDep,
    expires: Annotated[
        str | None, Query(max_length=20, description="Expiry of the URL (Unix seconds).")
    ] = None,
    sig: Annotated[str | None, Query(max_length=100, description="The URL's signature.")] = None,
) -> FileResponse:
    """A result file (local storage backend).

    Needs no API key, but the `expires` and `sig` of the URL the task's result gave; a missing, wrong or
    expired signature answers 404 exactly as a missing file does.
    """
    root = services.media_root
    if root is None or not services.media_signer.verify(key, expires, sig):
        raise MediaNotFound(key)
    path = (root / key).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise MediaNotFound(key)
    return FileResponse(path)
