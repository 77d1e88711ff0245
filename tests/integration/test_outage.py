"""A service while its NATS server is down: every request that needs NATS answers 503 with
Retry-After at once (no hang, no 500, no 401), /readyz names the dependency, and once the
server is back on the same data a retry with the same Idempotency-Key stores exactly once.
Reads that need only PostgreSQL go on, their access records kept in PostgreSQL until NATS
takes them. With PostgreSQL down, what needs it answers 503, never 401; what needs only
NATS (a registration) goes on.

The test owns its own nats-server (the session's is shared by every other test)."""

from __future__ import annotations

import uuid

import pytest

from services.registration.app import definition as registration
from shared.local.servers import NatsServer
from shared.store import EventStore
from shared.streams import CaseRef
from tests.integration.test_registration_api import body, nik
from tests.support.service import running
from tests.support.wait import eventually

NO_HANG = 10.0  # seconds: a request that takes longer than this has hung


@pytest.fixture
def own_nats(tmp_path):
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


async def test_with_nats_down_requests_answer_503_and_a_retry_stores_once(settings, own_nats):
    own = settings.model_copy(update={"nats_url": own_nats.url,
                                      "nats_monitor_url": own_nats.monitor_url})
    async with running(registration, own) as reg:
        officer = reg.token("jaksel", "supervisor")
        first = await reg.http.post("/v1/clients", json=body(nik(1)), headers=officer)
        assert first.status_code == 201, first.text
        client_id = first.json()["client_id"]

        own_nats.kill()
        await eventually(lambda: not reg.kernel.nc.is_connected)
        key = {"Idempotency-Key": str(uuid.uuid4())}
        attempts = [
            await reg.http.post("/v1/clients", json=body(nik(2)), headers={**officer, **key},
                                timeout=NO_HANG),
            await reg.http.get(f"/v1/clients/{client_id}", headers=officer, timeout=NO_HANG),
        ]
        for r in attempts:
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"].isdigit()
            problem = r.json()
            assert (problem["rule"], problem["dependency"]) == ("dependency_unavailable", "nats")
        ready = await reg.http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["nats"] != "ok"

        own_nats.start()  # the same data folder and port
        await eventually(lambda: reg.kernel.nc.is_connected)
        retried = await eventually(
            lambda: reg.http.post("/v1/clients", json=body(nik(2)), headers={**officer, **key}),
            until=lambda r: r.status_code != 503)
        assert retried.status_code == 201, retried.text
        again = await reg.http.post("/v1/clients", json=body(nik(2)), headers={**officer, **key})
        assert again.json() == retried.json()
        store = EventStore(reg.kernel.nc, reg.kernel.topology, reg.kernel.catalog, keys=reg.kernel.keys)
        stored = await store.load("registration", CaseRef("jaksel", retried.json()["client_id"]))
        assert len(stored.events) == 1
        assert (await reg.http.get(f"/v1/clients/{client_id}", headers=officer)).status_code \
            == 200


async def test_with_nats_down_a_search_answers_and_its_access_record_waits(settings, own_nats):
    own = settings.model_copy(update={"nats_url": own_nats.url,
                                      "nats_monitor_url": own_nats.monitor_url})
    async with running(registration, own) as reg:
        officer = reg.token("jaksel", "supervisor", sub="kasubsi")
        first = await reg.http.post("/v1/clients", json=body(nik(3)), headers=officer)
        assert first.status_code == 201, first.text
        client_id = first.json()["client_id"]
        await eventually(lambda: reg.http.get("/v1/clients", headers=officer),
                         until=lambda r: r.json()["items"])
        await reg.kernel.access.flush()  # the searches' records, stored behind their answers
        store = EventStore(reg.kernel.nc, reg.kernel.topology, reg.kernel.catalog, keys=reg.kernel.keys)
        before = len((await store.load("access", CaseRef("jaksel", client_id))).events)

        own_nats.kill()
        await eventually(lambda: not reg.kernel.nc.is_connected)
        found = await reg.http.get("/v1/clients", headers=officer, timeout=NO_HANG)
        assert found.status_code == 200, found.text
        assert [i["client_id"] for i in found.json()["items"]] == [client_id]
        assert (await reg.http.get("/readyz")).json()["access_records_waiting"] == 1

        own_nats.start()
        await eventually(lambda: reg.kernel.access.waiting(), equals=0, timeout=20)
        reads = (await store.load("access", CaseRef("jaksel", client_id))).events
        assert len(reads) == before + 1
        assert (reads[-1].data.actor, reads[-1].data.what) == ("kasubsi", "GET /v1/clients (search)")


async def test_with_postgres_down_requests_answer_503_never_401(settings, tmp_path):
    from shared.local.servers import PostgresServer

    pg = PostgresServer(tmp_path / "pg").start()
    try:
        own = settings.model_copy(update={"database_url": pg.dsn})
        async with running(registration, own) as reg:
            officer = reg.token("jaksel", "supervisor", sub="kasubsi")
            assert (await reg.http.get("/v1/clients", headers=officer)).status_code == 200
            pg.stop()
            r = await reg.http.get("/v1/clients", headers=officer, timeout=NO_HANG)
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"].isdigit()
            assert r.json()["dependency"] == "postgres"
            # a registration needs PostgreSQL too: the person's data key, which seals their
            # personal fields, is stored there before anything sealed with it is
            r = await reg.http.post("/v1/clients", json=body(nik(4)), headers=officer,
                                    timeout=NO_HANG)
            assert r.status_code == 503 and r.json()["dependency"] == "postgres", r.text
            ready = await reg.http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["postgres"] != "ok"
            pg.start()
            back = await eventually(lambda: reg.http.get("/v1/clients", headers=officer),
                                    until=lambda r: r.status_code == 200, timeout=30)
            assert back.status_code == 200
    finally:
        pg.stop()
