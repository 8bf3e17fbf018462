"""Who is calling: API keys (X-API-Key, `?api_key=`) of a tenant, the admin key, and HS256 JWTs.

`API_KEY` / `CELERY_TASK_API_KEY` belong to the tenant `default` (several keys are rotation within it);
`API_KEYS` / `API_KEYS_FILE` declare more tenants (`tenant=key`, or `tenant=sha256:<hex digest>`); a JWT names
its tenant by `JWT_TENANT_CLAIM` (else `JWT_DEFAULT_TENANT`) and must carry `sub` and `exp`. Every surface
authenticates through `Authenticator`: REST and WebSocket headers, GraphQL's connection_init payload,
Socket.IO's auth dict.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from api.domain.caller import DEFAULT_TENANT, Caller, Role
from api.domain.errors import AuthenticationFailed
from taskservice.credential_formats import TENANT_NAME
from taskservice.settings import Settings

DIGEST_PREFIX = "sha256:"


@dataclass(frozen=True)
class _Key:
    tenant: str
    secret: bytes  # the key itself, or the SHA-256 digest of it
    hashed: bool
    admin: bool = False


def _split(value: str) -> list[str]:
    return [k.strip() for k in value.split(",") if k.strip()]


def _key_ring(settings: Settings) -> list[_Key]:
    keys = settings.accepted_api_keys()
    if not keys and not settings.tenant_keys():
        # Development only (production refuses to start without a key, see Settings).
        key = "dev-" + secrets.token_urlsafe(18)
        print(f"No API_KEY set: this development API accepts X-API-Key: {key}", file=sys.stderr)
        keys = [key]
    ring = [_Key(DEFAULT_TENANT, k.encode(), hashed=False) for k in keys]
    for tenant, key in settings.tenant_keys():
        if key.startswith(DIGEST_PREFIX):
            ring.append(_Key(tenant, bytes.fromhex(key.removeprefix(DIGEST_PREFIX)), hashed=True))
        else:
            ring.append(_Key(tenant, key.encode(), hashed=False))
    admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key else ""
    ring += [_Key(DEFAULT_TENANT, k.encode(), hashed=False, admin=True) for k in _split(admin)]
    return ring


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._ring = _key_ring(settings)
        self._jwt_secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self._settings = settings

    def authenticate(self, api_key: str | None, authorization: str | None) -> Caller:
        """An API key, or (with JWT_SECRET) `Authorization: Bearer <JWT>`; AuthenticationFailed otherwise."""
        if api_key:
            return self.authenticate_key(api_key)
        if authorization and authorization.lower().startswith("bearer ") and self._jwt_secret:
            return self._from_token(authorization[7:].strip())
        raise AuthenticationFailed("Invalid or missing API key")

    def authenticate_key(self, api_key: str) -> Caller:
        """Compared against every key of the ring, in constant time each: timing reveals neither the key nor
        its position; the last match wins, and an admin key outranks a tenant key."""
        provided = api_key.encode()
        digest = hashlib.sha256(provided).digest()
        matched: _Key | None = None
        for key in self._ring:
            candidate = digest if key.hashed else provided
            if hmac.compare_digest(candidate, key.secret) and (matched is None or key.admin):
                matched = key
        if matched is None:
            raise AuthenticationFailed("Invalid or missing API key")
        return Caller(tenant=matched.tenant, role=Role.OPERATOR if matched.admin else Role.TENANT)

    def _from_token(self, token: str) -> Caller:
        assert self._jwt_secret is not None
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                self._jwt_secret,
                algorithms=["HS256"],
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                options={"require": ["sub", "exp"], "verify_aud": settings.jwt_audience is not None},
            )
        except jwt.PyJWTError:
            raise AuthenticationFailed("Invalid or expired token") from None
        tenant = claims.get(settings.jwt_tenant_claim) or settings.jwt_default_tenant
        if not isinstance(tenant, str):
            raise AuthenticationFailed("Invalid or expired token")
        if not TENANT_NAME.fullmatch(tenant):
            # A tenant name is letters, digits and _.- like any configured one: `org/team` would make
            # `tenant/project` scopes ambiguous.
            claim = settings.jwt_tenant_claim
            raise AuthenticationFailed(f"The token's `{claim}` claim is not a tenant name")
        role = {"admin": Role.OPERATOR, "service": Role.TENANT}.get(str(claims.get("role")), Role.USER)
        return Caller(tenant=tenant, role=role, subject=str(claims["sub"]))

    def from_params(self, params: Mapping[str, Any]) -> Caller | None:
        """The caller named by a connection_init payload or a Socket.IO auth dict (`apiKey`, `X-API-Key`,
        `Authorization`, `token` (a JWT, else tried as an API key), also inside `headers`); None if it names
        none; AuthenticationFailed if the credentials are wrong."""
        lowered = {str(k).lower(): v for k, v in params.items()}
        headers = lowered.get("headers")
        if isinstance(headers, Mapping):
            lowered = {**{str(k).lower(): v for k, v in headers.items()}, **lowered}

        def text(*names: str) -> str | None:
            return next((v for k in names if isinstance(v := lowered.get(k), str) and v), None)

        api_key, authorization = text("x-api-key", "apikey", "api_key"), text("authorization")
        token = text("token")
        if api_key or authorization:
            return self.authenticate(api_key, authorization)
        if token:
            try:
                return self.authenticate(None, f"Bearer {token}")
            except AuthenticationFailed:
                return self.authenticate(token, None)
        return None
