"""Bearer-token authentication: the one auth layer.

The API sits behind a trusted frontend proxy that forwards the user's JWT. Tokens are
HS256 signed with `WORKBENCH_JWT_SECRET`, or RS256 verified against the keys at
`WORKBENCH_JWKS_URL` (Entra ID in production). Claims used: `sub`, `roles` (`viewer`,
`operator`, `owner`, `worker`) and `tid`, the tenant every row is scoped to.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import get_args

import jwt

from api.errors import ApiError
from ledger.policy import Role
from ledger.repository import Actor

KNOWN_ROLES: frozenset[str] = frozenset(get_args(Role))
# People's roles, weakest first: each may do everything the ones before it may.
_HUMAN_RANKS: dict[str, int] = {"viewer": 0, "operator": 1, "owner": 2}
_VERIFIED_TOKENS_KEPT = 1024


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant_id: str
    roles: frozenset[str]

    def actor_for(self, required: Role) -> Actor:
        """The actor acting with its strongest role, or 403 when that is not enough."""
        if required == "worker":
            if "worker" not in self.roles:
                raise ApiError(403, "forbidden", "this route is for workers")
            return Actor(self.subject, self.tenant_id, "worker")
        held = [role for role in self.roles if role in _HUMAN_RANKS]
        strongest = max(held, key=_HUMAN_RANKS.__getitem__, default=None)
        if strongest is None or _HUMAN_RANKS[strongest] < _HUMAN_RANKS[required]:
            raise ApiError(
                403,
                "forbidden",
                f"this action needs the {required} role",
                {"required_role": required, "roles": sorted(self.roles)},
            )
        return Actor(self.subject, self.tenant_id, strongest)  # type: ignore[arg-type]


class Authenticator:
    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks_url: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        if not secret and not jwks_url:
            raise ValueError("set WORKBENCH_JWT_SECRET or WORKBENCH_JWKS_URL")
        self._secret = secret
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self._audience = audience
        self._issuer = issuer
        # Verified tokens by their text, until they expire: a frontend or a worker sends
        # the same token with every request, and checking its signature again each time
        # cost more CPU than the rest of a typical read.
        self._verified: dict[str, tuple[float, Principal]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthenticated", "a bearer token is required")
        cached = self._verified.get(token)
        if cached is not None:
            expires_at, principal = cached
            if time.time() < expires_at:
                return principal
            del self._verified[token]
        principal, expires_at = await self._verify(token)
        if len(self._verified) >= _VERIFIED_TOKENS_KEPT:
            self._verified.pop(next(iter(self._verified)))  # the oldest entry
        self._verified[token] = (expires_at, principal)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            if self._jwks is not None:
                # PyJWKClient fetches keys with blocking I/O (cached after the first).
                key = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
                algorithms = ["RS256"]
            else:
                key, algorithms = self._secret, ["HS256"]
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as error:
            raise ApiError(401, "unauthenticated", f"invalid token: {error}") from error
        tenant = claims.get("tid")
        roles = claims.get("roles", [])
        if not isinstance(tenant, str) or not tenant:
            raise ApiError(401, "unauthenticated", "the token has no tenant (tid) claim")
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise ApiError(401, "unauthenticated", "the roles claim must be a list of strings")
        principal = Principal(str(claims["sub"]), tenant, frozenset(roles) & KNOWN_ROLES)
        return principal, float(claims["exp"])


def mint_token(
    secret: str, *, subject: str, roles: list[str], tenant_id: str, ttl_seconds: int = 86_400
) -> str:
    """An HS256 token for local use and tests; production tokens come from Entra ID."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "roles": roles,
        "tid": tenant_id,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
