"""Outbound URL checks shared by submit-time validation, webhooks and input fetching (SSRF guard)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeURLError(ValueError):
    """The URL is not http(s), or its host resolves to an address we may not call."""


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


async def check_outbound_url(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeURLError unless `url` is http(s) and (unless allowed) resolves only to public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURLError("must be an http(s) URL with a host")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise UnsafeURLError(f"host {parts.hostname!r} does not resolve") from err
    for info in infos:
        if not is_public_address(str(info[4][0])):
            raise UnsafeURLError(f"host {parts.hostname!r} resolves to a private or loopback address")
