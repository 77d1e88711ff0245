"""The case cache: a service's copy of its cases, checked against the stream at every load."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg
import pytest

from shared.case_cache import CaseCache
from shared.db import ensure_kernel_tables
from shared.decider import Decider
from shared.envelope import chain_hash
from shared.events import EventCatalog, Metadata, NewEvent
from shared.ids import new_id
from shared.runtime import Kernel
from shared.store import CaseVersion, EventStore
from shared.streams import CaseRef
from tests.support import ledger
from tests.support.ledger import LEDGER, AccountOpened, Credited

META = Metadata(actor="pk-0007", correlation_id="corr-cache")
CONTEXT = "ledger"


def ev(data) -> NewEvent:
    return NewEvent(new_id(), data, datetime.now(UTC), META)


@pytest.fixture
async def cache(pool, topology, streams) -> CaseCache:
    schema = topology.schema("cachetest")
    async with pool.acquire() as conn:
        await ensure_kernel_tables(conn, schema)
    return CaseCache(pool, schema)


@pytest.fixture
def cached(nc, topology, cache) -> EventStore:
    return EventStore(nc, topology, EventCatalog(LEDGER), cache=cache)


@pytest.fixture
def plain(nc, topology, streams) -> EventStore:
    """Another writer: the same streams, no cache."""
    return EventStore(nc, topology, EventCatalog(LEDGER))


async def write_case(store: EventStore, ref: CaseRef, credits: int,
                     version: CaseVersion | None = None) -> CaseVersion:
    if version is None:
        version = (await store.append(CONTEXT, ref, [ev(AccountOpened(owner="x"))],
                                      CaseVersion.new())).version
    for i in range(credits):
        version = (await store.append(CONTEXT, ref, [ev(Credited(amount=i + 1))],
                                      version)).version
    return version


async def copy_of(pool, cache: CaseCache, cached: EventStore, ref: CaseRef):
    """The cache's rows of the case, after every write handed over so far."""
    await cache.flush()
    return await pool.fetch(
        f"SELECT sequence, stream_seq, hash, body FROM {cache.table} WHERE stream = $1 "
        "AND subject = $2 ORDER BY sequence", cached.topology.stream(CONTEXT),
        cached.topology.subject(CONTEXT, ref))


async def test_a_cached_load_equals_a_stream_load(cached, cache, pool):
    ref = CaseRef("jaksel", new_id())
    version = await write_case(cached, ref, 6)
    # a batch of two events in one append, too
    version = (await cached.append(CONTEXT, ref, [ev(Credited(amount=7, note="a")),
                                                  ev(Credited(amount=8, note="b"))],
                                   version)).version
    assert len(await copy_of(pool, cache, cached, ref)) == 9

    loaded = await cached.load(CONTEXT, ref)
    from_stream = await cached.load_from_stream(CONTEXT, ref)

    assert loaded.from_cache == 9 and loaded.messages_read == 1
    assert loaded.events == from_stream.events
    assert loaded.version == from_stream.version == version
    assert [e.data for e in loaded.events] == [e.data for e in from_stream.events]
    assert [e.body for e in loaded.events] == [e.body for e in from_stream.events]


async def test_a_tail_appended_by_another_writer_is_read_and_cached(cached, plain, cache, pool):
    ref = CaseRef("jaksel", new_id())
    version = await write_case(cached, ref, 4)
    await cache.flush()
    version = await write_case(plain, ref, 3, version)  # not through the cache

    loaded = await cached.load(CONTEXT, ref)
    assert [e.sequence for e in loaded.events] == list(range(1, 9))
    assert loaded.version == version
    assert loaded.from_cache == 5
    assert loaded.messages_read == 1 + 3  # the last message, then the three after the copy
    assert loaded.events == (await plain.load(CONTEXT, ref)).events

    assert [r["sequence"] for r in await copy_of(pool, cache, cached, ref)] == list(range(1, 9))
    again = await cached.load(CONTEXT, ref)
    assert again.from_cache == 8 and again.messages_read == 1
    assert again.events == loaded.events

    # one event more: the stream's last message is the whole tail
    version = await write_case(plain, ref, 1, version)
    one_more = await cached.load(CONTEXT, ref)
    assert one_more.from_cache == 8 and one_more.messages_read == 1
    assert one_more.version == version


@pytest.mark.parametrize("damage", ["tampered body", "deleted row", "another last event"])
async def test_an_altered_copy_falls_back_to_the_stream_and_is_repaired(cached, cache, pool,
                                                                        damage):
    ref = CaseRef("jaksel", new_id())
    await write_case(cached, ref, 5)
    truth = await copy_of(pool, cache, cached, ref)
    where = ("WHERE stream = $1 AND subject = $2 AND sequence = $3",
             cached.topology.stream(CONTEXT), cached.topology.subject(CONTEXT, ref))
    if damage == "tampered body":
        await pool.execute(f"UPDATE {cache.table} SET body = $4 {where[0]}", *where[1:], 3,
                           b'{"amount":1000000,"note":""}')
    elif damage == "deleted row":
        await pool.execute(f"DELETE FROM {cache.table} {where[0]}", *where[1:], 4)
    else:  # the copy's last event rewritten whole, its hash recomputed: the chain holds
        row = await pool.fetchrow(f"SELECT headers FROM {cache.table} {where[0]}", *where[1:], 6)
        headers = json.loads(row["headers"])
        body = b'{"amount":1000000,"note":""}'
        headers["ce-hash"] = chain_hash(headers["ce-prevhash"], headers["ce-id"],
                                        headers["ce-type"], headers["ce-time"], body)
        await pool.execute(f"UPDATE {cache.table} SET headers = $4::jsonb, body = $5 "
                           + where[0], *where[1:], 6, json.dumps(headers), body)

    loaded = await cached.load(CONTEXT, ref)

    assert loaded.from_cache == 0 and loaded.messages_read == 1 + 6
    assert loaded.events == (await cached.load_from_stream(CONTEXT, ref)).events
    assert [e.data.amount for e in loaded.events[1:]] == [1, 2, 3, 4, 5]
    repaired = await copy_of(pool, cache, cached, ref)
    assert [tuple(r) for r in repaired] == [tuple(r) for r in truth]
    after = await cached.load(CONTEXT, ref)
    assert after.from_cache == 6 and after.messages_read == 1


