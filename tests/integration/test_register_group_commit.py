"""Registrations of one office decided and appended together (group commit), on real
servers: gap-free numbers in arrival order, one NIK one case, refusals take no number,
repeats store nothing new, and a second replica still serialises on the register book."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.registration import domain as d
from services.registration.events import CONTEXT, EVENTS
from services.registration.registrar import MAX_GROUP, Registrar
from shared.errors import DomainConflict
from shared.events import EventCatalog, Metadata
from shared.metrics import KernelMetrics
from shared.privacy import IndexKey
from shared.store import EventStore
from shared.streams import CaseRef
from tests.support.clock import now_utc, office_today


def nik(i: int) -> str:
    """A valid NIK per i: region 317101, a birth date in 1970-1990, serial i."""
    return "317101%02d%02d%02d%04d" % (1 + i % 28, 1 + (i // 28) % 12, 70 + (i // 336) % 20,
                                       1 + i // 6720)


def registering(i: int, *, client_id: str | None = None, nik_of: int | None = None,
                office: str = "jaksel") -> d.RegisterClient:
    today = office_today()
    return d.RegisterClient(
        client_id=client_id or f"c-{i}", office=office, program=d.Program.PB,
        decision=d.Decision(number=f"PAS-{i}", issued_by="Dirjen PAS",
                            issued_on=today - timedelta(days=30)),
        origin_institution="Lapas Cipinang",
        period=d.Period(start_on=today - timedelta(days=20), end_on=today + timedelta(days=300)),
        full_name=f"Klien {i}", nik=nik(i if nik_of is None else nik_of),
        address="Jl. Kemang 5", registered_at=now_utc())


META = Metadata(actor="pk-0007", correlation_id="corr-1")
INDEX = IndexKey(b"an index key for the tests, 32 chars and more")


@pytest.fixture
def store(nc, topology, streams):
    return EventStore(nc, topology, EventCatalog(EVENTS), metrics=KernelMetrics())


async def book(store: EventStore, office: str = "jaksel") -> list[d.RegisterNumberIssued]:
    key = d.book_key(now_utc())
    return [e.data for e in (await store.load(CONTEXT, CaseRef(office, key))).events]


def appends(store: EventStore) -> float:
    """How many appends the store has made (each one atomic batch or one publish)."""
    hist = store._metrics.append_seconds  # the store's own histogram of append calls
    return sum(s.value for m in hist.collect() for s in m.samples if s.name.endswith("_count"))


async def test_registrations_at_once_get_gap_free_numbers_in_arrival_order_and_share_appends(store):
    registrar = Registrar(store, INDEX)
    n = 150
    results = await asyncio.gather(*(registrar.register(registering(i), META) for i in range(n)))
    numbers = [int(r.event.register_number.rsplit("-", 1)[1]) for r in results]
    assert numbers == list(range(1, n + 1))  # asked in this order, numbered in this order
    issued = await book(store)
    assert [e.number for e in issued] == list(range(1, n + 1))
    assert [e.client_id for e in issued] == [f"c-{i}" for i in range(n)]
    # many registrations shared each append: far fewer appends than registrations
    assert appends(store) <= n / 4
    assert appends(store) >= n / MAX_GROUP


async def test_a_refused_registration_takes_no_number_and_one_nik_gets_one_case(store):
    registrar = Registrar(store, INDEX)
    asks = [registering(0), registering(1, nik_of=0), registering(2),
            registering(3, nik_of=2), registering(4)]
    results = await asyncio.gather(*(registrar.register(cmd, META) for cmd in asks),
                                   return_exceptions=True)
    assert [type(r).__name__ for r in results] == [
        "Registered", "DomainConflict", "Registered", "DomainConflict", "Registered"]
    assert results[1].rule == "nik_active" and results[1].field == "person.nik"
    assert results[1].extra == {"existing_client_id": "c-0"}
    assert [r.event.register_number[-5:] for r in results if not isinstance(r, Exception)] == [
        "00001", "00002", "00003"]
    assert [e.client_id for e in await book(store)] == ["c-0", "c-2", "c-4"]


async def test_repeats_in_the_same_group_and_later_store_nothing_new(store):
    registrar = Registrar(store, INDEX)
    first = await asyncio.gather(*(registrar.register(registering(i, client_id="same"), META)
                                   for i in (7, 7, 7)))
    assert [r.duplicate for r in first] == [False, True, True]
    assert len({r.event.register_number for r in first}) == 1
    again = await registrar.register(registering(7, client_id="same"), META)
    assert again.duplicate and again.event == first[0].event
    assert len(await book(store)) == 1
    client = await store.load(CONTEXT, CaseRef("jaksel", "same"))
    assert len(client.events) == 1


async def test_two_replicas_registering_at_once_still_number_without_gaps(nc, topology, streams):
    replicas = [Registrar(EventStore(nc, topology, EventCatalog(EVENTS)), INDEX) for _ in range(2)]
    n = 120
    results = await asyncio.gather(*(replicas[i % 2].register(registering(i), META)
                                     for i in range(n)), return_exceptions=True)
    stored = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    # a replica may give up after repeated conflicts (the caller retries), never store twice
    assert all(isinstance(r, DomainConflict) and r.rule == "concurrent_change" for r in refused)
    issued = await book(EventStore(nc, topology, EventCatalog(EVENTS)))
    assert [e.number for e in issued] == list(range(1, len(stored) + 1))
    assert sorted(e.client_id for e in issued) == sorted(r.event.client_id for r in stored)
    assert len(stored) >= n // 2


async def test_offices_have_books_of_their_own(store):
    registrar = Registrar(store, INDEX)
    results = await asyncio.gather(*(registrar.register(
        registering(i, office="jaksel" if i % 2 else "bandung"), META) for i in range(20)))
    for office in ("jaksel", "bandung"):
        mine = [r.event for r in results if r.event.office == office]
        assert [e.register_number for e in mine] == [
            d.register_number(office, d.register_year(e.registered_at), k)
            for k, e in enumerate(mine, start=1)]
        assert len(await book(store, office)) == 10
