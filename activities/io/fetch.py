"""Download of task input files (reference images, voice profiles, audio tracks) behind the SSRF guard.

Every hop of a redirect chain is resolved and checked, and the request is sent to the checked address
(Host header and TLS SNI keep the original name), so a DNS answer that changes between check and connect
cannot smuggle a private address in. Client mistakes (bad URL, 404, wrong type, too big) are permanent
`InvalidInput` failures; server and network trouble raises `InputFetchError`, which Temporal retries.
"""

from __future__ import annotations

import asyncio
import io
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from activities.runtime import permanent_error
from taskservice.netguard import (
    PrivateAddressError,
    UnresolvableHostError,
    pinned_request,
    public_address,
    redact_url,
)
from taskservice.settings import Settings

if TYPE_CHECKING:
    from PIL.Image import Image

MAX_REDIRECTS = 5
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# What image inputs (reference images, storyboards, captioned images) may be served as.
IMAGE_TYPES = ("image/",)
# Client errors that are really "try again later".
_RETRYABLE_4XX = frozenset({408, 425, 429})


class InputFetchError(Exception):
    """A transient failure to download an input (5xx, timeout, connection): the attempt is retried."""


@dataclass
class FetchedFile:
    url: str
    content_type: str
    data: bytes


class InputFetcher:
    """Fetches input URLs for activities through the worker's shared `httpx.AsyncClient`."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        # Per operation (connect, each read); the whole chain has its own deadline in `fetch`.
        self._timeout = httpx.Timeout(settings.fetch_timeout_s)

    async def fetch(self, url: str, *, accept: tuple[str, ...], max_bytes: int | None = None) -> FetchedFile:
        """Download `url` (up to 5 checked redirects) whose content type starts with one of `accept`.

        Raises:
            ApplicationError: type InvalidInput (non-retryable) for anything retrying cannot fix.
            InputFetchError: for server errors, throttling, timeouts and connection failures.
        """
        limit = self._settings.fetch_max_bytes if max_bytes is None else max_bytes
        try:
            # One deadline for the whole chain: per-operation timeouts alone let a slow drip run forever.
            async with asyncio.timeout(self._settings.fetch_timeout_s):
                return await self._fetch(url, accept, limit)
        except TimeoutError:
            raise InputFetchError(
                f"timed out after {self._settings.fetch_timeout_s:g}s downloading {redact_url(url)}"
            ) from None

    async def _fetch(self, url: str, accept: tuple[str, ...], limit: int) -> FetchedFile:
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            request = await self._build_request(current, original=url)
            try:
                response = await self._client.send(request, stream=True, follow_redirects=False)
            except httpx.HTTPError as err:
                raise InputFetchError(
                    f"could not download {redact_url(current)}: {type(err).__name__}"
                    + (f": {err}" if str(err) else "")
                ) from None
            try:
                if response.status_code in _REDIRECT_CODES:
                    location = response.headers.get("location")
                    if not location:
                        raise permanent_error(
                            f"input URL {redact_url(current)} redirects without a Location", "InvalidInput"
                        )
                    current = str(httpx.URL(current).join(location))
                    continue
                self._check_status(response.status_code, current, url)
                content_type = _media_type(response.headers.get("content-type"))
                if not content_type.startswith(accept):
                    raise permanent_error(
                        f"input URL {redact_url(url)} has content type {content_type!r}; "
                        f"expected {' or '.join(accept)}",
                        "InvalidInput",
                    )
                data = await _read_limited(response, limit, url)
                return FetchedFile(url=url, content_type=content_type, data=data)
            finally:
                await response.aclose()
        raise permanent_error(
            f"input URL {redact_url(url)} redirects more than {MAX_REDIRECTS} times", "InvalidInput"
        )

    async def _build_request(self, url: str, *, original: str) -> httpx.Request:
        """A GET for `url`, aimed at an address that passed the guard (unless private URLs are allowed)."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise permanent_error(
                f"input URL {redact_url(original)} is not a valid URL", "InvalidInput"
            ) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise permanent_error(
                f"input URL {redact_url(url)} must be http(s) with a host", "InvalidInput"
            ) from None
        # Identity: a compressed body would be inflated before its size is known (see _read_limited).
        headers = {"user-agent": "aladdin-task-service/1", "accept": "*/*", "accept-encoding": "identity"}
        if self._settings.allow_private_urls:
            return self._client.build_request("GET", parsed, headers=headers, timeout=self._timeout)
        address = await _resolve_public(parsed, original)
        return pinned_request(self._client, parsed, address, headers, timeout=self._timeout)

    @staticmethod
    def _check_status(status: int, current: str, original: str) -> None:
        if status < 300:
            return
        where = redact_url(current)
        if status >= 500 or status in _RETRYABLE_4XX:
            raise InputFetchError(f"input URL {where} answered HTTP {status}; will retry")
        if status in (404, 410):
            raise permanent_error(f"input URL {where} not found (HTTP {status})", "InvalidInput")
        suffix = "" if current == original else f" (redirected from {redact_url(original)})"
        raise permanent_error(f"input URL {where} answered HTTP {status}{suffix}", "InvalidInput")


