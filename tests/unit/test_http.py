"""The HTTP kernel every service serves: identity, office scope, problem details, operations.

A small app built with `create_app` and a test router stands in for a service; it is driven
in-process (no server, no NATS, no PostgreSQL).
"""

from __future__ import annotations

import re
import time
import warnings
from typing import Annotated

import jwt
import pytest
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.exceptions import StarletteDeprecationWarning

from shared.errors import DomainConflict, DomainError
from shared.metrics import KernelMetrics
from shared.web.problems import Problem
from shared.web.app import create_app
from shared.web.auth import (
    CurrentPrincipal, OfficeScope, Principal, TokenService, not_found, require_roles,
)

with warnings.catch_warnings():
    # Starlette's test client runs on httpx, which Starlette now deprecates in favour of httpx2
    # (not installed here); the notice is about the test tool, not about our code
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

SECRET = "http-test-secret-0123456789-abcdefghij"
PROBLEM = "application/problem+json"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
tokens = TokenService(SECRET)
CASES = {("jaksel", "c1"): "Budi", ("jaktim", "c9"): "Siti"}


class Person(BaseModel):
    nik: str = Field(pattern=r"^[0-9]{16}$", description="national id number")
    name: str = Field(min_length=1)


class RegisterClient(BaseModel):
    person: Person
    court_case: str


router = APIRouter()


@router.get("/offices/{office}/clients/{client_id}")
async def read_client(office: str, client_id: str, scope: OfficeScope) -> dict:
    scope.require(office)
    if (office, client_id) not in CASES:
        raise not_found()
    return {"office": office, "client_id": client_id, "name": CASES[(office, client_id)]}


@router.post("/offices/{office}/clients", status_code=201)
async def register_client(office: str, body: RegisterClient, scope: OfficeScope,
                          principal: CurrentPrincipal) -> dict:
    scope.require(office)
    return {"registered": body.person.nik, "by": principal.sub}


@router.post("/offices/{office}/approvals")
async def approve(office: str,
                  head: Annotated[Principal, require_roles("head", "supervisor")]) -> dict:
    return {"approved_by": head.sub}


@router.get("/whoami")
async def whoami(principal: CurrentPrincipal) -> dict:
    return {"sub": principal.sub, "office": principal.office, "roles": sorted(principal.roles)}


@router.get("/search")
async def search(limit: Annotated[int, Query(ge=1, le=100)] = 10) -> dict:
    return {"limit": limit}


@router.post("/debits")
async def debit() -> None:
    raise DomainError("the balance does not cover this debit", field="amount", rule="balance",
                      extra={"balance": 3})


@router.post("/stages")
async def advance() -> None:
    raise DomainConflict("the stage was advanced by someone else", rule="stage_moved")


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("connection string postgresql://secret@db leaked")


class Readiness:
    def __init__(self) -> None:
        self.ok = True

    async def __call__(self) -> tuple[bool, dict]:
        if self.ok:
            return True, {"checks": {"nats": "ok", "postgres": "ok"}}
        return False, {"checks": {"nats": "disconnected", "postgres": "ok"}}


def make_app(readiness: Readiness | None = None):
    return create_app(service="testsvc", title="test", description="test service",
                      version="0.0.1", tokens=tokens, metrics=KernelMetrics(),
                      readiness=readiness or Readiness(), routers=[router])


def client(**kw) -> TestClient:
    return TestClient(make_app(), **kw)


def bearer(office: str = "jaksel", *roles: str, sub: str = "pk-0007") -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue(sub, office, list(roles or ('pk',)))}"}


def problem(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    doc = resp.json()
    assert doc["status"] == status and doc["title"]
    return doc


# ------------------------------------------------------------------------------ operations

def test_healthz_answers_alive():
    resp = client().get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "alive", "service": "testsvc"}


def test_readyz_follows_the_readiness_check():
    readiness = Readiness()
    c = TestClient(make_app(readiness))
    ready = c.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["checks"]["nats"] == "ok"
    readiness.ok = False
    down = c.get("/readyz")
    assert down.status_code == 503
    assert down.json()["status"] == "not ready"
    assert down.json()["checks"]["nats"] == "disconnected"


