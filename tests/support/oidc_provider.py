"""A small but real OpenID Connect provider for tests, on a loopback port in a thread.

    with running_provider(users={"pk-0007": {"office": "jaksel", "roles": ["pk"]}}) as idp:
        token = idp.mint("pk-0007", alg="ES256")       # straight to a service
        idp.issuer, idp.client_id, idp.client_secret     # for the console's sign-in

It serves discovery (`/.well-known/openid-configuration`), its keys (`/jwks`: one RSA and
one EC P-256 key), the authorization-code flow (`/authorize`, `/token`, with PKCE if the
client asks for it) and `/userinfo`. `/authorize` shows no login page: it signs in the user
named by `login_hint`, or the first user. `/token` answers an RS256 `access_token` and
`id_token` (with the `nonce` and `at_hash`), `token_type` Bearer and `expires_in`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = ["DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "DEFAULT_USERS", "Client", "Provider",
           "running_provider", "start_provider"]

Alg = Literal["RS256", "ES256"]
DEFAULT_CLIENT_ID = "bapas"
DEFAULT_CLIENT_SECRET = "bapas-oidc-test-client-secret"
DEFAULT_USERS: dict[str, dict[str, Any]] = {
    "pk-0007": {"name": "Rina Wulandari", "office": "jaksel", "roles": ["pk"]},
    "kasubsi-01": {"name": "Agus Santoso", "office": "jaksel", "roles": ["pk", "supervisor"]},
}
CODE_TTL_S = 60
TOKEN_TTL_S = 300


@dataclass(frozen=True)
class Client:
    """A registered client (relying party). No `redirect_uris`: any redirect URI is taken,
    for tests that learn the console's port only once it runs."""

    secret: str
    redirect_uris: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Key:
    kid: str
    alg: Alg
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        jwk = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    login: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float


@dataclass
class Provider:
    """The running provider. `users` maps a login (also the default `sub`) to its claims
    (`office`, `roles`, `name`, anything else: all go into the tokens; a `sub` claim
    overrides the login as subject)."""

    users: dict[str, dict[str, Any]]
    clients: dict[str, Client]
    client_id: str
    _server: ThreadingHTTPServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _keys: dict[Alg, _Key] = field(default_factory=dict, repr=False)
    _retired: list[_Key] = field(default_factory=list, repr=False)
    _grants: dict[str, _Grant] = field(default_factory=dict, repr=False)
    _access_tokens: dict[str, str] = field(default_factory=dict, repr=False)  # token -> login
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    jwks_reads: int = 0  # how often /jwks was read: tests of key caching count them

    @property
    def issuer(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def client_secret(self) -> str:
        return self.clients[self.client_id].secret

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/jwks"

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    def kid(self, alg: Alg = "RS256") -> str:
        """The key id the provider signs `alg` tokens with now."""
        return self._keys[alg].kid

    def mint(self, login: str | None = None, *, alg: Alg = "RS256", kid: str | None = None,
             audience: str | list[str] | None = None, issuer: str | None = None,
             ttl_s: int = TOKEN_TTL_S, claims: Mapping[str, Any] | None = None) -> str:
        """A token as the provider would issue it to `login` (default: the first user),
        signed with its current `alg` key. `kid` puts another key id in the header (the
        token is still signed with the current key); `audience` defaults to the client id,
        `issuer` to the provider's; `claims` are added last, and a claim given as None is
        left out (`claims={"exp": None}`)."""
        login = login or next(iter(self.users))
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": issuer or self.issuer, "sub": login,
            "aud": self.client_id if audience is None else audience,
            "iat": now, "exp": now + ttl_s, "jti": secrets.token_hex(8),
            **self.users[login], **(claims or {})}
        return self._sign({k: v for k, v in body.items() if v is not None}, alg, kid)

    def rotate(self, *, keep_previous: bool = False) -> dict[Alg, str]:
        """New RSA and EC keys, under new key ids, sign from now on; the old ones leave the
        JWKS (or stay published beside the new ones, `keep_previous`). Returns the new ids."""
        with self._lock:
            old = list(self._keys.values())
            self._keys = _new_keys()
            self._retired = old if keep_previous else []
            return {alg: key.kid for alg, key in self._keys.items()}

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            keys = [*self._keys.values(), *self._retired]
        return {"keys": [key.public_jwk() for key in keys]}

    def discovery(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token",
            "userinfo_endpoint": base + "/userinfo",
            "jwks_uri": base + "/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "scopes_supported": ["openid", "profile", "email"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "code_challenge_methods_supported": ["S256", "plain"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name",
                                 "office", "roles"],
        }

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    # ------------------------------------------------------------------ the flow's steps

    def _sign(self, claims: dict[str, Any], alg: Alg, kid: str | None = None) -> str:
        key = self._keys[alg]
        return jwt.encode(claims, key.private, algorithm=alg, headers={"kid": kid or key.kid})

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        client = self.clients.get(query.get("client_id", ""))
        redirect_uri = query.get("redirect_uri", "")
        if client is None:
            return 400, {}, {"error": "invalid_request", "error_description": "unknown client"}
        if not redirect_uri or (client.redirect_uris and redirect_uri not in client.redirect_uris):
            return 400, {}, {"error": "invalid_request",
                             "error_description": "redirect_uri not registered"}
        state = {"state": query["state"]} if "state" in query else {}

        def refuse(error: str, description: str) -> tuple[int, dict[str, str], Any]:
            return 302, {"Location": _with_query(redirect_uri, {
                "error": error, "error_description": description, **state})}, None

        if query.get("response_type") != "code":
            return refuse("unsupported_response_type", "only response_type=code")
        if "openid" not in query.get("scope", "").split():
            return refuse("invalid_scope", "the scope must include openid")
        login = query.get("login_hint") or next(iter(self.users))
        if login not in self.users:
            return refuse("access_denied", f"no user {login!r}")
        method = query.get("code_challenge_method", "plain" if "code_challenge" in query else None)
        if method not in (None, "plain", "S256"):
            return refuse("invalid_request", "code_challenge_method must be S256 or plain")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = _Grant(
                client_id=query["client_id"], redirect_uri=redirect_uri, login=login,
                scope=query["scope"], nonce=query.get("nonce"),
                code_challenge=query.get("code_challenge"), code_challenge_method=method,
                expires_at=time.time() + CODE_TTL_S)
        return 302, {"Location": _with_query(redirect_uri, {"code": code, **state})}, None

    def _token(self, form: dict[str, str], authorization: str | None
               ) -> tuple[int, dict[str, str], Any]:
        client_id, secret = _client_credentials(form, authorization)
        client = self.clients.get(client_id or "")
        if client is None or secret is None or not secrets.compare_digest(secret, client.secret):
            return 401, {"WWW-Authenticate": 'Basic realm="token"'}, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {}, {"error": "unsupported_grant_type"}
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)  # a code is used once
        if (grant is None or grant.expires_at < time.time() or grant.client_id != client_id
                or grant.redirect_uri != form.get("redirect_uri")):
            return 400, {}, {"error": "invalid_grant"}
        if grant.code_challenge is not None and not _pkce_holds(grant, form.get("code_verifier")):
            return 400, {}, {"error": "invalid_grant", "error_description": "PKCE check failed"}
        access_token = self.mint(grant.login, audience=client_id, claims={
            "scope": grant.scope, "client_id": client_id})
        with self._lock:
            self._access_tokens[access_token] = grant.login
        id_token = self.mint(grant.login, audience=client_id, claims={
            "nonce": grant.nonce, "auth_time": int(time.time()), "azp": client_id,
            "at_hash": _half_hash(access_token)})
        return 200, {"Cache-Control": "no-store", "Pragma": "no-cache"}, {
            "access_token": access_token, "token_type": "Bearer", "expires_in": TOKEN_TTL_S,
            "id_token": id_token, "scope": grant.scope}

    def _userinfo(self, authorization: str | None) -> tuple[int, dict[str, str], Any]:
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            login = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
        if login is None:
            return 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, \
                {"error": "invalid_token"}
        return 200, {}, {"sub": login, **self.users[login]}


