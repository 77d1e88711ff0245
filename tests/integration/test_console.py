"""The console's sign-in, sessions and CSRF, in-process over ASGI, against a real OpenID
Connect provider (tests/support/oidc_provider.py) for the production sign-in.

The pages themselves, against the real services, are walked in a real browser in
tests/e2e/test_console_browser.py.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import jwt
import pytest

from services.console.app import create_app
from shared.settings import Settings
from tests.e2e.test_platform import free_ports
from tests.support.oidc_provider import running_provider

SECRET = "s" * 40
CONSOLE_SECRET = "c" * 40


def production(idp=None, **extra) -> Settings:
    """Production settings; the services' URLs lead nowhere (nothing listens there)."""
    ports = free_ports(5)
    urls = {f"{name}_url": f"http://127.0.0.1:{port}" for name, port in
            zip(("registration", "guidance", "supervision", "notification", "audit"), ports,
                strict=True)}
    oidc = {} if idp is None else {
        "oidc_issuer": idp.issuer, "oidc_client_id": idp.client_id,
        "oidc_client_secret": idp.client_secret}
    return Settings(**{"env": "production", "jwt_secret": SECRET,
                       "database_url": "postgresql://x@h/x", "console_secret": CONSOLE_SECRET,
                       "console_public_url": "https://console.test", **urls, **oidc, **extra})


@pytest.fixture
def idp() -> Iterator[object]:
    with running_provider() as provider:
        yield provider


async def client_for(settings: Settings) -> httpx.AsyncClient:
    app = create_app(settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="https://console.test")


@pytest.fixture
async def console(idp) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(production(idp)) as client:
        yield client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def session_of(client: httpx.AsyncClient) -> dict:
    """The session cookie's content (signed, not encrypted: itsdangerous' payload)."""
    raw = client.cookies["bapas_console"]
    payload = raw.split(".")[0]
    return json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))