def test_ping_answers_204_with_nothing_once_the_token_is_checked():
    c = client()
    resp = c.get("/v1/ping", headers=bearer("jaksel", "agency"))
    assert resp.status_code == 204 and resp.content == b""
    problem(c.get("/v1/ping"), 401)
    problem(c.get("/v1/ping", headers={"Authorization": "Bearer not-a-token"}), 401)


def test_metrics_are_prometheus_text_with_request_latency():
    c = client()
    c.get("/whoami", headers=bearer())
    resp = c.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert "# TYPE bapas_http_request_seconds histogram" in text
    assert "# TYPE bapas_events_appended_total counter" in text
    assert re.search(r'bapas_http_request_seconds_count\{method="GET",route="/whoami",'
                     r'status="200"\} 1\.0', text)


def test_each_app_has_its_own_metrics():
    a, b = client(), client()
    a.get("/healthz")
    assert 'route="/healthz"' in a.get("/metrics").text
    assert 'route="/healthz"' not in b.get("/metrics").text


def test_openapi_describes_the_bearer_scheme():
    doc = client().get("/openapi.json").json()
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    assert "/offices/{office}/clients" in doc["paths"]


# ------------------------------------------------------------------------------ identity

def test_a_valid_token_gives_the_principal():
    resp = client().get("/whoami", headers=bearer("jaksel", "pk", "supervisor", sub="pk-0042"))
    assert resp.status_code == 200
    assert resp.json() == {"sub": "pk-0042", "office": "jaksel", "roles": ["pk", "supervisor"]}


def test_no_token_is_401_asking_for_a_bearer_token():
    resp = client().get("/whoami")
    doc = problem(resp, 401)
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert doc["rule"] == "authentication" and "Bearer" in doc["detail"]


def signed(key: str = SECRET, algorithm: str = "HS256", **claims) -> str:
    """A token made by hand: by default every claim right, then each test breaks one."""
    base = {"sub": "x", "office": "jaksel", "roles": ["pk"], "iss": "bapas", "exp": 4102444800}
    body = {k: v for k, v in {**base, **claims}.items() if v is not None}
    return jwt.encode(body, key, algorithm=algorithm)


def test_a_hand_made_token_with_every_claim_right_is_accepted():
    resp = client().get("/whoami", headers={"Authorization": f"Bearer {signed()}"})
    assert resp.status_code == 200 and resp.json()["sub"] == "x"


@pytest.mark.parametrize("authorization", [
    "Bearer not-a-jwt",
    "Basic dXNlcjpwYXNz",
    f"Bearer {signed(key='another-secret-of-enough-length-000')}",
    f"Bearer {signed(iss='someone-else')}",
    f"Bearer {signed(exp=None)}",
    f"Bearer {signed(key='k' * 64, algorithm='HS512')}",
    f"Bearer {signed(algorithm='none', key='')}",
    f"Bearer {signed(office=None)}",
    f"Bearer {signed(office='')}",
    f"Bearer {signed(roles='pk')}",
], ids=["garbage", "basic", "other-key", "other-issuer", "no-exp", "hs512", "alg-none",
        "no-office", "empty-office", "roles-not-a-list"])
def test_a_bad_token_is_401(authorization):
    resp = client().get("/whoami", headers={"Authorization": authorization})
    problem(resp, 401)
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_an_expired_token_is_401_saying_so():
    expired = tokens.issue("pk-0007", "jaksel", ["pk"], ttl_s=-60)
    resp = client().get("/whoami", headers={"Authorization": f"Bearer {expired}"})
    doc = problem(resp, 401)
    assert "expired" in doc["detail"]


