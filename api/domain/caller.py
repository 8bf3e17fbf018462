"""Who is calling: a tenant, and within it the whole tenant, one user, or (operators) every tenant."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_TENANT = "default"


class Role(StrEnum):
    """What a credential may see: API keys and `role: service` tokens their whole tenant; other tokens
    (users) the tasks their own `sub` created; the admin key and `role: admin` tokens every tenant."""

    TENANT = "tenant"
    USER = "user"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Caller:
    tenant: str
    role: Role = Role.TENANT
    # The JWT `sub`, when the caller came with a token (tasks it creates record it).
    subject: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.OPERATOR

    @property
    def owner(self) -> str:
        """The namespace of this caller's idempotency keys: its tenant, or its user within the tenant."""
        return f"{self.tenant}/{self.subject}" if self.role == Role.USER else self.tenant
