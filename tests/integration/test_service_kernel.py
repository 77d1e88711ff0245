"""A service's kernel in-process: readiness reports held cases, reads are recorded."""

from __future__ import annotations

import asyncio
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
    await kernel.access.flush()  # the read did not wait for its record; it is queued
    store = EventStore(nc, topology, kernel.catalog, keys=kernel.keys)
    loaded = await store.load("access", ref)
    (read,) = loaded.events
    assert read.type == "ClientDataRead" and read.actor == "pk-0007"
    assert read.data.what == "GET /v1/clients/client-9" and read.data.service == "ledgerview"
    assert read.correlation_id == "c-1"
    assert json.loads(read.body)["actor_roles"] == ["pk"]
    assert "ClientDataRead" in ACCESS


async def test_reads_queued_at_stop_are_stored_before_the_connection_closes(kernel, nc,
                                                                           topology):
    who = Principal("kasubsi", "jaksel", frozenset({"supervisor"}))
    refs = [CaseRef("jaksel", f"client-{i}") for i in range(300)]
    await asyncio.gather(*(kernel.access.record(who, ref, "GET /v1/clients (search)")
                           for ref in refs))
    await kernel.access.close()  # as the service stops: nothing waits on those records
    store = EventStore(nc, topology, kernel.catalog, keys=kernel.keys)
    loads = await asyncio.gather(*(store.load("access", ref) for ref in refs))
    assert [len(loaded.events) for loaded in loads] == [1] * len(refs)
    assert await kernel.access.waiting() == 0  # all in the stream, none in the outbox


async def test_a_record_the_stream_does_not_take_goes_to_the_outbox(kernel, nc, namespace):
    from shared.access import AccessRecorder
    from shared.streams import Topology

    # a namespace whose streams were never made: the server answers no publish
    nowhere = Topology(f"{namespace}_gone")
    recorder = AccessRecorder(nc, nowhere, "ledgerview", timeout=1.0, pool=kernel.pool,
                              schema=kernel.schema)
    who = Principal("pk-0007", "jaksel", frozenset({"pk"}))
    await recorder.record(who, CaseRef("jaksel", "client-1"), "GET /v1/clients/client-1")
    await recorder.flush()
    assert await recorder.waiting() == 1  # kept for the drain, not dropped
    await recorder.close()


def ledger_decider():
    from shared.decider import Decider
    return Decider(ledger.Account(), ledger.decide, ledger.evolve)


def ledger_meta():
    from shared.events import Metadata
    return Metadata("pk-0007", "corr")
