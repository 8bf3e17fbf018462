"""Outbound URL checks shared by submit-time validation, webhooks and input fetching (SSRF guard).

A checked URL is sent to the address the check approved (`pinned_request`): resolving its name again at
connect time would let a DNS answer that changes in between (rebinding) smuggle a private address in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

# host, port -> the addresses the name resolves to (an injected dependency, so tests can answer for DNS).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class UnsafeURLError(ValueError):
    """The URL is not http(s), or its host resolves to an address we may not call."""


class UnresolvableHostError(UnsafeURLError):
    """The URL's host name has no address."""


class PrivateAddressError(UnsafeURLError):
    """The URL's host resolves (at least partly) to a private, loopback, link-local or reserved address."""


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the guard, and the address to connect to (None: private allowed, connect by name)."""

    url: httpx.URL
    address: str | None


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer (getaddrinfo) for `host`."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


def redact_url(url: str) -> str:
    """Scheme, host and path only: query strings and userinfo often carry tokens."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def public_address(host: str, port: int, resolver: Resolver = system_resolver) -> str:
    """The first address of `host`, after checking that every address it resolves to is public."""
    try:
        addresses = list(await resolver(host, port))
    except OSError as err:
        raise UnresolvableHostError(f"host {host!r} does not resolve") from err
    if not addresses:
        raise UnresolvableHostError(f"host {host!r} does not resolve")
    if not all(is_public_address(address) for address in addresses):
        raise PrivateAddressError(f"host {host!r} resolves to a private or loopback address")
    return addresses[0]


async def check_outbound_url(
    url: str, *, allow_private: bool, resolver: Resolver = system_resolver
) -> CheckedURL:
    """`url` checked: http(s) with a host and (unless `allow_private`) resolving only to public addresses.

    Raises:
        UnsafeURLError: with a message fit for the caller (no query string, no credentials).
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise UnsafeURLError("must be an http(s) URL with a host") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UnsafeURLError("must be an http(s) URL with a host")
    if allow_private:
        return CheckedURL(parsed, None)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return CheckedURL(parsed, await public_address(_ascii_host(parsed), port, resolver))


def pinned_request(
    client: httpx.AsyncClient,
    url: httpx.URL,
    address: str,
    headers: dict[str, str],
    *,
    method: str = "GET",
    content: bytes | None = None,
    timeout: float | httpx.Timeout | None = None,
) -> httpx.Request:
    """A request to `url` sent to `address`: the Host header and TLS SNI (and so certificate checks) keep
    the URL's own host name."""
    host = _ascii_host(url)
    named = f"[{host}]" if ":" in host else host
    return client.build_request(
        method,
        url.copy_with(host=address),
        content=content,
        headers={**headers, "host": named if url.port is None else f"{named}:{url.port}"},
        extensions={"sni_hostname": host},
        timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
    )


def _ascii_host(url: httpx.URL) -> str:
    # IDNA-encoded, as DNS, the Host header and SNI all want it.
    return url.raw_host.decode("ascii")
