"""Personal fields sealed per person (shared.privacy) on a real PostgreSQL and a real
JetStream: what the stream holds, what a reader with and without the key sees, erasure by
destroying the key, master-key rotation, and the hash chain over the sealed bytes."""

from __future__ import annotations

import asyncio
import base64
import os
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import asyncpg
import pytest

from shared.envelope import GENESIS_HASH
from shared.events import Event, EventCatalog, EventRegistry, Metadata, NewEvent
from shared.ids import new_id
from shared.privacy import (PERSONAL, SEALED_PREFIX, KeyRing, MasterKeys, ensure_key_tables,
                            personal_paths)
from shared.store import CaseVersion, EventStore
from shared.streams import CaseRef

REG = EventRegistry("registration")


@REG.event()
class PersonNoted(Event):
    name: Annotated[str | None, PERSONAL]
    born: Annotated[date | None, PERSONAL]
    notes: Annotated[list[str] | None, PERSONAL]
    program: str


def master(kid: str = "m1") -> MasterKeys:
    return MasterKeys({kid: os.urandom(32)})


@pytest.fixture
async def ring(pool, topology, streams):
    keys = KeyRing(pool, topology.schema("privacy"), master())
    await keys.ensure_schema()
    return keys


@pytest.fixture
def store(nc, topology, ring):
    return EventStore(nc, topology, EventCatalog(REG), keys=ring)


def noted(name: str = "Siti Aminah") -> NewEvent:
    return NewEvent(id=new_id(), data=PersonNoted(name=name, born=date(1945, 8, 17),
                                                  notes=["tinggal bersama anak"],
                                                  program="PB"),
                    time=datetime.now(UTC), meta=Metadata(actor="pk-0007", correlation_id=new_id()))


def test_the_personal_paths_of_a_model():
    assert personal_paths(PersonNoted) == (("name",), ("born",), ("notes",))


async def test_the_stream_holds_no_personal_value_and_the_owner_reads_them(store, ring):
    ref = CaseRef("jaksel", "c-" + new_id())
    await store.append("registration", ref, [noted()], CaseVersion(0, 0, GENESIS_HASH))
    stream, subject = store.topology.stream("registration"), store.topology.subject(
        "registration", ref)
    raw = (await store.read_subject(stream, subject))[0].data
    assert b"Siti" not in raw and b"1945" not in raw and b"tinggal" not in raw
    assert raw.count(SEALED_PREFIX.encode()) == 3 and b'"program":"PB"' in raw
    event = (await store.load("registration", ref)).events[0].data
    assert (event.name, event.born, event.notes) == ("Siti Aminah", date(1945, 8, 17),
                                                     ["tinggal bersama anak"])
    # a reader without the key ring reads the sealed values as None
    blind = EventStore(store._nc, store.topology, store.catalog)  # no keys
    seen = (await blind.load("registration", ref)).events[0].data
    assert (seen.name, seen.born, seen.notes, seen.program) == (None, None, None, "PB")
    # and the chain holds over the sealed bytes, keys or not
    assert (await blind.verify("registration", ref)).intact


async def test_a_destroyed_key_erases_the_person_everywhere_it_is_read(store, ring, pool):
    ref = CaseRef("jaksel", "c-" + new_id())
    other = CaseRef("jaksel", "c-" + new_id())
    for r in (ref, other):
        await store.append("registration", r, [noted()], CaseVersion(0, 0, GENESIS_HASH))
    assert await ring.destroy(ref.client_id, by="kabapas", legal_basis="UU 27/2022 Pasal 8",
                              at=datetime.now(UTC))
    assert not await ring.destroy(ref.client_id, by="kabapas", legal_basis="again",
                                  at=datetime.now(UTC))  # once
    # another process, with a ring of its own, sees it too
    elsewhere = EventStore(store._nc, store.topology, store.catalog,
                           keys=KeyRing(pool, ring.schema, ring.masters))
    erased = (await elsewhere.load("registration", ref)).events[0].data
    assert (erased.name, erased.born, erased.program) == (None, None, "PB")
    assert (await elsewhere.load("registration", other)).events[0].data.name == "Siti Aminah"
    assert (await elsewhere.verify("registration", ref)).intact
    row = await pool.fetchrow(f"SELECT * FROM {ring.table} WHERE subject = $1",
                              ref.client_id)
    assert row["wrapped"] is None and row["destroyed_by"] == "kabapas"
    assert row["legal_basis"] == "UU 27/2022 Pasal 8"


