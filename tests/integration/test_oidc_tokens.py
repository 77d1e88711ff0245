"""Tokens of the office's OpenID Connect provider: a real provider on a loopback port (its
discovery, JWKS and code flow over HTTP) and the HTTP kernel every service serves, in-process.
HS256 development tokens are checked beside them and must not change."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import warnings
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter

from services.registration.app import definition as registration
from shared.metrics import KernelMetrics
from shared.settings import Settings
from shared.web.app import create_app
from shared.web.auth import CurrentPrincipal, IdentityProvider, TokenService, identity_provider
from shared.web.problems import Problem
from tests.support.oidc_provider import Client, Provider, running_provider
from tests.support.service import running

SECRET = "oidc-test-secret-0123456789-abcdefghij"
USERS = {
    "pk-0007": {"name": "Rina", "office": "jaksel", "roles": ["pk"]},
    "kasubsi-01": {"office": "jaksel", "roles": "pk supervisor root"},  # a space-separated string
    "kc-user": {"office": "jaktim", "realm_access": {"roles": ["head", "offline_access"]}},
}


@pytest.fixture(scope="module")
def idp():
    with running_provider(USERS) as provider:
        yield provider


def service(idp: Provider, **kw) -> TokenService:
    """A fresh TokenService (no keys read yet) trusting `idp`, found by discovery."""
    return TokenService(SECRET, provider=IdentityProvider(idp.issuer, audience=idp.client_id,
                                                          **kw))


router = APIRouter()


@router.get("/whoami")
async def whoami(principal: CurrentPrincipal) -> dict:
    return {"sub": principal.sub, "office": principal.office, "roles": sorted(principal.roles)}


async def _ready() -> tuple[bool, dict]:
    return True, {}


def http(tokens: TokenService) -> httpx.AsyncClient:
    app = create_app(service="testsvc", title="test", description="test", version="0",
                     tokens=tokens, metrics=KernelMetrics(), readiness=_ready, routers=[router])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bapas.test")


async def whoami_with(tokens: TokenService, token: str) -> httpx.Response:
    async with http(tokens) as client:
        return await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})


def refused(resp: httpx.Response, status: int = 401) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    return resp.json()["detail"]


def b64(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_of(idp: Provider, **extra) -> dict:
    return {"iss": idp.issuer, "sub": "pk-0007", "aud": idp.client_id, "office": "jaksel",
            "roles": ["pk"], "exp": 4102444800, **extra}


# ----------------------------------------------------------------------------- accepted

@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_provider_token_is_accepted_by_a_route(idp, alg):
    resp = await whoami_with(service(idp), idp.mint("pk-0007", alg=alg))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"sub": "pk-0007", "office": "jaksel", "roles": ["pk"]}


async def test_roles_in_a_space_separated_string_count_and_unknown_roles_are_dropped(idp):
    resp = await whoami_with(service(idp), idp.mint("kasubsi-01"))
    assert resp.json()["roles"] == ["pk", "supervisor"]


async def test_configured_claims_name_office_and_roles_even_nested(idp):
    tokens = service(idp, office_claim="unit", roles_claim="realm_access.roles")
    resp = await whoami_with(tokens, idp.mint("kc-user", claims={"unit": "jakbar"}))
    assert resp.json() == {"sub": "kc-user", "office": "jakbar", "roles": ["head"]}


async def test_without_an_audience_configured_any_audience_is_taken(idp):
    tokens = TokenService(SECRET, provider=IdentityProvider(idp.issuer))
    resp = await whoami_with(tokens, idp.mint(audience="some-other-app"))
    assert resp.status_code == 200, resp.text


async def test_keys_are_read_once_for_many_tokens(idp):
    tokens, before = service(idp), idp.jwks_reads
    for alg in ("RS256", "ES256", "RS256"):
        assert (await tokens.authenticate(idp.mint(alg=alg))).sub == "pk-0007"
    assert idp.jwks_reads == before + 1


async def test_tokens_of_a_new_key_arriving_together_share_one_reading(idp):
    tokens = service(idp)
    await tokens.authenticate(idp.mint())
    idp.rotate(keep_previous=True)
    before = idp.jwks_reads
    principals = await asyncio.gather(*(tokens.authenticate(idp.mint(alg="ES256"))
                                        for _ in range(20)))
    assert {p.sub for p in principals} == {"pk-0007"}
    assert idp.jwks_reads == before + 1


async def test_after_a_rotation_the_new_key_is_fetched_and_the_withdrawn_one_refused():
    with running_provider(USERS) as idp:
        tokens = service(idp)
        old_token = idp.mint(alg="ES256")
        assert (await tokens.authenticate(idp.mint())).sub == "pk-0007"
        old_kid = idp.kid("ES256")
        new = idp.rotate()
        assert new["ES256"] != old_kid
        resp = await whoami_with(tokens, idp.mint(alg="ES256"))
        assert resp.status_code == 200, resp.text
        assert old_kid in refused(await whoami_with(tokens, old_token))


def test_settings_name_the_provider_and_an_explicit_jwks(idp):
    settings = Settings(env="development", jwt_secret=SECRET, oidc_issuer=idp.issuer,
                        oidc_client_id=idp.client_id, oidc_jwks_url=idp.jwks_url)
    tokens = TokenService(SECRET, provider=identity_provider(settings))
    assert tokens.verify(idp.mint(alg="ES256")).office == "jaksel"  # the blocking form
    with pytest.raises(Problem, match="aud"):
        tokens.verify(idp.mint(audience="other"))  # the audience defaults to the client id
    assert identity_provider(Settings(env="development")) is None


def test_the_provider_may_not_share_bapas_own_issuer(idp):
    with pytest.raises(ValueError, match="issuer"):
        TokenService(SECRET, "bapas", provider=IdentityProvider("bapas"))


async def test_a_service_built_from_settings_takes_provider_tokens(idp, settings, streams):
    """The registration service on real NATS and PostgreSQL, its kernel built from settings."""
    trusting = settings.model_copy(update={"oidc_issuer": idp.issuer,
                                           "oidc_client_id": idp.client_id})
    async with running(registration, trusting) as svc:
        for token in (idp.mint(alg="RS256"), idp.mint(alg="ES256"),
                      svc.kernel.tokens.issue("pk-0007", "jaksel", ["pk"])):
            resp = await svc.http.get("/v1/ping", headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == 204, resp.text
        resp = await svc.http.get("/v1/ping", headers={
            "Authorization": f"Bearer {idp.mint(audience='another-app')}"})
        assert resp.status_code == 401 and "aud" in resp.json()["detail"]


# ------------------------------------------------------------------------------ refused

async def test_a_token_for_another_audience_is_refused(idp):
    assert "aud" in refused(await whoami_with(service(idp), idp.mint(audience="other-app")))


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_an_expired_provider_token_is_refused(idp, alg):
    token = idp.mint(alg=alg, ttl_s=-120)  # beyond the leeway for clock skew
    assert "expired" in refused(await whoami_with(service(idp), token))


async def test_a_provider_token_without_exp_is_refused(idp):
    assert "exp" in refused(await whoami_with(service(idp), idp.mint(claims={"exp": None})))


async def test_a_token_under_an_unknown_key_id_is_refused(idp):
    detail = refused(await whoami_with(service(idp), idp.mint(kid="no-such-key")))
    assert "no-such-key" in detail


async def test_a_token_without_a_key_id_is_refused(idp):
    token = jwt.encode(claims_of(idp), idp._keys["RS256"].private, algorithm="RS256")
    assert "kid" in refused(await whoami_with(service(idp), token))


async def test_a_token_of_another_issuer_signed_with_the_providers_key_is_refused(idp):
    token = idp.mint(issuer="https://idp.example.org")
    assert idp.issuer in refused(await whoami_with(service(idp), token))


async def test_alg_none_is_refused(idp):
    token = f"{b64({'alg': 'none', 'kid': idp.kid(), 'typ': 'JWT'})}.{b64(claims_of(idp))}."
    assert "none" in refused(await whoami_with(service(idp), token))


async def test_an_hs256_token_signed_with_the_providers_public_key_is_refused(idp):
    """Algorithm confusion: the public key, which anyone can read, used as an HMAC secret."""
    public = idp._keys["RS256"].private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64({'alg': 'HS256', 'kid': idp.kid(), 'typ': 'JWT'})}." \
                    f"{b64(claims_of(idp))}"
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(signature)}"
    assert "not valid" in refused(await whoami_with(service(idp), token))


async def test_an_hs256_token_with_the_providers_issuer_is_refused_even_with_our_secret(idp):
    token = jwt.encode(claims_of(idp), SECRET, algorithm="HS256")
    assert "issuer" in refused(await whoami_with(service(idp), token)).lower()


@pytest.mark.parametrize("alg", ["RS384", "PS256"])
async def test_other_asymmetric_algorithms_are_refused(idp, alg):
    token = jwt.encode(claims_of(idp), idp._keys["RS256"].private, algorithm=alg,
                       headers={"kid": idp.kid()})
    assert alg in refused(await whoami_with(service(idp), token))


async def test_a_token_whose_alg_does_not_match_its_key_is_refused(idp):
    token = jwt.encode(claims_of(idp), idp._keys["ES256"].private, algorithm="ES256",
                       headers={"kid": idp.kid("RS256")})
    assert "RS256 key" in refused(await whoami_with(service(idp), token))


async def test_a_forged_signature_is_refused(idp):
    head, _, signature = idp.mint(alg="ES256").split(".")
    other = idp.mint(alg="ES256", claims={"roles": ["admin"]}).split(".")[1]
    assert "not valid" in refused(await whoami_with(service(idp), f"{head}.{other}.{signature}"))


async def test_provider_tokens_are_refused_where_no_provider_is_trusted(idp):
    assert "HS256" in refused(await whoami_with(TokenService(SECRET), idp.mint()))


async def test_an_unreachable_provider_is_503_and_hs256_tokens_still_work():
    with running_provider(USERS) as idp:
        tokens, token = service(idp), idp.mint()
    resp = await whoami_with(tokens, token)  # the provider has stopped
    detail = refused(resp, 503)
    assert resp.json()["rule"] == "identity_provider_unavailable" and "could not be read" in detail
    dev = tokens.issue("pk-0007", "jaksel", ["pk"])
    assert (await whoami_with(tokens, dev)).json()["sub"] == "pk-0007"


async def test_a_provider_whose_discovery_names_another_issuer_is_503(idp):
    tokens = TokenService(SECRET, provider=IdentityProvider(idp.issuer + "/"))
    token = idp.mint(issuer=idp.issuer + "/")
    assert "names the issuer" in refused(await whoami_with(tokens, token), 503)


# ------------------------------------------------------------------ HS256 as it was

async def test_hs256_development_tokens_are_unaffected_by_a_provider(idp):
    tokens = service(idp)
    resp = await whoami_with(tokens, tokens.issue("kabapas", "jaksel", ["head"]))
    assert resp.json() == {"sub": "kabapas", "office": "jaksel", "roles": ["head"]}
    assert "expired" in refused(await whoami_with(
        tokens, tokens.issue("kabapas", "jaksel", ["head"], ttl_s=-1)))


def test_hs256_tokens_read_no_keys():
    with running_provider(USERS) as idp:
        tokens = service(idp)
        assert tokens.verify(tokens.issue("pk-0007", "jaksel", ["pk"])).sub == "pk-0007"
        assert idp.jwks_reads == 0


# ------------------------------------------------------------- the provider's code flow

def authorize(idp: Provider, redirect_uri: str, **params) -> dict[str, str]:
    resp = httpx.get(idp.issuer + "/authorize", params={
        "client_id": idp.client_id, "redirect_uri": redirect_uri, "response_type": "code",
        "scope": "openid profile", "state": "s1", **params})
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    assert location.startswith(redirect_uri)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_the_code_flow_by_hand_with_basic_and_post_client_authentication(idp):
    redirect = "http://127.0.0.1:9/callback"
    got = authorize(idp, redirect, nonce="n-1", login_hint="kasubsi-01")
    assert got["state"] == "s1"
    token = httpx.post(idp.issuer + "/token", data={
        "grant_type": "authorization_code", "code": got["code"], "redirect_uri": redirect},
        auth=(idp.client_id, idp.client_secret)).json()
    assert token["token_type"] == "Bearer"
    id_token = jwt.decode(token["id_token"], jwt.PyJWKClient(idp.jwks_url).get_signing_key_from_jwt(
        token["id_token"]).key, algorithms=["RS256"], audience=idp.client_id, issuer=idp.issuer)
    assert id_token["nonce"] == "n-1" and id_token["sub"] == "kasubsi-01"
    assert service(idp).verify(token["access_token"]).roles == {"pk", "supervisor"}
    # the code is used once; client_secret_post works too
    again = {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": redirect,
             "client_id": idp.client_id, "client_secret": idp.client_secret}
    assert httpx.post(idp.issuer + "/token", data=again).json()["error"] == "invalid_grant"
    fresh = authorize(idp, redirect)["code"]
    assert "id_token" in httpx.post(idp.issuer + "/token", data={**again, "code": fresh}).json()


def test_the_token_endpoint_refuses_a_wrong_secret_and_another_redirect_uri(idp):
    redirect = "http://127.0.0.1:9/callback"
    code = authorize(idp, redirect)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
            "client_id": idp.client_id, "client_secret": "wrong"}
    resp = httpx.post(idp.issuer + "/token", data=form)
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    resp = httpx.post(idp.issuer + "/token", data={
        **form, "client_secret": idp.client_secret, "redirect_uri": redirect + "/else"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"


def test_a_registered_client_gets_only_its_redirect_uris():
    with running_provider(USERS, clients={"console": Client("s" * 32, ("http://a/cb",))}) as idp:
        assert authorize(idp, "http://a/cb")["code"]
        resp = httpx.get(idp.issuer + "/authorize", params={
            "client_id": "console", "redirect_uri": "http://evil/cb", "response_type": "code",
            "scope": "openid"})
        assert resp.status_code == 400


async def test_authlib_signs_a_user_in_and_the_access_token_opens_a_service(idp):
    """What the console does: Authlib's Starlette client, discovery, PKCE, nonce, id_token."""
    pytest.importorskip("authlib.deprecate")  # it turns its own warnings on when imported
    with warnings.catch_warnings():
        # Authlib's notice that httpx gives way to httpx2 (not installed): about the tool
        warnings.simplefilter("ignore")
        starlette_client = pytest.importorskip("authlib.integrations.starlette_client")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    oauth = starlette_client.OAuth()
    oauth.register("idp", server_metadata_url=idp.discovery_url, client_id=idp.client_id,
                   client_secret=idp.client_secret,
                   client_kwargs={"scope": "openid profile", "code_challenge_method": "S256"})

    async def login(request: Request):
        return await oauth.idp.authorize_redirect(request, "http://console.test/callback",
                                                  login_hint="kasubsi-01")

    async def callback(request: Request):
        token = await oauth.idp.authorize_access_token(request)
        return JSONResponse({"userinfo": dict(token["userinfo"]),
                             "access_token": token["access_token"]})

    app = Starlette(routes=[Route("/login", login), Route("/callback", callback)],
                    middleware=[Middleware(SessionMiddleware, secret_key=secrets.token_hex(32))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://console.test") as console, \
            httpx.AsyncClient() as browser:
        to_idp = await console.get("/login")
        assert to_idp.status_code == 302
        query = parse_qs(urlsplit(to_idp.headers["location"]).query)
        assert query["code_challenge_method"] == ["S256"] and query["nonce"]
        back = await browser.get(to_idp.headers["location"])
        assert back.status_code == 302
        done = await console.get(back.headers["location"])
    assert done.status_code == 200, done.text
    signed_in = done.json()
    assert signed_in["userinfo"]["sub"] == "kasubsi-01"
    resp = await whoami_with(service(idp), signed_in["access_token"])
    assert resp.json() == {"sub": "kasubsi-01", "office": "jaksel", "roles": ["pk", "supervisor"]}
