"""`bapas rebuild`: the running service rebuilds a read model from the streams into new
tables and switches over; the command asks, shows progress and reports the switch."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from click.testing import CliRunner

import shared.local.rebuild as rebuild
from services.registration.app import definition
from services.registration.events import (
    EVENTS,
    AddressChanged,
    ClientDetailsCorrected,
    ClientRegistered,
    Decision,
    FamilyContact,
    OfficerAssigned,
    Period,
    Person,
    Program,
    Sex,
)
from shared.cli import main
from shared.db import ensure_kernel_tables
from shared.events import EventCatalog, Metadata, NewEvent
from shared.ids import new_id
from shared.store import CaseVersion, CaseWrite, EventStore
from shared.streams import CaseRef
from tests.support.service import running
from tests.support.wait import eventually

CLIENTS = 10_000
EVENTS_PER_CLIENT = 5
CLIENTS_PER_BATCH = 50  # 250 messages in one atomic batch (the server allows 1,000)
CONCURRENCY = 32
META = Metadata("pk-0007", "rebuild-test")


def client_events(i: int, client_id: str, office: str) -> list[NewEvent]:
    """A registration and four later facts about it, all valid for the domain."""
    now = datetime.now(UTC)
    start = date(2026, 1, 1) + timedelta(days=i % 300)

    def ev(data, minutes: int) -> NewEvent:
        return NewEvent(new_id(), data, now + timedelta(minutes=minutes), META)

    address = f"Jl. Kemang Raya No. {i % 200 + 1}, Jakarta Selatan"
    registered = ClientRegistered(
        client_id=client_id, office=office, register_number=f"{office.upper()}-2026-{i + 1:05d}",
        program=Program.PB if i % 3 else Program.CB,
        decision=Decision(number=f"PAS-{i}.PK.01.05.06 Tahun 2026",
                          issued_by="Direktur Jenderal Pemasyarakatan",
                          issued_on=start - timedelta(days=4)),
        origin_institution="Lapas Kelas I Cipinang",
        period=Period(start_on=start, end_on=start + timedelta(days=365)),
        person=Person(full_name=f"Klien {i}", nik=f"3171{i:012d}",
                      birth_date=date(1960 + i % 40, 1 + i % 12, 1 + i % 28),
                      sex=Sex.F if i % 2 else Sex.M, address=address,
                      phone=f"+62812{i:08d}"),
        family_contact=FamilyContact(name="Budi", relation="anak", phone="+6281111111111"),
        officer_id="pk-0007", is_child=False, registered_at=now)
    return [
        ev(registered, 0),
        ev(OfficerAssigned(officer_id=f"pk-{i % 50:04d}", previous_officer_id="pk-0007",
                           reason="caseload", assigned_at=now), 1),
        ev(AddressChanged(address=f"Jl. Fatmawati No. {i % 90 + 1}", previous_address=address,
                          reported_by_client=True, changed_at=now), 2),
        ev(ClientDetailsCorrected(field="person.full_name", old_value=f"Klien {i}",
                                  new_value=f"Klien Nomor {i}", reason="typo",
                                  corrected_at=now), 3),
        ev(ClientDetailsCorrected(field="person.phone", old_value=f"+62812{i:08d}",
                                  new_value=f"+62813{i:08d}", reason="new number",
                                  corrected_at=now), 4),
    ]


async def fill(store: EventStore, clients: int) -> None:
    """Each client's five events in one atomic batch, as registration appends them. The
    server fsyncs once per batch (`sync_interval: always`), so one client a batch makes the
    fill disk-bound (~70 batches/s here, 50,000 events in minutes): a batch carries
    CLIENTS_PER_BATCH clients' events (`append_together`, all or nothing, every case checked
    against its own expectation), CONCURRENCY batches in flight."""
    starts = list(range(0, clients, CLIENTS_PER_BATCH))

    async def worker() -> None:
        while starts:
            first = starts.pop()
            writes = []
            for i in range(first, min(first + CLIENTS_PER_BATCH, clients)):
                ref = CaseRef("jaksel", new_id())
                writes.append(CaseWrite(ref, client_events(i, ref.client_id, ref.office),
                                        CaseVersion.new()))
            await store.append_together("registration", writes)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def point_at(monkeypatch, settings) -> None:
    monkeypatch.setenv("BAPAS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BAPAS_NATS_URL", settings.nats_url)
    monkeypatch.setenv("BAPAS_NAMESPACE", settings.namespace)


async def invoke(*args: str):
    """The real command (click, `rebuild.run`, asyncio.run) in a thread: this test's event
    loop keeps running the service meanwhile."""
    return await asyncio.to_thread(CliRunner().invoke, main, ["rebuild", *args],
                                   catch_exceptions=False)


@pytest.mark.slow
async def test_a_rebuild_of_50000_events_gives_the_same_rows_and_shows_progress(
        settings, streams, monkeypatch, tmp_path):
    point_at(monkeypatch, settings)
    async with running(definition, settings) as svc:
        kernel = svc.kernel
        schema, pool = kernel.schema, kernel.pool
        stream = kernel.topology.stream("registration")
        store = EventStore(kernel.nc, kernel.topology, EventCatalog(EVENTS))

        began = time.perf_counter()
        await fill(store, CLIENTS)
        filled = time.perf_counter() - began
        last_seq = (await kernel.nc.jetstream().stream_info(stream)).state.last_seq
        assert last_seq == CLIENTS * EVENTS_PER_CLIENT == 50_000
        print(f"\nfilled {last_seq:,} events in {filled:.1f} s")

        async def live_position() -> int:
            return await pool.fetchval(
                f'SELECT position FROM "{schema}".projection_checkpoints WHERE projection = '
                "'client_directory' AND tag = 'v2_1' AND stream = $1", stream)

        await eventually(live_position, equals=last_seq, timeout=120, every=0.5)
        snapshot = await pool.fetch(f'SELECT * FROM "{schema}".clients ORDER BY client_id')
        assert len(snapshot) == CLIENTS

        began = time.perf_counter()
        result = await invoke("registration", "--data", str(tmp_path))
        took = time.perf_counter() - began
        print(result.output)
        print(f"rebuild command took {took:.1f} s")

        assert result.exit_code == 0, result.output
        out = result.output
        assert "client_directory: rebuilding from the streams into v2_2" in out
        progress = re.findall(r"\[[#-]{30}\]\s+(\d+)% [\d,]+/50,000 events [\d,]+/s ETA (\S+)", out)
        assert len(progress) >= 2, out
        assert progress[-1][0] == "100"
        assert any(eta not in ("--:--", "0:00") for _, eta in progress), out
        assert "client_directory: switched v2_1 -> v2_2: 50,000 events in" in out

        versions = await pool.fetchrow(
            f'SELECT active_tag, building_tag FROM "{schema}".projection_versions '
            "WHERE projection = 'client_directory'")
        assert (versions["active_tag"], versions["building_tag"]) == ("v2_2", None)
        rebuilt = await pool.fetch(f'SELECT * FROM "{schema}".clients ORDER BY client_id')
        assert [dict(r) for r in rebuilt] == [dict(r) for r in snapshot]
        tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1 AND "
                                  "tablename LIKE 'clients%' ORDER BY tablename", schema)
        assert [t["tablename"] for t in tables] == ["clients__v2_2"]  # the old build is gone
        assert await pool.fetchval(
            f'SELECT count(*) FROM "{schema}".projection_checkpoints '
            "WHERE projection = 'client_directory' AND tag = 'v2_1'") == 0

        # the rebuilt view is live: new events still reach it
        ref = CaseRef("jaksel", new_id())
        await store.append("registration", ref, client_events(CLIENTS, ref.client_id, "jaksel"),
                           CaseVersion.new())
        await eventually(lambda: pool.fetchval(
            f'SELECT full_name FROM "{schema}".clients WHERE client_id = $1', ref.client_id),
            equals=f"Klien Nomor {CLIENTS}")


async def test_an_unknown_projection_is_refused_naming_the_known_ones(
        settings, streams, monkeypatch, tmp_path):
    point_at(monkeypatch, settings)
    async with running(definition, settings) as svc:
        result = await invoke("registration", "client_directry", "--data", str(tmp_path))
        building = await svc.kernel.pool.fetchval(
            f'SELECT count(building_tag) FROM "{svc.kernel.schema}".projection_versions')
    assert result.exit_code == 1
    assert "registration has no projection 'client_directry'; known: client_directory" \
        in result.output
    assert building == 0


async def test_without_a_running_service_the_request_is_withdrawn(
        settings, streams, monkeypatch, tmp_path, pool):
    point_at(monkeypatch, settings)
    monkeypatch.setattr(rebuild, "STALL_SECONDS", 1.0)
    schema = f"{settings.namespace}_registration"
    async with pool.acquire() as conn:  # a service ran once and is gone
        await ensure_kernel_tables(conn, schema)
        await conn.execute(f'INSERT INTO "{schema}".projection_versions (projection, active_tag, '
                           "generation) VALUES ('client_directory', 'v1_1', 1)")
    result = await invoke("registration", "--data", str(tmp_path))
    assert result.exit_code == 1
    assert "no registration service took the build up within 1 s" in result.output
    assert "the request is withdrawn; nothing was changed" in result.output
    row = await pool.fetchrow(
        f'SELECT active_tag, building_tag FROM "{schema}".projection_versions')
    assert (row["active_tag"], row["building_tag"]) == ("v1_1", None)


def test_without_settings_or_a_running_platform_it_says_what_is_missing(monkeypatch, tmp_path):
    for var in ("BAPAS_DATABASE_URL", "BAPAS_NATS_URL", "BAPAS_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(main, ["rebuild", "audit", "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert "BAPAS_DATABASE_URL and BAPAS_NATS_URL not set" in result.output
    assert f"there is no {tmp_path / 'run.json'}" in result.output