async def test_master_keys_rotate_and_old_ones_still_unwrap(store, ring, pool):
    ref = CaseRef("jaksel", "c-" + new_id())
    await store.append("registration", ref, [noted()], CaseVersion(0, 0, GENESIS_HASH))
    old = ring.masters
    rotated = MasterKeys({"m2": os.urandom(32), **old._keys})
    reader = KeyRing(pool, ring.schema, rotated)
    later = EventStore(store._nc, store.topology, store.catalog, keys=reader)
    assert (await later.load("registration", ref)).events[0].data.name == "Siti Aminah"
    assert await reader.rewrap() >= 1
    kid = await pool.fetchval(f"SELECT master_kid FROM {ring.table} WHERE subject = $1",
                              ref.client_id)
    assert kid == "m2"
    only_new = KeyRing(pool, ring.schema, MasterKeys({"m2": rotated._keys["m2"]}))
    fresh = EventStore(store._nc, store.topology, store.catalog, keys=only_new)
    assert (await fresh.load("registration", ref)).events[0].data.name == "Siti Aminah"


def test_master_keys_are_written_kid_equals_base64():
    key = base64.b64encode(os.urandom(32)).decode()
    keys = MasterKeys.parse(f"2026a={key}, 2025b={key}")
    assert keys.current == "2026a"
    with pytest.raises(ValueError, match="kid=base64"):
        MasterKeys.parse(key)
    with pytest.raises(ValueError, match="32 bytes"):
        MasterKeys.parse("k=" + base64.b64encode(b"short").decode())


async def test_the_example_grants_let_each_service_do_only_its_part(pool, topology, ring):
    """deploy/privacy-grants.sql, run on a real PostgreSQL: every service reads the keys,
    the writers of personal fields make them, only registration destroys one, nobody
    deletes one, and a role it does not name reaches nothing."""
    schema = topology.schema("privacy")
    sql = (Path(__file__).parents[2] / "deploy" / "privacy-grants.sql").read_text()
    sql = re.sub(r"\bprivacy\b(?=[.;\s])", f'"{schema}"', sql)
    table = f'"{schema}".subject_keys'
    await ring.prepare(["c-grants"], create=True)

    async def as_role(role: str, statement: str, *args) -> str:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f'SET LOCAL ROLE "{role}"')
            try:
                await conn.execute(statement, *args)
            except asyncpg.InsufficientPrivilegeError:
                return "refused"
            await ensure_key_tables(conn, schema)  # made already: no DDL asked of the role
            return "done"

    async with pool.acquire() as conn:
        await conn.execute(sql)
        await conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE "
                           "rolname = 'bapas_other') THEN CREATE ROLE bapas_other; END IF; END $$")
    select = f"SELECT wrapped FROM {table}"
    insert = (f"INSERT INTO {table} (subject, kid, master_kid, wrapped) "
              "VALUES ($1, 'k', 'm', '\\x00') ON CONFLICT DO NOTHING")
    destroy = f"UPDATE {table} SET wrapped = NULL WHERE subject = 'c-grants'"
    note = f"UPDATE {table} SET shared = true WHERE subject = 'c-grants'"
    delete = f"DELETE FROM {table}"
    for svc in ("registration", "guidance", "supervision", "notification", "audit"):
        role = f"bapas_{svc}"
        assert await as_role(role, select) == "done", svc
        assert await as_role(role, note) == "done", svc
        assert await as_role(role, delete) == "refused", svc
        makes = svc in ("registration", "guidance", "supervision")
        assert await as_role(role, insert, f"c-{svc}") == ("done" if makes else "refused"), svc
        assert await as_role(role, destroy) == ("done" if svc == "registration"
                                                else "refused"), svc
    assert await as_role("bapas_other", select) == "refused"


async def test_keys_made_at_once_by_many_writers_are_one_key_per_person(pool, topology):
    """Rings of several processes making the same persons' keys at the same moment: each
    person gets one key, and every ring holds that one."""
    masters = master()
    rings = [KeyRing(pool, topology.schema("privacy"), masters) for _ in range(6)]
    await rings[0].ensure_schema()
    people = [f"c-race-{i}" for i in range(40)]
    await asyncio.gather(*(r.prepare(people, create=True) for r in rings))
    sealed = [r.seal(p, "x") for r in rings for p in people]
    kids = {(v.split(":")[2]) for v in sealed}
    rows = await pool.fetch(f'SELECT subject, kid FROM "{topology.schema("privacy")}".subject_keys'
                            " WHERE subject = ANY($1::text[])", people)
    assert len(rows) == len(people) and kids == {r["kid"] for r in rows}
    assert all(r.open(p, r2.seal(p, "y")) == "y" for r, r2 in zip(rings, rings[1:]) for p in people)
