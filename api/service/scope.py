"""Which tasks a caller may see: the one rule of tenant isolation, applied by every operation.

A task belongs to a tenant (and, when a JWT user created it, to that user too). An API key or a `service`
token sees its whole tenant, a user token only the tasks its own `sub` created, an operator every tenant.
A task outside the caller's scope is answered exactly as a task that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.domain.caller import Caller, Role
from api.store.projection import TaskView
from taskservice.visibility import TaskQuery


@dataclass(frozen=True)
class Scope:
    tenant: str | None  # None: every tenant
    user: str | None = None  # only this user's tasks

    def allows(self, view: TaskView) -> bool:
        return self.owns(view.tenant, view.user)

    def owns(self, tenant: str, user: str | None) -> bool:
        """Whether an object of this tenant (created by this user, if any) is in scope: a task, a pipeline."""
        if self.tenant is not None and tenant != self.tenant:
            return False
        return self.user is None or user == self.user

    def narrow(self, query: TaskQuery) -> TaskQuery:
        """The query within this scope (a project is a name within a tenant)."""
        return query.with_(tenant=self.tenant, user=self.user)

    @property
    def key(self) -> str:
        """Names this scope (rooms, stream slots): `*`, a tenant, or a tenant's user."""
        if self.tenant is None:
            return "*"
        return self.tenant if self.user is None else f"{self.tenant}/{self.user}"


def scope_of(caller: Caller) -> Scope:
    if caller.role == Role.OPERATOR:
        return Scope(tenant=None)
    if caller.role == Role.USER:
        return Scope(tenant=caller.tenant, user=caller.subject)
    return Scope(tenant=caller.tenant)
