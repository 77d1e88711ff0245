"""Schemathesis over each service's OpenAPI schema: generated requests, valid and not, never
get a 5xx. The services run as processes on the test servers, called over real HTTP."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.web.auth import TokenService
from tests.conftest import TEST_SECRET
from tests.support.processes import services
from tests.support.receiver import receiver

pytestmark = pytest.mark.slow


FUZZED = ("registration", "guidance", "supervision", "notification", "audit")


@pytest.fixture(scope="module")
def system(servers):
    """The services, each its own process, sharing one namespace on the test servers."""
    with services(servers, FUZZED) as running:
        yield running.urls


TOKENS = TokenService(TEST_SECRET)
valid_niks = st.builds(lambda day, month, year, serial, female: (
    f"317101{day + (40 if female else 0):02d}{month:02d}{year:02d}{serial:04d}"),
    st.integers(1, 28), st.integers(1, 12), st.integers(40, 99), st.integers(1, 9999),
    st.booleans())


def fuzz(base_url: str, token: str, known_ids: list[str], max_examples: int = 30,
         webhook_url: str | None = None) -> dict:
    """Every operation of the service's schema, `max_examples` generated requests each
    (schemathesis strategies driven by Hypothesis directly: its pytest loader does not work
    with pytest 9 yet). Half the requests aim at real cases (a known client id, a valid NIK)
    so that the fuzzing reaches past input validation. Returns the statuses seen."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    statuses: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(), aim=st.booleans(),
               known=st.sampled_from(known_ids), nik=valid_niks)
        @settings(max_examples=max_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def no_server_error(case, aim: bool, known: str, nik: str) -> None:
            if aim and "client_id" in (case.path_parameters or {}):
                case.path_parameters["client_id"] = known
            if aim and operation.method.upper() == "POST" and operation.path == "/v1/clients":
                case.body = registration_body(nik, f"Klien {nik[-4:]}", "PB")
            if operation.path == "/v1/subscriptions" and operation.method.upper() == "POST":
                # never let the service knock on random hosts: a local endpoint or nothing
                if aim:
                    case.body = {"agency": "Kejari", "agency_kind": "KEJAKSAAN",
                                 "event_types": ["ClientRegistered"],
                                 "data_level": "IDENTIFIERS",
                                 "delivery": {"kind": "WEBHOOK", "url": webhook_url}}
                elif isinstance(case.body, dict) and isinstance(case.body.get("delivery"), dict):
                    case.body["delivery"]["url"] = "https://invalid.test/x"
            response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"})
            key = f"{case.method} {operation.path} {response.status_code}"
            statuses[key] = statuses.get(key, 0) + 1
            assert response.status_code < 500, (case.method, case.formatted_path,
                                                response.text[:500])
            if response.status_code >= 400:
                assert response.headers["content-type"] == ["application/problem+json"]

        no_server_error()
    return statuses


def registration_body(nik: str, name: str, program: str) -> dict:
    return {"program": program,
            "decision": {"number": f"PAS-{nik[-4:]}", "issued_by": "Dirjen PAS",
                         "issued_on": "2026-01-02"},
            "origin_institution": "Lapas Cipinang",
            "period": {"start_on": "2026-01-05", "end_on": "2027-01-04"},
            "person": {"full_name": name, "nik": nik, "address": "Jl. Kemang 5"},
            "officer_id": "pk-0007"}


def seed(base_url: str, token: str, batch: int) -> list[str]:
    """A few real clients for one fuzzing run to aim at (each run its own: the fuzzer
    transfers and closes what it aims at)."""
    ids = []
    for i, program in enumerate(("PB", "DIVERSI", "CB")):
        req = urllib.request.Request(
            f"{base_url}/v1/clients", method="POST",
            data=json.dumps(registration_body(f"31710115088{i}{batch:04d}", f"Klien {i}",
                                              program)).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            ids.append(json.loads(r.read())["client_id"])
    return ids


HEAD = TOKENS.issue("kabapas-01", "jaksel", ["pk", "supervisor", "head"])


def test_registration_never_answers_5xx(system):
    clients = seed(system["registration"], HEAD, 1)
    statuses = fuzz(system["registration"], HEAD, clients)
    # the fuzzing reached past validation: real registrations and changes happened
    assert statuses.get("POST /v1/clients 201", 0) > 0, statuses
    assert statuses.get("GET /v1/clients/{client_id} 200", 0) > 0, statuses
    assert any(k.startswith("POST /v1/clients/{client_id}/") and k.endswith(" 200")
               for k in statuses), statuses


def test_guidance_never_answers_5xx(system):
    clients = seed(system["registration"], HEAD, 2)
    base = system["guidance"]
    for cid in clients:  # the cases open from the registration events
        deadline = time.monotonic() + 30
        while _get_status(f"{base}/v1/cases/{cid}", HEAD) != 200:
            assert time.monotonic() < deadline, "no guidance case opened"
            time.sleep(0.2)
    statuses = fuzz(base, HEAD, clients)
    assert statuses.get("GET /v1/cases/{client_id} 200", 0) > 0, statuses
    assert any(k.startswith("POST /v1/cases/{client_id}/") and k.endswith(" 200")
               for k in statuses), statuses


def test_supervision_never_answers_5xx(system):
    clients = seed(system["registration"], HEAD, 3)
    base = system["supervision"]
    for cid in clients:
        deadline = time.monotonic() + 30
        while _get_status(f"{base}/v1/supervision/{cid}", HEAD) != 200:
            assert time.monotonic() < deadline, "no supervision case started"
            time.sleep(0.2)
    statuses = fuzz(base, HEAD, clients)
    assert statuses.get("GET /v1/supervision/{client_id} 200", 0) > 0, statuses
    assert any(k.startswith(("POST /v1/supervision/", "PUT /v1/supervision/"))
               and k.endswith(" 200") for k in statuses), statuses


def _get_status(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_notification_never_answers_5xx(system):
    with receiver() as hooks:
        statuses = fuzz(system["notification"], HEAD, seed(system["registration"], HEAD, 4),
                        webhook_url=hooks.url())
    assert statuses.get("POST /v1/subscriptions 201", 0) > 0, statuses
    assert statuses.get("GET /v1/deliveries 200", 0) > 0, statuses


def test_audit_never_answers_5xx(system):
    clients = seed(system["registration"], HEAD, 5)
    auditor = TOKENS.issue("auditor-01", "pusat", ["auditor"])
    for cid in clients:
        deadline = time.monotonic() + 30
        while _get_status(f"{system['audit']}/v1/audit/clients/{cid}/history", auditor) != 200:
            assert time.monotonic() < deadline, "the audit index did not learn the client"
            time.sleep(0.2)
    statuses = fuzz(system["audit"], auditor, clients)
    assert statuses.get("GET /v1/audit/clients/{client_id}/history 200", 0) > 0, statuses
    assert statuses.get("GET /v1/audit/clients/{client_id}/state 200", 0) > 0, statuses