def _new_keys() -> dict[Alg, _Key]:
    stamp = secrets.token_hex(4)
    return {"RS256": _Key(f"rsa-{stamp}", "RS256",
                          rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "ES256": _Key(f"ec-{stamp}", "ES256", ec.generate_private_key(ec.SECP256R1()))}


def _with_query(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if urlsplit(uri).query else "?") + urlencode(params)


def _client_credentials(form: dict[str, str], authorization: str | None
                        ) -> tuple[str | None, str | None]:
    """client_secret_basic (RFC 6749 2.3.1: form-urlencoded, then base64) or _post."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None, None
        return unquote_plus(user), unquote_plus(password)
    return form.get("client_id"), form.get("client_secret")


def _pkce_holds(grant: _Grant, verifier: str | None) -> bool:
    if not verifier:
        return False
    if grant.code_challenge_method == "S256":
        verifier = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return secrets.compare_digest(verifier, grant.code_challenge or "")


def _half_hash(token: str) -> str:
    """`at_hash` (OpenID Connect Core 3.1.3.6): the left half of SHA-256, base64url."""
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                self._answer(200, {}, provider.discovery())
            elif url.path == "/jwks":
                provider.jwks_reads += 1
                self._answer(200, {}, provider.jwks())
            elif url.path == "/authorize":
                self._answer(*provider._authorize(query))
            elif url.path == "/userinfo":
                self._answer(*provider._userinfo(self.headers.get("Authorization")))
            else:
                self._answer(404, {}, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            path = urlsplit(self.path).path
            if path == "/token":
                self._answer(*provider._token(form, self.headers.get("Authorization")))
            elif path == "/userinfo":
                self._answer(*provider._userinfo(self.headers.get("Authorization")))
            else:
                self._answer(404, {}, {"error": "not_found"})

        def _answer(self, status: int, headers: dict[str, str], body: Any) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read the answers, not an access log

    return Handler


def start_provider(users: Mapping[str, Mapping[str, Any]] | None = None, *,
                   clients: Mapping[str, Client | str] | None = None,
                   client_id: str | None = None) -> Provider:
    """Start a provider on a free loopback port; `stop()` it (or use `running_provider`).
    `clients` maps client ids to a `Client` or just its secret (default: one client,
    `DEFAULT_CLIENT_ID`); `client_id` is the one `mint` addresses by default (the first)."""
    registered = {cid: c if isinstance(c, Client) else Client(c)
                  for cid, c in (clients or {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET}).items()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                              name="oidc-provider", daemon=True)
    provider = Provider(users={k: dict(v) for k, v in (users or DEFAULT_USERS).items()},
                        clients=registered, client_id=client_id or next(iter(registered)),
                        _server=server, _thread=thread, _keys=_new_keys())
    server.RequestHandlerClass = _handler(provider)
    thread.start()
    return provider


@contextlib.contextmanager
def running_provider(users: Mapping[str, Mapping[str, Any]] | None = None, *,
                     clients: Mapping[str, Client | str] | None = None,
                     client_id: str | None = None) -> Iterator[Provider]:
    provider = start_provider(users, clients=clients, client_id=client_id)
    try:
        yield provider
    finally:
        provider.stop()