async def test_a_copy_whose_last_event_the_stream_does_not_hold_there_is_rewritten(
        cached, plain, cache, pool):
    """The copy ends where the stream holds another event (its last hash differs), and the
    stream has moved on: the tail does not link to the copy, so the stream is read whole."""
    ref = CaseRef("jaksel", new_id())
    version = await write_case(cached, ref, 2)
    await cache.flush()
    await write_case(plain, ref, 2, version)
    await pool.execute(
        f"UPDATE {cache.table} SET stream_seq = stream_seq - 1 WHERE stream = $1 AND "
        "subject = $2 AND sequence = 3", cached.topology.stream(CONTEXT),
        cached.topology.subject(CONTEXT, ref))

    loaded = await cached.load(CONTEXT, ref)

    assert loaded.from_cache == 0
    assert loaded.events == (await plain.load(CONTEXT, ref)).events
    assert [r["stream_seq"] for r in await copy_of(pool, cache, cached, ref)] == [
        e.stream_seq for e in loaded.events]


async def test_a_long_case_loads_by_reading_only_its_tail(cached, plain, cache, nc):
    ref = CaseRef("jaksel", new_id())
    opened = await cached.append(CONTEXT, ref, [ev(AccountOpened(owner="x"))],
                                 CaseVersion.new())
    version = opened.version
    for start in range(0, 300, 50):  # 301 events, more than one batched Direct Get holds
        version = (await cached.append(CONTEXT, ref, [
            ev(Credited(amount=i)) for i in range(start, start + 50)], version)).version
    await cache.flush()
    first = await cached.load(CONTEXT, ref)
    assert first.from_cache == 301 and first.messages_read == 1
    version = await write_case(plain, ref, 2, version)

    received_before = nc.stats["in_msgs"]
    loaded = await cached.load(CONTEXT, ref)
    received = nc.stats["in_msgs"] - received_before

    assert len(loaded.events) == 303 and loaded.version == version
    assert loaded.from_cache == 301 and loaded.messages_read == 1 + 2
    # on the wire: the last message, the two of the tail and the status ending their batch
    assert received == 4
    assert loaded.events == (await plain.load(CONTEXT, ref)).events


async def test_a_case_never_cached_is_copied_on_its_first_load(cached, plain, cache, pool):
    ref = CaseRef("jaksel", new_id())
    version = await write_case(plain, ref, 3)
    # an append through the cache to a case it holds nothing of stores nothing: the copy
    # would not start at the case's first event
    version = await write_case(cached, ref, 1, version)
    assert await copy_of(pool, cache, cached, ref) == []

    loaded = await cached.load(CONTEXT, ref)
    assert loaded.from_cache == 0 and loaded.version == version
    assert [r["sequence"] for r in await copy_of(pool, cache, cached, ref)] == [1, 2, 3, 4, 5]
    assert (await cached.load(CONTEXT, ref)).from_cache == 5


async def test_a_cache_that_cannot_be_reached_fails_neither_appends_nor_loads(
        nc, topology, streams, servers, plain):
    schema = topology.schema("cachetest")
    gone = await asyncpg.create_pool(servers.dsn, min_size=1, max_size=2)
    async with gone.acquire() as conn:
        await ensure_kernel_tables(conn, schema)
    cache = CaseCache(gone, schema)
    store = EventStore(nc, topology, EventCatalog(LEDGER), cache=cache)
    await gone.close()  # PostgreSQL is unreachable for this cache from now on

    ref = CaseRef("jaksel", new_id())
    version = await write_case(store, ref, 2)
    await cache.flush()
    loaded = await store.load(CONTEXT, ref)

    assert loaded.version == version and loaded.from_cache == 0
    assert loaded.events == (await plain.load(CONTEXT, ref)).events


async def test_every_service_loads_its_cases_through_its_cache(settings, streams):
    kernel = await Kernel.connect("ledgerview", settings, (LEDGER,))
    try:
        runner = kernel.command_runner(CONTEXT, Decider(ledger.Account(), ledger.decide,
                                                        ledger.evolve))
        ref = CaseRef("jaksel", new_id())
        await runner.run(ref, ledger.Open("x"), META)
        await runner.run(ref, ledger.Credit(5), META)
        await kernel.case_cache.flush()
        state, version, history = await runner.load_state(ref)
        assert state.balance == 5 and version.sequence == 2
        assert (await kernel.store.load(CONTEXT, ref)).from_cache == 2
        assert kernel.metrics.case_loads.labels(kernel.topology.stream(CONTEXT),
                                                "cache")._value.get() >= 1
    finally:
        await kernel.close()
