"""The authenticated caller."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """The authenticated API key, known only by a hash (never logged or stored in clear)."""

    key_id: str
    is_admin: bool = False


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]
