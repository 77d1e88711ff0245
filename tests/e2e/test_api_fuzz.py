"""Schemathesis over each service's OpenAPI schema: generated requests, valid and not, never
get a 5xx. The services run as processes on the test servers, called over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.local.servers import free_port
from shared.web.auth import TokenService
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registration_service(servers):
    namespace = "f" + uuid.uuid4().hex[:12]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAPAS_")}
    env.update(BAPAS_ENV="development", BAPAS_NATS_URL=servers.nats_url,
               BAPAS_NATS_MONITOR_URL=servers.monitor_url, BAPAS_DATABASE_URL=servers.dsn,
               BAPAS_NAMESPACE=namespace, BAPAS_JWT_SECRET=TEST_SECRET,
               BAPAS_REGISTRATION_PORT=str(port), BAPAS_LOG_LEVEL="warning")
    proc = subprocess.Popen([sys.executable, "-m", "services.registration"], env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(base):
            assert proc.poll() is None, "the registration service exited"
            assert time.monotonic() < deadline, "the registration service did not get ready"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


TOKENS = TokenService(TEST_SECRET)
valid_niks = st.builds(lambda day, month, year, serial, female: (
    f"317101{day + (40 if female else 0):02d}{month:02d}{year:02d}{serial:04d}"),
    st.integers(1, 28), st.integers(1, 12), st.integers(40, 99), st.integers(1, 9999),
    st.booleans())


def fuzz(base_url: str, token: str, known_ids: list[str], max_examples: int = 30) -> dict:
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
            if aim and isinstance(case.body, dict) and isinstance(case.body.get("person"), dict):
                case.body["person"]["nik"] = nik
            response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"})
            key = f"{case.method} {operation.path} {response.status_code}"
            statuses[key] = statuses.get(key, 0) + 1
            assert response.status_code < 500, (case.method, case.formatted_path,
                                                response.text[:500])
            if response.status_code >= 400:
                assert response.headers["content-type"] == ["application/problem+json"]

        no_server_error()
    return statuses


def seed(base_url: str, token: str) -> list[str]:
    """A few real clients for the fuzzer to aim at."""
    ids = []
    for i, program in enumerate(("PB", "DIVERSI", "CB")):
        payload = {
            "program": program,
            "decision": {"number": f"PAS-{i}", "issued_by": "Dirjen PAS",
                         "issued_on": "2026-01-02"},
            "origin_institution": "Lapas Cipinang",
            "period": {"start_on": "2026-01-05", "end_on": "2027-01-04"},
            "person": {"full_name": f"Klien {i}", "nik": f"31710115088{i}0001",
                       "address": "Jl. Kemang 5"},
            "officer_id": "pk-0007"}
        req = urllib.request.Request(f"{base_url}/v1/clients", method="POST",
                                     data=json.dumps(payload).encode(),
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            ids.append(json.loads(r.read())["client_id"])
    return ids


def test_registration_never_answers_5xx(registration_service):
    head = TOKENS.issue("kabapas-01", "jaksel", ["pk", "supervisor", "head"])
    statuses = fuzz(registration_service, head, seed(registration_service, head))
    # the fuzzing reached past validation: real registrations and changes happened
    assert statuses.get("POST /v1/clients 201", 0) > 0, statuses
    assert statuses.get("GET /v1/clients/{client_id} 200", 0) > 0, statuses
    assert any(k.startswith("POST /v1/clients/{client_id}/") and k.endswith(" 200")
               for k in statuses), statuses
