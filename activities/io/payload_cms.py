"""Registration of task results in Payload CMS's `media` upload collection, over its REST API.

Payload creates an upload document from a multipart POST to `/{collection}` whose `file` part is the file
and whose `_payload` part is the JSON of the other fields (Payload 2 also reads plain form fields, so `alt`
is sent both ways). Authentication is Payload's API-key header: `Authorization: users API-Key <key>`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx

from activities.runtime import permanent_error
from taskservice.netguard import redact_url
from taskservice.settings import Settings

log = logging.getLogger("taskservice.payload_cms")

MEDIA_COLLECTION = "media"
# Uploads of a video can be slow; this bounds one registration request.
REQUEST_TIMEOUT_S = 120.0


class PayloadCMSError(Exception):
    """A transient failure to register media (5xx, timeout, connection): the activity attempt is retried."""


class PayloadCMS:
    """Creates `media` documents; does nothing (returns None) when PAYLOAD_API_URL/KEY are not configured."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._base = settings.payload_api_url.rstrip("/") if settings.payload_api_url else None
        self._key = settings.payload_api_key.get_secret_value() if settings.payload_api_key else None
        self._client = client

    @property
    def enabled(self) -> bool:
        return bool(self._base and self._key)

    async def register_media(
        self,
        path: Path,
        *,
        filename: str,
        content_type: str,
        alt: str,
        fields: dict[str, Any] | None = None,
    ) -> str | None:
        """Upload `path` as a new `media` document and return its id (None when Payload is not configured).

        Raises:
            ApplicationError: AuthenticationFailed on 401/403, UpstreamClientError on other 4xx (permanent).
            PayloadCMSError: on 5xx, 429, timeouts and connection errors (retried by Temporal).
        """
        if not self.enabled:
            return None
        endpoint = f"{self._base}/{MEDIA_COLLECTION}"
        data = await asyncio.to_thread(path.read_bytes)
        document = {"alt": alt[:500], **(fields or {})}
        try:
            response = await self._client.post(
                endpoint,
                headers={"authorization": f"users API-Key {self._key}", "accept": "application/json"},
                files={"file": (filename, data, content_type)},
                data={"_payload": json.dumps(document, default=str), "alt": document["alt"]},
                timeout=REQUEST_TIMEOUT_S,
            )
        except httpx.HTTPError as err:
            raise PayloadCMSError(
                f"Payload CMS request to {redact_url(endpoint)} failed: {type(err).__name__}"
            ) from None
        status = response.status_code
        if status in (401, 403):
            raise permanent_error(
                f"Payload CMS refused PAYLOAD_API_KEY (HTTP {status})", "AuthenticationFailed"
            )
        if status >= 500 or status == 429:
            raise PayloadCMSError(f"Payload CMS answered HTTP {status}; will retry")
        if status >= 400:
            raise permanent_error(
                f"Payload CMS rejected the media document (HTTP {status}): {_errors(response)}",
                "UpstreamClientError",
            )
        doc_id = _document_id(response)
        if doc_id is None:
            # A 2xx without an id is a contract break; report it rather than make an id up.
            raise PayloadCMSError(f"Payload CMS answered HTTP {status} without a document id")
        log.info("Registered media in Payload CMS", extra={"payload_media_id": doc_id, "file": filename})
        return doc_id


def _document_id(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    # Payload answers `{"doc": {...}, "message": ...}`; some setups return the bare document.
    doc = body.get("doc", body) if isinstance(body, dict) else None
    if isinstance(doc, dict) and doc.get("id") not in (None, ""):
        return str(doc["id"])
    return None


def _errors(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in body["errors"])[
            :300
        ]
    return json.dumps(body)[:300]
