"""The written forms of credentials in the configuration: `tenant=key` entries and Standard Webhooks secrets.

Messages name an entry by its position or its variable, never by its value: they end up in logs.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from pydantic import SecretStr

# Every name under which the service accepts a credential (headers, query parameters, connection_init and
# Socket.IO auth fields; compared case-insensitively): the log scrubber redacts the value after each of them.
CREDENTIAL_PARAMETERS = ("x-api-key", "api_key", "apikey", "api-key", "authorization", "token")

TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# API and admin keys shorter than this are refused at start.
MIN_API_KEY_LENGTH = 16


def tenant_key(source: str, number: int, item: str) -> tuple[str, str]:
    """One `tenant=key` entry; the message names the entry by position, never by its key."""
    tenant, sep, key = item.partition("=")
    tenant, key = tenant.strip(), key.strip()
    if not sep or not TENANT_NAME.fullmatch(tenant) or not key:
        raise ValueError(f"{source} entry {number} must be tenant=key (tenant: letters, digits, _.-)")
    if key.startswith("sha256:") and not _DIGEST.fullmatch(key.lower()):
        raise ValueError(f"{source} entry {number}: a sha256: key must be 64 hex digits")
    return tenant, key.lower() if key.startswith("sha256:") else key


def require_key_length(variable: str, keys: Iterable[str]) -> None:
    """ValueError naming the variable (never the key) if one of its keys is shorter than the minimum."""
    if any(len(key) < MIN_API_KEY_LENGTH for key in keys):
        raise ValueError(f"{variable}: every key must be at least {MIN_API_KEY_LENGTH} characters long")


WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_KEY_BYTES = (24, 64)


def decode_webhook_secret(secret: str, where: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret; if malformed, ValueError naming `where`, not the secret."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(f"{where} must start with `{WEBHOOK_SECRET_PREFIX}` (Standard Webhooks format)")
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError(f"{where}: the part after `{WEBHOOK_SECRET_PREFIX}` is not valid base64") from None
    low, high = WEBHOOK_KEY_BYTES
    if not low <= len(key) <= high:
        raise ValueError(f"{where} decodes to {len(key)} bytes; {low} to {high} are required")
    return key


def comma_separated(secret: SecretStr) -> list[str]:
    return [part.strip() for part in secret.get_secret_value().split(",") if part.strip()]
