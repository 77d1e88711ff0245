"""`bapas privacy seal-existing` on real servers: events written before personal fields
were sealed are sealed in place of their plaintext, their chains recomputed, every other
byte of them kept; a second run changes nothing; the backup restores what was there."""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import UTC, date, datetime

import pytest

from services.registration.events import EVENTS as REGISTRATION
from services.registration.events import (
    UNKEYED_NIK_CASE,
    ClientRegistered,
    Decision,
    NikClaimed,
    Period,
    Person,
    nik_case,
    rekeyed_nik_case,
)
from services.registration.registrar import refuse_unkeyed_nik_index
from services.supervision.events import EVENTS as SUPERVISION
from services.supervision.events import VisitLogged
from shared.db import ensure_kernel_tables
from shared.envelope import GENESIS_HASH
from shared.errors import MigrationNeeded
from shared.events import EventCatalog, Metadata, NewEvent
from shared.ids import new_id
from shared.local.sealing import SealingError, forget_copies, restore, run, seal_existing
from shared.privacy import IndexKey, KeyRing, MasterKeys
from shared.store import CaseVersion, EventStore
from shared.streams import CaseRef, Topology
from tests.conftest import TEST_SECRET

NAME = "Sebelum Enkripsi"


def registered(client_id: str) -> ClientRegistered:
    return ClientRegistered(
        client_id=client_id, office="jaksel", register_number="JAKSEL-2026-00001",
        program="PB", decision=Decision(number="PAS-1", issued_by="Dirjen", issued_on=date(2026, 1, 2)),
        origin_institution="Lapas Cipinang",
        period=Period(start_on=date(2026, 1, 5), end_on=date(2027, 1, 5)),
        person=Person(full_name=NAME, nik="3171015708450001", birth_date=date(1945, 8, 17),
                      sex="F", address="Jl. Kemang 5", phone="+6281234567890"),
        family_contact=None, officer_id="pk-0007", is_child=False,
        registered_at=datetime.now(UTC))


def visit(note: str) -> VisitLogged:
    return VisitLogged(visit_id=new_id(), kind="LAPOR_DIRI", occurred_at=datetime.now(UTC),
                       outcome="MET_COMPLIED", notes=note, remote_reason=None, logged_by="pk",
                       counts_as_report=True, covers_due_on=None, missed_in_a_row=0)


def new(data) -> NewEvent:
    return NewEvent(id=new_id(), data=data, time=datetime.now(UTC),
                    meta=Metadata(actor="pk-0007", correlation_id=new_id()))


@pytest.fixture
async def ring(pool, topology, streams):
    keys = KeyRing(pool, topology.schema("privacy"), MasterKeys({"m": os.urandom(32)}))
    await keys.ensure_schema()
    return keys


async def test_old_plaintext_is_sealed_rechained_and_can_be_restored(nc, topology, ring,
                                                                      tmp_path):
    catalog = EventCatalog(REGISTRATION, SUPERVISION)
    before = EventStore(nc, topology, catalog)  # as the system wrote before sealing
    refs = [CaseRef("jaksel", new_id()) for _ in range(2)]
    for ref in refs:
        first = await before.append("registration", ref, [new(registered(ref.client_id))],
                                    CaseVersion(0, 0, GENESIS_HASH))
        await before.append("supervision", ref, [new(visit("di rumah")), new(visit("sakit"))],
                            CaseVersion(0, 0, GENESIS_HASH))
        assert first.version.sequence == 1
    old = {ref: (await before.load("registration", ref)).events for ref in refs}
    js_stream = topology.stream("registration")
    raw_before = [m.data for ref in refs for m in await before.read_subject(
        js_stream, topology.subject("registration", ref))]
    assert all(NAME.encode() in b for b in raw_before)

    backup = tmp_path / "backup.jsonl"
    reports = await seal_existing(nc, topology, catalog, ring, backup,
                                  contexts=("registration", "supervision"))
    assert [(r.context, r.messages, r.sealed_events) for r in reports] == [
        ("registration", 2, 2), ("supervision", 4, 4)]

    after = EventStore(nc, topology, catalog, keys=ring)
    for ref in refs:
        for context in ("registration", "supervision"):
            subject = topology.subject(context, ref)
            raw = [m.data for m in await after.read_subject(topology.stream(context), subject)]
            assert not [b for b in raw if NAME.encode() in b or b"di rumah" in b]
            assert (await after.verify(context, ref)).intact
        events = (await after.load("registration", ref)).events
        assert [e.data for e in events] == [e.data for e in old[ref]]  # the same facts
        assert [(e.id, e.stream_seq, e.time) for e in events] == [
            (e.id, e.stream_seq, e.time) for e in old[ref]]
        visits = (await after.load("supervision", ref)).events
        assert [v.data.notes for v in visits] == ["di rumah", "sakit"]
    # the manifest ties each old hash to its new one
    manifest = {m["event_id"]: m for r in reports for m in r.manifest}
    for ref in refs:
        for e in old[ref]:
            assert manifest[e.id]["old_hash"] == e.hash
    # nothing left to seal: a second run changes nothing
    again = await seal_existing(nc, topology, catalog, ring, tmp_path / "again.jsonl",
                                contexts=("registration", "supervision"))
    assert [r.sealed_events for r in again] == [0, 0]
    # the backup brings back what was there
    await restore(nc, topology, backup)
    restored = [m.data for ref in refs for m in await before.read_subject(
        js_stream, topology.subject("registration", ref))]
    assert restored == raw_before