def test_a_token_verified_before_still_expires():
    service = TokenService(SECRET)
    # whole seconds: ttl 2 leaves at least one second for the two verifications
    token = service.issue("pk-0007", "jaksel", ["pk"], ttl_s=2)
    assert service.verify(token).sub == "pk-0007"
    assert service.verify(token).sub == "pk-0007"  # remembered
    time.sleep(2.1)  # past its (whole-second) expiry
    with pytest.raises(Problem) as refused:
        service.verify(token)
    assert refused.value.status == 401 and "expired" in refused.value.detail


def test_a_remembered_token_vouches_for_no_other():
    service = TokenService(SECRET)
    token = service.issue("pk-0007", "jaksel", ["pk"])
    service.verify(token)
    head, body, signature = token.split(".")
    # another first character: the last ones of base64url carry padding bits, and "AA"
    # at the end left the signature's bytes as they were about once in a thousand tokens
    forged = ("B" if signature[0] == "A" else "A") + signature[1:]
    with pytest.raises(Problem):
        service.verify(f"{head}.{body}.{forged}")


def test_unknown_roles_in_a_token_grant_nothing():
    token = signed(roles=["pk", "root"])
    resp = client().get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert resp.json()["roles"] == ["pk"]


def test_tokens_are_not_issued_with_unknown_roles():
    with pytest.raises(ValueError, match="root"):
        tokens.issue("x", "jaksel", ["root"])


def test_a_missing_role_is_403_naming_the_roles_needed():
    resp = client().post("/offices/jaksel/approvals", headers=bearer("jaksel", "pk"))
    doc = problem(resp, 403)
    assert doc["rule"] == "role_required"
    assert "head" in doc["detail"] and "supervisor" in doc["detail"]


def test_a_holder_of_the_role_passes():
    resp = client().post("/offices/jaksel/approvals",
                         headers=bearer("jaksel", "head", sub="kabapas"))
    assert resp.status_code == 200 and resp.json() == {"approved_by": "kabapas"}


def test_a_role_check_without_a_token_is_401_not_403():
    problem(client().post("/offices/jaksel/approvals"), 401)


# ------------------------------------------------------------------------------ office scope

def test_an_officer_reads_a_case_of_their_office():
    resp = client().get("/offices/jaksel/clients/c1", headers=bearer("jaksel"))
    assert resp.status_code == 200 and resp.json()["name"] == "Budi"


def test_another_office_looks_exactly_like_no_such_case():
    c = client()
    theirs = problem(c.get("/offices/jaktim/clients/c9", headers=bearer("jaksel")), 404)
    nothing = problem(c.get("/offices/jaksel/clients/c404", headers=bearer("jaksel")), 404)
    theirs.pop("instance"), nothing.pop("instance")
    assert theirs == nothing
    assert "Siti" not in str(theirs) and "jaktim" not in str(theirs)


def test_an_auditor_reads_every_office():
    resp = client().get("/offices/jaktim/clients/c9", headers=bearer("jaksel", "auditor"))
    assert resp.status_code == 200 and resp.json()["name"] == "Siti"


def test_an_agency_reads_no_case_over_http():
    doc = problem(client().get("/offices/jaksel/clients/c1", headers=bearer("jaksel", "agency")),
                  403)
    assert doc["rule"] == "role_required"


def test_a_write_to_another_office_is_404_before_anything_else():
    body = {"person": {"nik": "3174012345678901", "name": "Budi"}, "court_case": "12/Pid/2026"}
    resp = client().post("/offices/jaktim/clients", json=body, headers=bearer("jaksel"))
    problem(resp, 404)


# ------------------------------------------------------------------------------ problems

def test_a_valid_body_passes():
    body = {"person": {"nik": "3174012345678901", "name": "Budi"}, "court_case": "12/Pid/2026"}
    resp = client().post("/offices/jaksel/clients", json=body, headers=bearer("jaksel"))
    assert resp.status_code == 201 and resp.json() == {"registered": "3174012345678901",
                                                       "by": "pk-0007"}


