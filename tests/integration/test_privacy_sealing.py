"""`bapas privacy seal-existing` on real servers: events written before personal fields
were sealed are sealed in place of their plaintext, their chains recomputed, every other
byte of them kept; a second run changes nothing; the backup restores what was there."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

import pytest

from services.registration.events import EVENTS as REGISTRATION
from services.registration.events import ClientRegistered, Decision, Period, Person
from services.supervision.events import EVENTS as SUPERVISION
from services.supervision.events import VisitLogged
from shared.envelope import GENESIS_HASH
from shared.events import EventCatalog, Metadata, NewEvent
from shared.ids import new_id
from shared.local.sealing import SealingError, restore, seal_existing
from shared.privacy import KeyRing, MasterKeys
from shared.store import CaseVersion, EventStore
from shared.streams import CaseRef, Topology

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