async def test_an_office_leaf_is_not_migrated_here(nc, ring, tmp_path):
    with pytest.raises(SealingError, match="leaf"):
        await seal_existing(nc, Topology("x", office="jaksel"), EventCatalog(REGISTRATION),
                            ring, tmp_path / "b.jsonl")


async def test_an_unkeyed_nik_index_is_renamed_and_registration_waits_for_it(
        nc, topology, ring, pool, tmp_path):
    """Earlier versions named the NIK index `nik-<SHA-256 of the NIK>`: brute-forced
    from a stream read raw. The migration renames those cases by the keyed digest, keeps
    their events and chains, and forgets the services' copies of them; registration
    refuses to start until it has run."""
    catalog = EventCatalog(REGISTRATION)
    store = EventStore(nc, topology, catalog)
    nik, index = "3171015708450001", IndexKey(b"an index key for the tests, 32 chars and more")
    plain = hashlib.sha256(nik.encode()).hexdigest()[:40]
    old_ref = CaseRef("jaksel", "nik-" + plain)
    holder = new_id()
    claimed = await store.append("registration", old_ref, [new(NikClaimed(client_id=holder))],
                                 CaseVersion.new())
    client = CaseRef("jaksel", holder)
    await store.append("registration", client, [new(registered(holder))], CaseVersion.new())
    schema = topology.schema("registration")
    async with pool.acquire() as conn:  # a copy of the index case, as the service keeps
        await ensure_kernel_tables(conn, schema)
        await conn.execute(
            f'INSERT INTO "{schema}".case_cache (stream, subject, sequence, stream_seq, hash, '
            "headers, body) VALUES ($1, $2, 1, 1, 'h', '{}', ''::bytea)",
            topology.stream("registration"), topology.subject("registration", old_ref))
    with pytest.raises(MigrationNeeded, match="seal-existing"):
        await refuse_unkeyed_nik_index(store)

    reports = await seal_existing(
        nc, topology, catalog, ring, tmp_path / "backup.jsonl", contexts=("registration",),
        renames={"registration": lambda case: rekeyed_nik_case(case, index)})
    assert [(r.renamed_cases, r.sealed_events) for r in reports] == [(1, 1)]
    assert await forget_copies(pool, topology, UNKEYED_NIK_CASE.pattern) == 1

    new_ref = CaseRef("jaksel", nik_case(nik, index))  # where registration now looks
    moved = (await store.load("registration", new_ref)).events
    assert [(e.id, e.hash, e.data) for e in moved] == [
        (e.id, e.hash, e.data) for e in claimed.events]
    assert moved[0].client_id == new_ref.client_id
    assert (await store.verify("registration", new_ref)).intact
    assert (await store.load("registration", old_ref)).events == []
    # neither the NIK nor its plain digest anywhere in the stream read raw
    stream = topology.stream("registration")
    raw = await store.read_subject(stream, topology.context_filter("registration"))
    everything = b"".join(m.subject.encode() + repr(m.headers).encode() + (m.data or b"")
                          for m in raw)
    assert plain.encode() not in everything and nik.encode() not in everything
    assert not [s for s in await store.subjects(stream, topology.context_filter("registration"))
                if plain in s]
    await refuse_unkeyed_nik_index(store)  # registration may start
    # a second run renames nothing
    again = await seal_existing(
        nc, topology, catalog, ring, tmp_path / "again.jsonl", contexts=("registration",),
        renames={"registration": lambda case: rekeyed_nik_case(case, index)})
    assert [r.renamed_cases for r in again] == [0]


async def test_the_command_renames_the_index_with_the_configured_key(
        servers, namespace, nc, topology, streams, monkeypatch, tmp_path):
    """`bapas privacy seal-existing` as an operator runs it, against the configured servers."""
    key = "an operator's index key of 32 chars or more"
    for name, value in {"BAPAS_NATS_URL": servers.nats_url, "BAPAS_DATABASE_URL": servers.dsn,
                        "BAPAS_NAMESPACE": namespace, "BAPAS_ENV": "development",
                        "BAPAS_JWT_SECRET": TEST_SECRET,
                        "BAPAS_PRIVACY_INDEX_KEY": key}.items():
        monkeypatch.setenv(name, value)
    store = EventStore(nc, topology, EventCatalog(REGISTRATION))
    nik = "3171015708450001"
    old = CaseRef("jaksel", "nik-" + hashlib.sha256(nik.encode()).hexdigest()[:40])
    await store.append("registration", old, [new(NikClaimed(client_id=new_id()))],
                       CaseVersion.new())
    said: list[str] = []
    assert await asyncio.to_thread(run, tmp_path, tmp_path / "backup.jsonl",
                                   echo=said.append) == 0
    assert "1 NIK index cases renamed" in "\n".join(said)
    renamed = CaseRef("jaksel", nik_case(nik, IndexKey(key.encode())))
    assert len((await store.load("registration", renamed)).events) == 1
    await refuse_unkeyed_nik_index(store)