async def _resolve_public(url: httpx.URL, original: str) -> str:
    """The first address of `url`'s host, after checking that every address it resolves to is public."""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        return await public_address(url.raw_host.decode("ascii"), port)
    except UnresolvableHostError:
        # An unknown name is a client mistake far more often than a DNS outage.
        raise permanent_error(
            f"input URL {redact_url(original)}: host {url.host!r} does not resolve", "InvalidInput"
        ) from None
    except PrivateAddressError:
        raise permanent_error(
            f"input URL {redact_url(original)} refused: host {url.host!r} resolves to a private, loopback, "
            "link-local, multicast or reserved address",
            "InvalidInput",
        ) from None


def _media_type(header: str | None) -> str:
    # A server that names no type sends bytes; callers that accept octet-stream take those.
    return (header or "application/octet-stream").split(";", 1)[0].strip().lower()


async def _read_limited(response: httpx.Response, limit: int, url: str) -> bytes:
    """The body, at most `limit` bytes as sent and as decoded: a gzip or deflate Content-Encoding is undone
    here, never more than the limit at a time (httpx's own decoding would inflate a whole chunk before the
    size could be checked); any other encoding is refused."""
    too_big = permanent_error(
        f"input URL {redact_url(url)} is larger than the {limit} byte limit", "InvalidInput"
    )
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    decoder = _content_decoder(response.headers.get("content-encoding"), url)
    chunks: list[bytes] = []
    sent = size = 0
    try:
        async for raw in response.aiter_raw():
            sent += len(raw)
            chunk = raw if decoder is None else decoder.decompress(raw, limit - size + 1)
            size += len(chunk)
            if sent > limit or size > limit:
                raise too_big
            chunks.append(chunk)
    except httpx.HTTPError as err:
        raise InputFetchError(f"download of {redact_url(url)} broke off: {type(err).__name__}") from None
    except zlib.error:
        raise permanent_error(
            f"input URL {redact_url(url)} sent a corrupt compressed body", "InvalidInput"
        ) from None
    if decoder is not None:
        chunks.append(decoder.flush(limit - size + 1))
        if size + len(chunks[-1]) > limit:
            raise too_big
    return b"".join(chunks)


def _content_decoder(header: str | None, url: str) -> zlib._Decompress | None:
    """A zlib decompressor for a gzip or deflate body; None for an unencoded one."""
    encoding = (header or "identity").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        # wbits 32 + MAX_WBITS: a gzip or zlib header, whichever the body has.
        return zlib.decompressobj(32 + zlib.MAX_WBITS)
    raise permanent_error(
        f"input URL {redact_url(url)} sent Content-Encoding {encoding!r}; only gzip and deflate are decoded",
        "InvalidInput",
    )


def decode_image(data: bytes, source: str, *, max_pixels: int, upright: bool = False) -> Image:
    """Decoded RGB image (turned by its EXIF orientation when `upright`); undecodable input is InvalidInput.

    The size is read from the header first: an image above `max_pixels` (MAX_INPUT_PIXELS), or above what
    PIL would warn about as a possible decompression bomb, is refused before a pixel is decoded.
    `source` names the input in the error, e.g. "input URL https://host/x.png" (already redacted).
    """
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as opened:
            _check_pixels(opened.size, source, max_pixels, PILImage.MAX_IMAGE_PIXELS)
            opened.load()
            image = ImageOps.exif_transpose(opened) if upright else opened
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, PILImage.DecompressionBombError) as err:
        reason = f"{source} is not a decodable image ({type(err).__name__})"
        raise permanent_error(reason, "InvalidInput") from None


def _check_pixels(size: tuple[int, int], source: str, max_pixels: int, bomb_pixels: int | None) -> None:
    width, height = size
    if width * height > max_pixels:
        raise permanent_error(
            f"{source} is {width}x{height} = {width * height:,} pixels, above MAX_INPUT_PIXELS = "
            f"{max_pixels:,}",
            "InvalidInput",
        )
    if bomb_pixels is not None and width * height > bomb_pixels:
        raise permanent_error(
            f"{source} is {width}x{height} = {width * height:,} pixels: a possible decompression bomb "
            f"(above PIL's {bomb_pixels:,})",
            "InvalidInput",
        )