def test_an_invalid_body_is_422_naming_each_field_and_rule():
    body = {"person": {"nik": "31740", "name": "Budi"}}
    resp = client().post("/offices/jaksel/clients", json=body, headers=bearer("jaksel"))
    doc = problem(resp, 422)
    assert doc["rule"] == "invalid_input" and doc["field"] == "person.nik"
    found = {e["field"]: e["rule"] for e in doc["errors"]}
    assert found == {"person.nik": "string_pattern_mismatch", "court_case": "missing"}
    assert all(e["message"] for e in doc["errors"])
    assert "person.nik" in doc["detail"]


def test_a_body_that_is_not_json_is_422_not_500():
    resp = client().post("/offices/jaksel/clients", content=b"{not json",
                         headers={**bearer("jaksel"), "Content-Type": "application/json"})
    doc = problem(resp, 422)
    assert doc["errors"][0]["rule"] == "json_invalid"


def test_a_bad_query_parameter_is_named_with_where_it_came_from():
    doc = problem(client().get("/search?limit=1000"), 422)
    assert doc["field"] == "query.limit"
    assert doc["errors"][0]["rule"] == "less_than_equal"


def test_a_domain_error_is_422_with_rule_and_field():
    doc = problem(client().post("/debits"), 422)
    assert doc["rule"] == "balance" and doc["field"] == "amount"
    assert doc["detail"] == "the balance does not cover this debit"
    assert doc["type"].endswith("/balance")
    assert doc["balance"] == 3 and doc["instance"] == "/debits"


def test_a_domain_conflict_is_409():
    doc = problem(client().post("/stages"), 409)
    assert doc["rule"] == "stage_moved" and doc["title"] == "Conflict"


def test_an_unknown_route_is_a_404_problem():
    problem(client().get("/no/such/route"), 404)


def test_a_wrong_method_is_a_405_problem():
    problem(client().delete("/healthz"), 405)


def test_an_unexpected_error_is_a_500_problem_without_internals():
    resp = client(raise_server_exceptions=False).get("/boom")
    doc = problem(resp, 500)
    text = resp.text
    assert "Traceback" not in text and "RuntimeError" not in text
    assert "postgresql://" not in text and "secret" not in text
    assert doc["detail"] == "the request could not be completed; it has been logged"


# ------------------------------------------------------------------------------ correlation

def test_a_correlation_id_is_echoed_back():
    resp = client().get("/healthz", headers={"X-Correlation-Id": "corr-from-caller-1"})
    assert resp.headers["X-Correlation-Id"] == "corr-from-caller-1"


def test_a_correlation_id_is_made_when_none_is_sent():
    c = client()
    first = c.get("/healthz").headers["X-Correlation-Id"]
    second = c.get("/healthz").headers["X-Correlation-Id"]
    assert UUID.match(first) and UUID.match(second) and first != second


def test_refusals_carry_the_correlation_id_too():
    resp = client().get("/whoami", headers={"X-Correlation-Id": "corr-refused"})
    assert resp.status_code == 401 and resp.headers["X-Correlation-Id"] == "corr-refused"
    resp = client().post("/debits", headers={"X-Correlation-Id": "corr-domain"})
    assert resp.status_code == 422 and resp.headers["X-Correlation-Id"] == "corr-domain"


def test_an_unexpected_error_carries_the_correlation_id():
    resp = client(raise_server_exceptions=False).get(
        "/boom", headers={"X-Correlation-Id": "corr-boom"})
    assert resp.status_code == 500
    assert resp.headers.get("X-Correlation-Id") == "corr-boom"


def test_control_characters_are_refused_naming_the_field():
    from shared.web.inputs import Input

    class Note(Input):
        text: str
        tags: list[str] = []

    from pydantic import ValidationError
    for bad in ({"text": "a\x00b"}, {"text": "ok", "tags": ["x", "\x1b[31m"]}):
        with pytest.raises(ValidationError) as err:
            Note(**bad)
        (error,) = err.value.errors()
        assert error["type"] == "control_character"
        assert error["loc"][0] in ("text", "tags")
    assert Note(text="baris satu\nbaris dua\ttab").text == "baris satu\nbaris dua\ttab"
