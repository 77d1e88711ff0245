"""A service's kernel in-process: readiness reports held cases, reads are recorded."""

from __future__ import annotations

import json

import httpx
import pytest

from shared.access import ACCESS
from shared.runtime import Kernel, ServiceDefinition, ServiceParts, build_app
from shared.store import EventStore
from shared.streams import CaseRef
from shared.web.auth import Principal
from tests.support import ledger
from tests.support.ledger import LEDGER, Balances
from tests.support.wait import eventually


@pytest.fixture
async def kernel(settings, streams):
    k = await Kernel.connect("ledgerview", settings, (LEDGER,))
    yield k
    await k.close()


async def test_readiness_reports_a_parked_case_and_stays_ready(kernel):
    runner = kernel.command_runner("ledger", ledger_decider())
    ref = CaseRef("jaksel", "client-1")
    meta = ledger_meta()
    await runner.run(ref, ledger.Open("x"), meta)
    await runner.run(ref, ledger.Credit(1, "poison"), meta)
    parts = ServiceParts(consumers=[Balances()])
    defn = ServiceDefinition("ledgerview", "t", "t", (LEDGER,), lambda k: parts)
    app = build_app(defn, kernel, parts)
    await kernel.start(parts)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        async def ready_doc():
            return (await c.get("/readyz")).json()

        doc = await eventually(ready_doc, until=lambda d: d["held_cases"]
                               and d["held_cases"][0]["status"] == "parked")
        assert doc["status"] == "ready" and doc["degraded"] is True
        assert doc["held_cases"][0]["subject"].endswith(".ledger.client-1")
        assert doc["consumers"][0]["name"] == "balances" and doc["consumers"][0]["held_cases"] == 1
        assert doc["consumers"][0]["intake"] == "kernel"  # a read model: the kernel's own loop
        metrics = (await c.get("/metrics")).text
        assert 'bapas_projection_parked_cases{projection="balances"} 1.0' in metrics
        assert 'bapas_events_appended_total{stream="' in metrics


async def test_a_read_is_recorded_in_the_access_stream(kernel, nc, topology):
    who = Principal("pk-0007", "jaksel", frozenset({"pk"}))
    ref = CaseRef("jaksel", "client-9")
    await kernel.access.record(who, ref, "GET /v1/clients/client-9", correlation_id="c-1")
    store = EventStore(nc, topology, kernel.catalog)
    loaded = await store.load("access", ref)
    (read,) = loaded.events
    assert read.type == "ClientDataRead" and read.actor == "pk-0007"
    assert read.data.what == "GET /v1/clients/client-9" and read.data.service == "ledgerview"
    assert read.correlation_id == "c-1"
    assert json.loads(read.body)["actor_roles"] == ["pk"]
    assert "ClientDataRead" in ACCESS


def ledger_decider():
    from shared.decider import Decider
    return Decider(ledger.Account(), ledger.decide, ledger.evolve)


def ledger_meta():
    from shared.events import Metadata
    return Metadata("pk-0007", "corr")
