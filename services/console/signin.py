"""Signing in and out, the session, and CSRF protection.

- Production: OpenID Connect authorization-code flow against the office's identity
  provider (Authlib). The provider's access token (a JWT the services verify through the
  provider's JWKS) is what the console sends to the services; the office and roles come
  from the claims the settings name.
- Development (`BAPAS_ENV=development`, as `bapas up` runs): besides the provider if one is
  configured, a page that lists the demo officers of `bapas demo`; choosing one mints a
  development token with the local platform's secret.

The session lives in a signed cookie (HttpOnly, SameSite=Lax, Secure outside development)
holding the officer's token, who they are, and the session's CSRF token; every form
carries that token back and every POST is checked against it.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from shared.settings import Settings
from shared.web.auth import ROLES, TokenService

__all__ = [
    "DEV_ROSTER",
    "CsrfRefused",
    "Officer",
    "SignInNeeded",
    "check_csrf",
    "csrf_token",
    "oidc_client",
    "session_secret",
    "sign_in",
    "signed_in",
]

SESSION_HOURS = 12


@dataclass(frozen=True)
class Officer:
    sub: str
    office: str
    roles: tuple[str, ...]
    name: str
    token: str

    def has(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)


# `bapas demo`'s officers (shared/local/demo.py: Staff): eight PKs, the Kasubsi Bimbingan
# Klien, the head, the TPP's secretary; and the neighbouring office's Kasubsi.
DEV_ROSTER: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    *((f"pk-{i:04d}", "jaksel", ("pk",)) for i in range(1, 9)),
    ("kasubsi-bk", "jaksel", ("supervisor",)),
    ("kabapas", "jaksel", ("head",)),
    ("tpp-sekretaris", "jaksel", ("tpp",)),
    ("pk-0001", "jaktim", ("pk",)),
    ("kasubsi-bk", "jaktim", ("supervisor",)),
)


class SignInNeeded(Exception):
    """No session (or the services no longer accept its token): go to the sign-in page."""


class CsrfRefused(Exception):
    """A POST without the session's CSRF token."""


def session_secret(settings: Settings) -> str:
    """The key that signs session cookies: BAPAS_CONSOLE_SECRET; in development, derived
    from the local platform's token secret. Outside development there is no default."""
    if settings.console_secret is not None:
        value = settings.console_secret.get_secret_value()
        if len(value) < 32:
            raise ValueError("BAPAS_CONSOLE_SECRET must be at least 32 characters")
        return value
    if settings.development and settings.jwt_secret is not None:
        return hmac.new(settings.secret().encode(), b"bapas console sessions",
                        "sha256").hexdigest()
    raise ValueError("outside development mode BAPAS_CONSOLE_SECRET must be set "
                     "(at least 32 characters)")


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, sent: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not sent or not hmac.compare_digest(str(sent), expected):
        raise CsrfRefused()


def signed_in(request: Request) -> Officer:
    who = request.session.get("officer")
    if not who:
        raise SignInNeeded()
    return Officer(sub=who["sub"], office=who["office"], roles=tuple(who["roles"]),
                   name=who.get("name") or who["sub"], token=who["token"])


def sign_in(request: Request, *, sub: str, office: str, roles: list[str], name: str,
            token: str) -> None:
    """A new session: a fresh CSRF token too (no token from before sign-in stays valid)."""
    request.session.clear()
    request.session["officer"] = {"sub": sub, "office": office, "roles": roles, "name": name,
                                  "token": token}
    request.session["csrf"] = secrets.token_urlsafe(32)


def dev_token(settings: Settings, sub: str, office: str, roles: tuple[str, ...]) -> str:
    return TokenService(settings.secret(), settings.jwt_issuer).issue(
        sub, office, list(roles), ttl_s=SESSION_HOURS * 3600)


def oidc_client(settings: Settings) -> Any | None:
    """Authlib's client for the office's identity provider, if one is configured."""
    if not settings.oidc_issuer:
        return None
    if not settings.oidc_client_id:
        raise ValueError("BAPAS_OIDC_ISSUER is set but BAPAS_OIDC_CLIENT_ID is not")
    from authlib.integrations.starlette_client import OAuth

    oauth = OAuth()
    secret = settings.oidc_client_secret
    oauth.register(
        "office", client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        server_metadata_url=settings.oidc_issuer.rstrip("/")
        + "/.well-known/openid-configuration",
        client_kwargs={"scope": "openid profile email"})
    return oauth.office


def claims_officer(settings: Settings, claims: dict[str, Any]) -> tuple[str, list[str], str]:
    """Office, roles and display name from the provider's claims; ValueError naming what
    is missing."""
    office = claims.get(settings.oidc_office_claim)
    roles = claims.get(settings.oidc_roles_claim)
    if isinstance(roles, str):
        roles = roles.split()
    if not isinstance(office, str) or not office:
        raise ValueError(f"akun ini tidak memuat kantor (klaim `{settings.oidc_office_claim}`)")
    if not isinstance(roles, list) or not set(roles) & ROLES:
        raise ValueError(f"akun ini tidak memuat peran (klaim `{settings.oidc_roles_claim}`)")
    name = claims.get("name") or claims.get("preferred_username") or claims.get("sub")
    return office, [r for r in roles if r in ROLES], str(name)