async def oidc_sign_in(console: httpx.AsyncClient, login: str | None = None) -> httpx.Response:
    """The authorization-code flow as a browser follows it: the console's form, the
    provider's /authorize, back to the console's callback."""
    form = (await console.get("/masuk")).text
    out = await console.post("/masuk/oidc", data={"csrf_token": csrf_of(form)})
    assert out.status_code == 302, out.text
    authorize = out.headers["location"]
    if login:
        authorize += "&login_hint=" + login
    async with httpx.AsyncClient() as browser:
        at_idp = await browser.get(authorize)
    assert at_idp.status_code == 302, at_idp.text
    back = urlsplit(at_idp.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "https://console.test/masuk/callback"
    return await console.get(f"{back.path}?{back.query}")


async def test_signed_out_every_page_sends_to_the_sign_in_page(console):
    for path in ("/", "/registrasi", "/kepatuhan", "/laporan", "/laporan.csv",
                 "/klien/01a2-abc"):
        answer = await console.get(path)
        assert (answer.status_code, answer.headers["location"]) == (303, "/masuk"), path
    page = await console.get("/masuk")
    assert page.status_code == 200 and 'lang="id"' in page.text and "Masuk" in page.text
    assert "pilih petugas demo" not in page.text  # no development roster in production
    assert not re.findall(r'(?:src|href)="https?://', page.text)  # nothing from elsewhere
    headers = page.headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"


async def test_an_officer_signs_in_with_the_office_provider_and_out_again(console, idp):
    answer = await oidc_sign_in(console, "pk-0007")
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    cookie = answer.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "secure" in cookie.lower()  # outside development
    officer = session_of(console)["officer"]
    assert (officer["sub"], officer["office"], officer["roles"]) == ("pk-0007", "jaksel", ["pk"])
    # the services get the provider's own access token (they verify it through the JWKS)
    claims = jwt.decode(officer["token"], options={"verify_signature": False})
    assert claims["iss"] == idp.issuer and claims["aud"] == idp.client_id
    assert jwt.get_unverified_header(officer["token"])["alg"] == "RS256"

    home = await console.get("/")  # signed in; the services are down here, and it says so
    assert home.status_code == 503 and "tidak menjawab" in home.text
    assert "pk-0007" in home.text

    out = await console.post("/keluar", data={"csrf_token": csrf_of(home.text)})
    assert (out.status_code, out.headers["location"]) == (303, "/masuk")
    again = await console.get("/")
    assert (again.status_code, again.headers["location"]) == (303, "/masuk")


async def test_a_provider_account_without_office_or_roles_is_not_signed_in():
    users = {"stranger": {"name": "Tanpa Kantor", "roles": ["pk"]},
             "guest": {"name": "Tamu", "office": "jaksel", "roles": ["visitor"]}}
    with running_provider(users=users) as provider:
        async with await client_for(production(provider)) as console:
            for login, claim in (("stranger", "office"), ("guest", "roles")):
                answer = await oidc_sign_in(console, login)
                assert answer.status_code == 401 and f"`{claim}`" in answer.text, answer.text
                assert "officer" not in session_of(console)


async def test_a_callback_without_the_flow_state_is_refused(console):
    answer = await console.get("/masuk/callback?code=forged&state=forged")
    assert answer.status_code == 401 and "Masuk gagal" in answer.text


async def test_every_form_needs_the_session_csrf_token(console):
    await oidc_sign_in(console)
    page = await console.get("/masuk")
    token = csrf_of(page.text)
    for path, data in (("/keluar", {}), ("/registrasi", {"person.full_name": "X"}),
                       ("/registrasi/cari", {"q": "Siti"}),
                       ("/klien/abc/litmas", {"summary": "x"})):
        for sent in ({}, {"csrf_token": "forged"}):
            answer = await console.post(path, data={**data, **sent})
            assert answer.status_code == 403, (path, sent, answer.status_code)
            assert "token keamanan" in answer.text
    nik = await console.post("/registrasi/nik", json={"nik": "3171044508950003"})
    assert nik.status_code == 403
    # the real token still works (signing out is the one form that needs no service)
    assert (await console.post("/keluar", data={"csrf_token": token})).status_code == 303


async def test_the_development_roster_is_only_there_in_development():
    dev = Settings(env="development", jwt_secret=SECRET)
    async with await client_for(dev) as console:
        page = await console.get("/masuk")
        assert "kabapas · kantor jaksel" in page.text
        answer = await console.post("/masuk", data={"csrf_token": csrf_of(page.text),
                                                    "officer": "kabapas@jaksel"})
        assert (answer.status_code, answer.headers["location"]) == (303, "/")
        officer = session_of(console)["officer"]
        assert (officer["sub"], officer["roles"]) == ("kabapas", ["head"])
        claims = jwt.decode(officer["token"], SECRET, algorithms=["HS256"], issuer="bapas")
        assert claims["office"] == "jaksel"
        refused = await console.post("/masuk", data={"csrf_token": session_of(console)["csrf"],
                                                     "officer": "root@jaksel"})
        assert refused.status_code == 422
    async with await client_for(production()) as console:
        page = await console.get("/masuk")
        assert "<form" not in page.text and "BAPAS_OIDC_ISSUER" in page.text
        answer = await console.post("/masuk", data={"csrf_token": session_of(console)["csrf"],
                                                    "officer": "kabapas@jaksel"})
        assert answer.status_code == 403 and "officer" not in session_of(console)


def test_outside_development_there_is_no_default_session_secret():
    with pytest.raises(ValueError, match="BAPAS_CONSOLE_SECRET"):
        create_app(Settings(env="production", jwt_secret=SECRET, database_url="postgresql://x"))
    with pytest.raises(ValueError, match="at least 32"):
        create_app(production(console_secret="short"))


async def test_ids_that_are_not_ids_never_reach_a_service_path():
    dev = Settings(env="development", jwt_secret=SECRET,
                   **{f"{n}_url": "http://127.0.0.1:9" for n in
                      ("registration", "guidance", "supervision", "notification", "audit")})
    async with await client_for(dev) as console:
        page = await console.get("/masuk")
        await console.post("/masuk", data={"csrf_token": csrf_of(page.text),
                                           "officer": "pk-0001@jaksel"})
        for path in ("/klien/%2E%2E", "/klien/A%20B", "/klien/x%3Fq=1"):
            answer = await console.get(path)
            assert answer.status_code == 404 and "Tidak ditemukan" in answer.text, path
        token = session_of(console)["csrf"]
        answer = await console.post("/klien/..%2Fcases/litmas", data={"csrf_token": token})
        assert answer.status_code == 404
