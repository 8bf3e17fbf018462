"""Signed, expiring URLs of results kept by the local storage backend (S3 has its own presigned URLs).

Workers sign `{media key}` and an expiry time with MEDIA_SIGNING_KEY (HMAC-SHA256); the API serves a /media
file only for a URL whose signature is valid and unexpired, and answers anything else as missing. Without the
setting (development only), workers and the API share a key they keep in DATA_DIR.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from taskservice.settings import Settings

DEV_KEY_FILE = "media-signing-key"


class MediaSigner:
    def __init__(self, key: bytes, lifetime_s: int) -> None:
        self._key = key
        self._lifetime_s = lifetime_s

    def signed_url(self, base_url: str, key: str, *, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self._lifetime_s)
        query = urlencode({"expires": expires, "sig": self._signature(key, expires)})
        return f"{base_url.rstrip('/')}/{quote(key)}?{query}"

    def verify(self, key: str, expires: str | None, signature: str | None) -> bool:
        """A valid signature of this key whose expiry has not passed."""
        if not expires or not signature or not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(signature, self._signature(key, int(expires)))

    def _signature(self, key: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def media_signer(settings: Settings) -> MediaSigner:
    if settings.media_signing_key is not None:
        key = settings.media_signing_key.get_secret_value().encode()
    else:
        key = _development_key(settings.data_dir / DEV_KEY_FILE)
    return MediaSigner(key, settings.presign_expiry_s)


def _development_key(path: Path) -> bytes:
    """The key every development process on this DATA_DIR shares: made by the first, read by the rest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            if text := path.read_text().strip():
                return text.encode()
            time.sleep(0.02)  # its maker is writing it
        raise RuntimeError(f"{path} is empty: delete it and restart") from None
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32))
    return path.read_text().strip().encode()
