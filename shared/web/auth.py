"""Identity: bearer JWTs carrying `sub` (officer id), `office` and `roles`.

Two kinds of token are accepted, told apart by the header's `alg` and never mixed:
- HS256, signed with `jwt_secret` and issued by `jwt_issuer` (`bapas token`, development);
- RS256 or ES256 from the office's OpenID Connect provider, checked against the key its JWKS
  publishes under the token's `kid`, with its issuer and (if configured) audience.
An HS256 token is only ever checked against the secret and an RS256/ES256 token only against
the provider's keys, so no token can pass one check by being shaped for the other.

If the provider's keys cannot be read, a token that needs them is answered 503, not 401: the
token may be good, and the client should retry rather than sign in again.

Roles: `pk` (community-corrections officer), `supervisor` (Kasubsi/Kasi Bimbingan Klien),
`head` (Kepala Bapas), `tpp` (review panel), `auditor` (reads every office), `agency`
(external subscriber), `admin`. An officer acts only within their own office.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import jwt
import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..events import Metadata
from ..logging import bind
from .problems import Problem

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["ROLES", "CurrentPrincipal", "IdentityProvider", "OfficeScope", "Principal", "Scope",
           "TokenService", "identity_provider", "not_found", "require_roles"]

ROLES = frozenset({"pk", "supervisor", "head", "tpp", "auditor", "agency", "admin"})
CASE_READERS = ("pk", "supervisor", "head", "tpp")
_bearer = HTTPBearer(auto_error=False, description="A JWT from `bapas token` (development) "
                     "or the identity provider")
log = structlog.get_logger("bapas.auth")


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
PROVIDER_ALGORITHMS = frozenset({"RS256", "ES256"})
PROVIDER_LEEWAY_S = 30  # the provider's clock and ours may differ by this much
JWKS_MAX_AGE_S = 900  # keys are read again this often, so a withdrawn key stops working
JWKS_MIN_INTERVAL_S = 1.0  # made-up key ids cannot make us read the JWKS more often
JWKS_TIMEOUT_S = 5.0


class IdentityProvider:
    """The office's OpenID Connect provider, as far as its tokens go: its issuer, the
    audience they must name (None: any), the claims holding office and roles (a dotted name
    such as `realm_access.roles` reaches into an object), and its signing keys, read from
    `jwks_url` or, if that is not given, from the `jwks_uri` its discovery document names.

    Keys are read on first need, again for a key id not seen before (at most once a
    `JWKS_MIN_INTERVAL_S`), and again once they are `JWKS_MAX_AGE_S` old. Reading is blocking:
    `TokenService.authenticate` does it in a thread."""

    def __init__(self, issuer: str, *, audience: str | None = None, jwks_url: str | None = None,
                 office_claim: str = "office", roles_claim: str = "roles") -> None:
        self.issuer = issuer
        self.audience = audience
        self.office_claim = office_claim
        self.roles_claim = roles_claim
        self._jwks_url = jwks_url
        self._keys: dict[str, jwt.PyJWK] = {}
        self._read_at = float("-inf")  # monotonic time the last reading began
        self._failure: str | None = None  # why the last reading failed, if it did
        self._lock = threading.Lock()

    def has_fresh_key(self, kid: str) -> bool:
        return kid in self._keys and time.monotonic() - self._read_at < JWKS_MAX_AGE_S

    def refresh(self, kid: str, asked_at: float) -> None:
        """Read the keys again, unless a reading begun after `asked_at` (monotonic) has
        already done so; callers who ask together share one reading. If the provider
        cannot be reached, a key already known is used still; otherwise 503."""
        with self._lock:
            if self._read_at < asked_at and not self.has_fresh_key(kid):
                wait = self._read_at + JWKS_MIN_INTERVAL_S - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._read_at = time.monotonic()
                try:
                    self._keys, self._failure = self._read_keys(), None
                except Problem as failure:
                    self._failure = failure.detail
                    log.warning("identity_provider_unreachable", detail=failure.detail)
            if self._failure is not None and kid not in self._keys:
                raise _provider_unavailable(self._failure)

    def principal(self, token: str, alg: str, kid: str) -> tuple[Principal, float]:
        """The principal of a token whose key is already read (no IO), and when it expires."""
        key = self._keys.get(kid)
        if key is None:
            raise _unauthorized(f"the identity provider publishes no key {kid!r}: the token "
                                "was signed with a key it does not (or no longer) vouch for")
        if key.algorithm_name != alg:
            raise _unauthorized(f"the token says {alg} but the provider's key {kid!r} is a "
                                f"{key.algorithm_name} key")
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg], issuer=self.issuer,
                                audience=self.audience, leeway=PROVIDER_LEEWAY_S,
                                options={"require": ["sub", "exp", "iss"],
                                         "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized(f"the token is not meant for this service: its `aud` must "
                                f"name {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise _unauthorized(f"the token was not issued by {self.issuer}") from None
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"the token is not valid: {exc}") from None
        office = _claim(claims, self.office_claim)
        if not isinstance(office, str) or not office:
            raise _unauthorized(f"the token names no office (claim `{self.office_claim}`)")
        roles = _claim(claims, self.roles_claim)
        if isinstance(roles, str):
            roles = roles.split()
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise _unauthorized(f"the token's claim `{self.roles_claim}` must be a list of "
                                "roles or a space-separated string of them")
        return (Principal(sub=str(claims["sub"]), office=office, roles=frozenset(roles) & ROLES),
                float(claims["exp"]) + PROVIDER_LEEWAY_S)

    def _read_keys(self) -> dict[str, jwt.PyJWK]:
        url = self._jwks_url or self._discover()
        document = _get_json(url, "keys (JWKS)")
        keys: dict[str, jwt.PyJWK] = {}
        for jwk in document.get("keys", []) if isinstance(document, dict) else []:
            if (not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig"
                    or not isinstance(jwk.get("kid"), str)):
                continue
            try:
                key = jwt.PyJWK(jwk)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
                continue  # a kind of key we do not take (such as an encryption key)
            if key.algorithm_name in PROVIDER_ALGORITHMS:
                keys[jwk["kid"]] = key
        return keys

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = _get_json(url, "discovery document")
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            # OpenID Connect Discovery 1.0, 4.3: the document must name the issuer asked for
            raise _provider_unavailable(f"the discovery document at {url} names the issuer "
                                        f"{document.get('issuer')!r}, not {self.issuer!r}"
                                        if isinstance(document, dict) else
                                        f"the discovery document at {url} is not an object")
        jwks_url = document.get("jwks_uri")
        if not isinstance(jwks_url, str) or not jwks_url:
            raise _provider_unavailable(f"the discovery document at {url} names no jwks_uri")
        self._jwks_url = jwks_url
        return jwks_url


def identity_provider(settings: Settings) -> IdentityProvider | None:
    """The provider the settings name, or None if they name none."""
    if not settings.oidc_issuer:
        return None
    return IdentityProvider(settings.oidc_issuer,
                            audience=settings.oidc_audience or settings.oidc_client_id,
                            jwks_url=settings.oidc_jwks_url,
                            office_claim=settings.oidc_office_claim,
                            roles_claim=settings.oidc_roles_claim)


class TokenService:
    def __init__(self, secret: str, issuer: str = "bapas", *,
                 provider: IdentityProvider | None = None) -> None:
        if provider is not None and provider.issuer == issuer:
            raise ValueError(f"the identity provider's issuer must differ from {issuer!r}, "
                             "the issuer of bapas's own tokens")
        self._secret = secret
        self._issuer = issuer
        self._provider = provider
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
        twentieth of a request). Blocks while the provider's keys are read: on the event
        loop, use `authenticate`."""
        known = self._known(token)
        if known is not None:
            return known
        alg, kid = self._kind(token)
        if kid is not None and self._provider and not self._provider.has_fresh_key(kid):
            self._provider.refresh(kid, time.monotonic())
        return self._remember(token, alg, kid)

    async def authenticate(self, token: str) -> Principal:
        """`verify` for the event loop: the provider's keys, when they must be read, are
        read in a thread."""
        known = self._known(token)
        if known is not None:
            return known
        alg, kid = self._kind(token)
        if kid is not None and self._provider and not self._provider.has_fresh_key(kid):
            await asyncio.to_thread(self._provider.refresh, kid, time.monotonic())
        return self._remember(token, alg, kid)

    def _known(self, token: str) -> Principal | None:
        known = self._verified.get(token)
        if known is None:
            return None
        principal, expires = known
        if time.time() < expires:
            return principal
        self._verified.pop(token, None)
        return None

    def _remember(self, token: str, alg: str, kid: str | None) -> Principal:
        if kid is None:
            principal, expires = self._verify(token)
        else:
            assert self._provider is not None
            principal, expires = self._provider.principal(token, alg, kid)
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.clear()
        self._verified[token] = (principal, expires)
        return principal

    def _kind(self, token: str) -> tuple[str, str | None]:
        """The token's algorithm, and its key id if it is the provider's (None: ours). The
        header and issuer are read unchecked, only to refuse early and to pick the check."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"the token is not valid: {exc}") from None
        alg = header.get("alg")
        if alg == "HS256":
            return alg, None
        accepted = "HS256, RS256 or ES256" if self._provider else "HS256"
        if alg not in PROVIDER_ALGORITHMS or self._provider is None:
            raise _unauthorized(f"tokens signed with {str(alg)!r:.40} are not accepted "
                                f"here (only {accepted})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _unauthorized("the token names no key (`kid` in its header)")
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"the token is not valid: {exc}") from None
        if claims.get("iss") != self._provider.issuer:
            raise _unauthorized(f"the token was not issued by {self._provider.issuer}")
        return alg, kid

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


def _claim(claims: dict[str, Any], name: str) -> Any:
    """The claim `name`; failing that, a dotted name walks into objects (Keycloak puts roles
    in `realm_access.roles`). A name with dots, such as a URL, is tried whole first."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _get_json(url: str, what: str) -> Any:
    try:
        resp = httpx.get(url, timeout=JWKS_TIMEOUT_S, headers={"Accept": "application/json"})
        resp.raise_for_status()
        return resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise _provider_unavailable(f"the identity provider's {what} could not be read from "
                                    f"{url}: {exc}") from None


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Not authenticated", detail, rule="authentication",
                   headers={"WWW-Authenticate": "Bearer"})


def _provider_unavailable(detail: str) -> Problem:
    return Problem(503, "Identity provider unavailable", detail,
                   rule="identity_provider_unavailable", headers={"Retry-After": "5"})


async def current_principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("send `Authorization: Bearer <token>`")
    principal = await request.app.state.tokens.authenticate(credentials.credentials)
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
