"""Identity: bearer JWTs (HS256) carrying `sub` (officer id), `office` and `roles`.

Roles: `pk` (community-corrections officer), `supervisor` (Kasubsi/Kasi Bimbingan Klien),
`head` (Kepala Bapas), `tpp` (review panel), `auditor` (reads every office), `agency`
(external subscriber), `admin`. An officer acts only within their own office.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..events import Metadata
from ..logging import bind
from .problems import Problem

__all__ = ["ROLES", "Principal", "TokenService", "CurrentPrincipal", "require_roles",
           "not_found", "OfficeScope", "Scope"]

ROLES = frozenset({"pk", "supervisor", "head", "tpp", "auditor", "agency", "admin"})
CASE_READERS = ("pk", "supervisor", "head", "tpp")
_bearer = HTTPBearer(auto_error=False, description="A JWT from `bapas token` (development) "
                     "or the identity provider")


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    office: str
    roles: frozenset[str]

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def sees_office(self, office: str) -> bool:
        """Auditors read every office; everyone else only their own."""
        return office == self.office or "auditor" in self.roles

    def may_read_case(self, office: str, officer_id: str | None, is_child: bool,
                      *, also_office: str | None = None) -> bool:
        """May this person read a client's case? Auditors read every case; the office's
        staff (pk, supervisor, head, tpp) read their office's cases (and `also_office`'s,
        such as a client transferred to them); a child's case only its own officer, the
        supervisors and the head (UU 27/2022)."""
        if "auditor" in self.roles:
            return True
        if self.office not in (office, also_office) or not self.has(*CASE_READERS):
            return False
        return not is_child or self.has("supervisor", "head") or self.sub == officer_id


VERIFIED_TOKENS = 10_000  # tokens remembered as verified (all forgotten when full)


class TokenService:
    def __init__(self, secret: str, issuer: str = "bapas") -> None:
        self._secret = secret
        self._issuer = issuer
        self._verified: dict[str, tuple[Principal, float]] = {}  # token -> principal, exp

    def issue(self, sub: str, office: str, roles: list[str] | tuple[str, ...],
              ttl_s: int = 12 * 3600) -> str:
        unknown = set(roles) - ROLES
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; known: {sorted(ROLES)}")
        now = int(time.time())
        claims = {"sub": sub, "office": office, "roles": list(roles), "iss": self._issuer,
                  "iat": now, "exp": now + ttl_s}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        """The token's principal; a token verified before is not checked again until it
        expires (the signature of the same bytes cannot change; the check costs about a
        twentieth of a request)."""
        known = self._verified.get(token)
        if known is not None:
            principal, expires = known
            if time.time() < expires:
                return principal
            del self._verified[token]
        principal, expires = self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.clear()
        self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], issuer=self._issuer,
                                options={"require": ["sub", "exp", "iss"]})
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"the token is not valid: {exc}") from None
        office, roles = claims.get("office"), claims.get("roles")
        if not isinstance(office, str) or not office:
            raise _unauthorized("the token names no office")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise _unauthorized("the token's roles must be a list of strings")
        return Principal(sub=str(claims["sub"]), office=office,
                         roles=frozenset(roles) & ROLES), float(claims["exp"])


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Not authenticated", detail, rule="authentication",
                   headers={"WWW-Authenticate": "Bearer"})


async def current_principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("send `Authorization: Bearer <token>`")
    principal = request.app.state.tokens.verify(credentials.credentials)
    bind(actor=principal.sub, office=principal.office)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str):
    """Dependency: the caller holds one of `roles` (403 naming them otherwise)."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.has(*roles):
            raise Problem(403, "Forbidden", f"this needs one of the roles {', '.join(roles)}",
                          rule="role_required")
        return principal

    return Depends(check)


IDEMPOTENCY_KEY_MAX = 200


def metadata(request: Request, principal: Principal) -> Metadata:
    """Who acts, the request's correlation id, and its `Idempotency-Key` if it sent one."""
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= IDEMPOTENCY_KEY_MAX and key.isprintable()):
        raise Problem(422, "Invalid Idempotency-Key",
                      f"the Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX} printable "
                      "characters", rule="idempotency_key_format", field="header.Idempotency-Key")
    return Metadata(actor=principal.sub, correlation_id=request.state.correlation_id,
                    idempotency_key=key)


def not_found(what: str = "client") -> Problem:
    """The same answer whether a case does not exist or belongs to another office."""
    return Problem(404, "Not found", f"no such {what}", rule="not_found")


@dataclass(frozen=True, slots=True)
class Scope:
    """What the caller may see: their own office's cases (auditors: every office)."""

    principal: Principal

    def require(self, office: str, what: str = "client") -> None:
        """404 for a case of another office: no hint that it exists."""
        if not self.principal.sees_office(office):
            raise not_found(what)


async def office_scope(principal: CurrentPrincipal) -> Scope:
    if principal.roles <= {"agency"}:
        raise Problem(403, "Forbidden", "agencies read events through their subscriptions",
                      rule="role_required")
    return Scope(principal)


OfficeScope = Annotated[Scope, Depends(office_scope)]
