"""`bapas bench kernel`: the event kernel against raw nats-py and asyncpg, in one run.

Each of our figures is printed next to the raw operation it builds on, measured on the same
servers a moment earlier, and as a ratio to it (DESIGN §9). The raw side is given the same
bytes our store sends (the 1 KB `Noted` body and its CloudEvents headers, built before the
clock starts; only the expected-sequence header is ours alone), so a ratio below 1 is what
our Python does on top of the client: envelopes, hashes, pydantic, the projector's
checkpointing and decoding.

What is measured, in this order, on one stream (`<namespace>_BENCH`):

1. appends: await-each-ack publishes vs `EventStore.append` one event at a time; pipelined
   publishes (64 and 256 in flight) vs 64 cases appending in parallel, each carrying the
   version its last append returned. Alternating rounds, medians. Then, for information,
   the command runner (load, decide, append) and 5-event atomic batches.
2. projector: everything appended so far, consumed by `ProjectionRunner` with a one-row-per-
   case upsert until its checkpoint reaches the stream's last sequence, vs nats-py's pull
   consumer alone (the target: it carries the same messages), and for information vs
   asyncpg doing the same upserts in 256-event transactions and vs the fetch/commit/ack loop
   written by hand with nats-py and asyncpg. Then the same projection as a FastStream batch
   subscriber, against the same pull consume and against our projector (issue 11: the
   projector keeps its own loop only if FastStream's is slower for it).
3. case load: the stream is filled to `stream_size` events (cases of 5, interleaved as cases
   grow over time) and random cases are loaded with `EventStore.load`, each alternated with
   one raw batched Direct Get of the same case (the target, at p50 and p99). Then two cases
   of 200 events: one whose events lie across the whole fill (a case of many years), one
   appended in one go at its end. Both read 200 messages; what the first costs beyond the
   second grows with the stream, not with the case.
4. case cache (issue 14): the spread case loaded with and without the service's case cache
   (`shared.case_cache`: the copy in PostgreSQL and one last-message lookup on the stream),
   at `stream_size`; then the stream is filled on to `long_stream_size` events (1,000,000)
   and a second 200-event case, spread over all of it, is loaded the same way. The target:
   with the cache, p50 and p99 at 1,000,000 at most 1.2 times the same at 100,000. What
   the cache costs appends is measured in phase 1: the same appends through a store with
   the cache, its writes finished before the clock stops.

Fills are not measured: on our own servers nats-server runs them without
`sync_interval: always` and is restarted with it before anything is timed.

It is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any, NamedTuple, TypeVar

import asyncpg
import nats
from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from .. import natsfast
from ..case_cache import CaseCache
from ..db import ensure_kernel_tables, quote_ident
from ..decider import CommandRunner, Decider
from ..envelope import GENESIS_HASH, Envelope, ce_type, format_time
from ..events import Event, EventCatalog, EventRegistry, Metadata, NewEvent, RecordedEvent
from ..ids import new_id
from ..logging import configure_logging
from ..projector import ACK_POLICY, Handler, Projection, ProjectionRunner, Writer, stream_seq
from ..store import DIRECT_GET_BATCH, CaseVersion, EventStore, decode_message
from ..streams import CaseRef, Topology, ensure_streams
from ._common import (Endpoints, Figure, Stopwatch, Target, bench_servers, format_table,
                      machine_summary, percentile, progress, server_versions, set_nats_sync)

__all__ = ["run", "BENCH", "Noted"]

CONTEXT = "bench"
OFFICE = "jaksel"
BODY_BYTES = 1_000           # DESIGN §9 figures are for 1 KB events
EVENTS_PER_CASE = 5
PARALLEL_CASES = 64          # cases appending at once (DESIGN §9: "64 cases in parallel")
PIPELINE_DEPTHS = (64, 256)  # raw publishes in flight
BATCH_SIZE = 5               # events per atomic batch
BATCHES_IN_FLIGHT = 32       # the server allows about 50 open batches per stream
SEQUENTIAL_CAP = 3_000       # await-each-ack runs at 1,000-2,000/s: a few seconds
EXTRA_CAP = 5_000            # command runner and atomic batches: information only
LOAD_SAMPLES = 2_000
LOAD_WARMUP = 100
LONG_CASE_EVENTS = 200       # a case of many years, its events spread over the whole fill
LONG_SAMPLES = 100
LONG_STREAM_SIZE = 1_000_000  # where the case cache must keep a long case's load flat
CACHE_SAMPLES = 200           # loads of each kind (with, without the cache) per stream size
PROJECTION_BATCH = 256
# FastStream's batch subscriber holds a short batch until this wait is over (the projector
# takes what there is), so the run's last batch costs the FastStream figure this much.
FASTSTREAM_BATCH_WAIT = 0.1
FASTSTREAM_TIMEOUT = 300  # s
ROUNDS = 3                   # alternating raw/ours rounds per append comparison

TARGET_APPEND = Target(min_ratio=0.6)       # of pipelined publishes
TARGET_PROJECTOR = Target(min_ratio=1.0)    # of nats-py's pull consume of the same events
TARGET_LOAD = Target(max_ratio=1.25)        # of one batched Direct Get, at p50 and at p99
TARGET_FLAT = Target(max_ratio=1.2)         # cached long case at 1M, of the same at 100k

BENCH = EventRegistry(CONTEXT)


@BENCH.event()
class Noted(Event):
    """A note on a case: a body of exactly BODY_BYTES of JSON."""

    text: str


@dataclass(frozen=True, slots=True)
class Note:
    text: str


def _decide(command: Note, count: int) -> list[Event]:
    return [Noted(text=command.text)]


def _evolve(count: int, event: Event) -> int:
    return count + 1


NOTES = Decider(initial_state=0, decide=_decide, evolve=_evolve)

NOTES_TABLE = """CREATE TABLE {table} (
    client_id text PRIMARY KEY, count integer NOT NULL, last_seq bigint NOT NULL)"""
# The one statement both the projector and its raw reference run per event.
UPSERT = ("INSERT INTO {table} AS t (client_id, count, last_seq) VALUES ($1, 1, $2) "
          "ON CONFLICT (client_id) DO UPDATE SET count = t.count + 1, last_seq = EXCLUDED.last_seq")


class NotesPerCase(Projection):
    """How many notes each case holds: the simplest projection that writes one row per case."""

    name = "notes_per_case"
    version = 1
    contexts = (CONTEXT,)
    tables = {"notes_per_case": NOTES_TABLE}

    def handlers(self) -> dict[type[Event], Handler]:
        return {Noted: self.noted}

    async def noted(self, w: Writer, e: RecordedEvent[Noted]) -> None:
        w.execute(UPSERT.format(table="{notes_per_case}"), e.client_id, e.stream_seq)


@cache
def note_text() -> str:
    """Plain words padded so that the event's JSON body is exactly BODY_BYTES long."""
    overhead = len(Noted(text="").model_dump_json())
    words = "klien hadir tepat waktu dan kooperatif selama bimbingan "
    return (words * (BODY_BYTES // len(words) + 1))[:BODY_BYTES - overhead]


@cache
def note_body() -> bytes:
    body = Noted(text=note_text()).model_dump_json().encode()
    assert len(body) == BODY_BYTES
    return body


@cache
def bench_meta() -> Metadata:
    return Metadata(actor="bench", correlation_id=new_id())


# ----------------------------------------------------------------------- raw messages

RawMessage = tuple[str, bytes, dict[str, str]]


@dataclass(slots=True)
class RawCase:
    """Builds, event by event, the exact messages our store would send for one case (headers,
    sequence and hash chain), so raw publishes carry the same bytes and read back as events."""

    ref: CaseRef
    subject: str
    sequence: int = 0
    prevhash: str = GENESIS_HASH

    def next_message(self) -> RawMessage:
        self.sequence += 1
        meta = bench_meta()
        env = Envelope(id=new_id(), type=ce_type(Noted.event_type, Noted.event_version),
                       time=format_time(datetime.now(UTC)), office=self.ref.office,
                       context=CONTEXT, client_id=self.ref.client_id, sequence=self.sequence,
                       prevhash=self.prevhash, hash="", actor=meta.actor,
                       correlation_id=meta.correlation_id)
        env = replace(env, hash=env.computed_hash(note_body()))
        self.prevhash = env.hash
        return self.subject, note_body(), env.headers()


def case_refs(prefix: str, count: int) -> list[CaseRef]:
    return [CaseRef(OFFICE, f"{prefix}-{i:06d}") for i in range(count)]


def raw_cases(topology: Topology, refs: Iterable[CaseRef]) -> list[RawCase]:
    return [RawCase(ref, topology.subject(CONTEXT, ref)) for ref in refs]


def case_by_case(cases: Sequence[RawCase], per_case: int) -> list[RawMessage]:
    return [case.next_message() for case in cases for _ in range(per_case)]


def interleaved(cases: Sequence[RawCase], per_case: int) -> Iterator[RawMessage]:
    """Event 1 of every case, then event 2 of every case...: a case's events lie far apart in
    the stream, as they do when many cases grow over months. Built lazily (100k x 1.5 KB)."""
    for _ in range(per_case):
        for case in cases:
            yield case.next_message()


def spread_through(messages: Iterable[RawMessage], case: RawCase,
                   every: int) -> Iterator[RawMessage]:
    """`messages` with one event of `case` before every `every`-th of them (at most
    LONG_CASE_EVENTS): a long case whose events lie across the whole stream."""
    for i, m in enumerate(messages):
        if not i % every and case.sequence < LONG_CASE_EVENTS:
            yield case.next_message()
        yield m


def header_bytes(headers: dict[str, str]) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers.items())  # "k: v\r\n"


# ------------------------------------------------------------------------ concurrency

T = TypeVar("T")


async def in_parallel(items: Iterable[T], workers: int,
                      work: Callable[[T], Awaitable[Any]]) -> None:
    """Run `work` over `items` with at most `workers` in flight: one coroutine per slot,
    each taking the next item (cheaper than a task and a semaphore per item)."""
    shared = iter(items)

    async def worker() -> None:
        for item in shared:
            await work(item)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def publish_all(js: JetStreamContext, messages: Iterable[RawMessage],
                      in_flight: int) -> None:
    async def publish(m: RawMessage) -> None:
        await js.publish(m[0], m[1], headers=m[2])

    await in_parallel(messages, in_flight, publish)


# --------------------------------------------------------------------------- the run

@dataclass
class Bench:
    """The run's connections and everything later phases reuse from earlier ones."""

    endpoints: Endpoints
    nc: NATS
    js: JetStreamContext
    pool: asyncpg.Pool
    topology: Topology
    store: EventStore
    cache: CaseCache
    cached: EventStore  # the same store with the case cache, as every service runs it
    events: int
    stream_size: int
    long_stream_size: int
    figures: list[Figure] = field(default_factory=list)
    parallel_refs: list[CaseRef] = field(default_factory=list)
    # the 200-event cases spread over the stream: over `stream_size` ("spread") and over
    # `long_stream_size` ("far", whose events go on through the second fill)
    long_cases: dict[str, RawCase] = field(default_factory=dict)
    far_every: int = 0  # fill messages between two of the far case's events, in both fills

    @property
    def nats_url(self) -> str:
        return self.endpoints.nats_url

    @property
    def stream(self) -> str:
        return self.topology.stream(CONTEXT)

    @property
    def schema(self) -> str:
        return self.topology.schema(CONTEXT)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        raw = f" (raw {figure.raw_value:,.2f})" if figure.raw_value is not None else ""
        progress(f"{figure.name}: {figure.value:,.2f} {figure.unit}{raw}")

    async def stream_state(self) -> tuple[int, int]:
        """(messages, last sequence) of the bench stream."""
        info = await self.js.stream_info(self.stream)
        return info.state.messages, info.state.last_seq


def run(*, events: int = 20_000, stream_size: int = 100_000,
        long_stream_size: int = LONG_STREAM_SIZE) -> None:
    """Entry point of `bapas bench kernel`: prints the machine, the servers and the table."""
    configure_logging("bench", fmt="console", level="warning")
    natsfast.install()  # as every service runs; raw and ours share the one client library
    events = max(events, PARALLEL_CASES * EVENTS_PER_CASE)
    try:
        with bench_servers() as endpoints:
            asyncio.run(_run(endpoints, events, stream_size, long_stream_size))
    except KeyboardInterrupt:
        print("interrupted: servers stopped, nothing left running", file=sys.stderr)
        raise SystemExit(130) from None


async def _run(endpoints: Endpoints, events: int, stream_size: int,
               long_stream_size: int) -> None:
    topology = Topology(f"bench_{secrets.token_hex(4)}")
    # reconnects ride over the restarts around the fills (set_nats_sync)
    nc = await nats.connect(endpoints.nats_url, max_reconnect_attempts=-1,
                            reconnect_time_wait=0.2, pending_size=32 * 1024 * 1024)
    pool = await asyncpg.create_pool(endpoints.dsn, min_size=2, max_size=10)
    cache = CaseCache(pool, topology.schema(CONTEXT))
    bench = Bench(endpoints, nc, nc.jetstream(), pool, topology,
                  EventStore(nc, topology, EventCatalog(BENCH)), cache,
                  EventStore(nc, topology, EventCatalog(BENCH), cache=cache), events,
                  stream_size, long_stream_size)
    try:
        async with pool.acquire() as conn:
            await ensure_kernel_tables(conn, bench.schema)
        async with pool.acquire() as conn:
            versions = await server_versions(endpoints.monitor_url, conn)
        sample = RawCase(CaseRef(OFFICE, "sample"), "sample").next_message()
        sync = {True: "sync_interval: always", False: "NOT sync always",
                None: "sync unknown"}[versions.sync_always]
        print("bapas bench kernel")
        print(f"  machine     {machine_summary()}")
        print(f"  nats-server {versions.nats} ({sync}; {endpoints.source})")
        print(f"  postgresql  {versions.postgres}")
        print(f"  event       {len(sample[1]):,} B JSON body + {header_bytes(sample[2]):,} B "
              f"CloudEvents headers")
        sizes = (f"{stream_size:,}" if long_stream_size <= stream_size
                 else f"{stream_size:,} and {long_stream_size:,}")
        print(f"  run         {events:,} events per append run, {sizes}-event stream "
              f"for case loads", flush=True)
        await ensure_streams(bench.js, topology, contexts=(CONTEXT,))
        await bench_appends(bench)
        await bench_projector(bench)
        await bench_case_load(bench)
        await bench_long_stream(bench)
        print()
        print(format_table(bench.figures))
        print("\nratio = ours / raw: for rates the share of the raw rate we keep, for latencies "
              "how many times the raw latency we take.")
    finally:
        if endpoints.shared:  # someone else's servers: leave them as we found them
            with contextlib.suppress(Exception):
                await bench.js.delete_stream(bench.stream)
            with contextlib.suppress(Exception):
                async with pool.acquire() as conn:
                    await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(bench.schema)} "
                                       "CASCADE")
        await pool.close()
        await nc.close()


# ----------------------------------------------------------------------------- appends

async def bench_appends(b: Bench) -> None:
    """Each comparison runs in ROUNDS alternating rounds (raw, ours, raw, ours...) and reports
    medians: the fsync-bound rates drift with the disk and the growing stream, and a single
    back-to-back pair would credit that drift to whichever side ran second."""
    store, js, meta = b.store, b.js, bench_meta()
    seq_cases = max(1, min(b.events, SEQUENTIAL_CAP) // EVENTS_PER_CASE // ROUNDS)
    par_cases = max(PARALLEL_CASES, b.events // EVENTS_PER_CASE // ROUNDS)

    async def append_case(ref: CaseRef, store: EventStore = store) -> None:
        """One case's events one at a time, each expecting the version the last one returned
        (what a busy case sees when no one else writes to it)."""
        version = CaseVersion.new()
        for _ in range(EVENTS_PER_CASE):
            result = await store.append(
                CONTEXT, ref, [NewEvent(new_id(), Noted(text=note_text()), datetime.now(UTC),
                                        meta)], version)
            version = result.version

    async def raw_rate(prefix: str, n_cases: int, in_flight: int) -> float:
        messages = case_by_case(raw_cases(b.topology, case_refs(prefix, n_cases)),
                                EVENTS_PER_CASE)
        with Stopwatch() as sw:
            await publish_all(js, messages, in_flight)
        return sw.rate(len(messages))

    async def ours_rate(refs: list[CaseRef], parallel: int) -> float:
        with Stopwatch() as sw:
            await in_parallel(refs, parallel, append_case)
        return sw.rate(len(refs) * EVENTS_PER_CASE)

    async def cached_rate(refs: list[CaseRef], parallel: int) -> float:
        """The same through the store with the case cache; the clock stops when the cache
        has written every appended event (its writes go behind the appends)."""
        with Stopwatch() as sw:
            await in_parallel(refs, parallel, lambda ref: append_case(ref, b.cached))
            await b.cache.flush()
        return sw.rate(len(refs) * EVENTS_PER_CASE)

    # warm both paths up (connections, inboxes, the stream's first block)
    await raw_rate("warm", 10, 1)
    await ours_rate(case_refs("warmstore", 4), 1)
    await cached_rate(case_refs("warmcache", 4), 1)

    rates: dict[str, list[float]] = {}
    for r in range(ROUNDS):
        rates.setdefault("raw", []).append(await raw_rate(f"rs{r}", seq_cases, 1))
        rates.setdefault("ours", []).append(
            await ours_rate(case_refs(f"os{r}", seq_cases), 1))
        rates.setdefault("cached", []).append(
            await cached_rate(case_refs(f"cs{r}", seq_cases), 1))
    b.add(Figure("append, one event at a time", median_of("ours", rates), "events/s",
                 "js.publish, await each ack", median_of("raw", rates), TARGET_APPEND))
    b.add(Figure("append, one event at a time, with case cache", median_of("cached", rates),
                 "events/s", "the same without the cache", median_of("ours", rates)))

    rates = {}
    for r in range(ROUNDS):
        for depth in PIPELINE_DEPTHS:
            rates.setdefault(f"raw{depth}", []).append(
                await raw_rate(f"rp{depth}x{r}", par_cases, depth))
        refs = case_refs(f"op{r}", par_cases)
        b.parallel_refs.extend(refs)
        rates.setdefault("ours", []).append(await ours_rate(refs, PARALLEL_CASES))
        rates.setdefault("cached", []).append(
            await cached_rate(case_refs(f"cp{r}", par_cases), PARALLEL_CASES))
    ours_parallel = median_of("ours", rates)
    pipelined = {depth: median_of(f"raw{depth}", rates) for depth in PIPELINE_DEPTHS}
    # Held to the target against the better raw pipeline, whichever depth that was; the
    # other depth is printed for context.
    best = max(pipelined, key=lambda d: pipelined[d])
    for depth in sorted(PIPELINE_DEPTHS, key=lambda d: d != best):
        b.add(Figure(f"append, {PARALLEL_CASES} cases in parallel", ours_parallel, "events/s",
                     f"js.publish, {depth} in flight", pipelined[depth],
                     TARGET_APPEND if depth == best else None))
    b.add(Figure(f"append, {PARALLEL_CASES} cases in parallel, with case cache",
                 median_of("cached", rates), "events/s", "the same without the cache",
                 ours_parallel))
    async with b.pool.acquire() as conn:
        copied = await conn.fetchval(f"SELECT count(*) FROM {b.cache.table} WHERE subject LIKE "
                                     "'%.cp%' OR subject LIKE '%.cs%'")
    expected = (ROUNDS * (par_cases + seq_cases)) * EVENTS_PER_CASE
    if copied != expected:
        print(f"WARNING: the case cache holds {copied} of the {expected} events appended "
              "through it", file=sys.stderr)

    runner = CommandRunner(store, CONTEXT, NOTES)
    n_cmd_cases = min(b.events, EXTRA_CAP) // EVENTS_PER_CASE

    async def command_case(ref: CaseRef) -> None:
        for _ in range(EVENTS_PER_CASE):
            await runner.run(ref, Note(note_text()), meta)

    with Stopwatch() as sw:
        await in_parallel(case_refs("cr", n_cmd_cases), PARALLEL_CASES, command_case)
    b.add(Figure(f"command runner (load, decide, append), {PARALLEL_CASES} cases",
                 sw.rate(n_cmd_cases * EVENTS_PER_CASE), "events/s",
                 f"js.publish, {best} in flight", pipelined[best]))

    n_batches = min(b.events, EXTRA_CAP) // BATCH_SIZE

    async def append_batch(ref: CaseRef) -> None:
        now = datetime.now(UTC)
        await store.append(CONTEXT, ref, [NewEvent(new_id(), Noted(text=note_text()), now, meta)
                                          for _ in range(BATCH_SIZE)], CaseVersion.new())

    with Stopwatch() as sw:
        await in_parallel(case_refs("ab", n_batches), BATCHES_IN_FLIGHT, append_batch)
    b.add(Figure(f"atomic batches of {BATCH_SIZE}, {BATCHES_IN_FLIGHT} in flight",
                 sw.rate(n_batches * BATCH_SIZE), "events/s",
                 f"js.publish, {best} in flight", pipelined[best]))


def median_of(name: str, rates: dict[str, list[float]]) -> float:
    """The median of one kind's rounds; every round shows in the progress lines."""
    values = rates[name]
    progress(f"  {name}: " + " / ".join(f"{v:,.0f}" for v in values) + " per round")
    return statistics.median(values)


# --------------------------------------------------------------------------- projector

async def bench_projector(b: Bench) -> None:
    """The projector over every event appended so far, against three raw references: nats-py's
    pull consumer alone (the target: the projector cannot deliver events faster than they
    are consumed), asyncpg alone, and the two chained by hand in the loop the projector runs,
    without decoding, handlers or held-case checks."""
    total, last_seq = await b.stream_state()
    progress(f"projecting the {total:,} events appended so far")
    async with b.pool.acquire() as conn:
        await ensure_kernel_tables(conn, b.schema)

    async with pull_consumer(b, "raw_pull") as psub:
        rows: list[tuple[str, int]] = []  # (client_id, stream sequence): the upserts' arguments
        with Stopwatch() as sw:
            while len(rows) < total:
                msgs = await psub.fetch(PROJECTION_BATCH, timeout=5)
                rows.extend((m.subject.rsplit(".", 1)[1], m.metadata.sequence.stream)
                            for m in msgs)
                await msgs[-1].ack()
        pull_rate = sw.rate(len(rows))

    async with b.pool.acquire() as conn:
        sql = await raw_tables(conn, b.schema, "raw_db")
        with Stopwatch() as sw:
            for i in range(0, len(rows), PROJECTION_BATCH):
                batch = rows[i:i + PROJECTION_BATCH]
                async with conn.transaction():
                    await conn.executemany(sql.upsert, batch)
                    await conn.execute(sql.save_checkpoint, batch[-1][1])
        db_rate = sw.rate(len(rows))

    async with b.pool.acquire() as conn, pull_consumer(b, "raw_loop") as psub:
        sql = await raw_tables(conn, b.schema, "raw_loop")
        with Stopwatch() as sw:
            done = 0
            while done < total:
                msgs = await psub.fetch(PROJECTION_BATCH, timeout=5)
                batch = [(m.subject.rsplit(".", 1)[1], m.metadata.sequence.stream) for m in msgs]
                async with conn.transaction():
                    await conn.executemany(sql.upsert, batch)
                    await conn.execute(sql.save_checkpoint, batch[-1][1])
                await msgs[-1].ack()  # only after the commit, as the projector does
                done += len(msgs)
        loop_rate = sw.rate(done)

    runner = ProjectionRunner(NotesPerCase(), nc=b.nc, pool=b.pool, topology=b.topology,
                              schema=b.schema, catalog=EventCatalog(BENCH),
                              batch_size=PROJECTION_BATCH)
    with Stopwatch() as sw:
        task = asyncio.create_task(runner.run(), name="bench-projection")
        try:
            await wait_for_checkpoint(b, runner, last_seq, task)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    ours = sw.rate(total)
    faststream = await faststream_rate(b, total, last_seq)

    name = f"projector, upsert per case, batches of {PROJECTION_BATCH}"
    pull_name = f"nats-py pull consume, fetch {PROJECTION_BATCH}, ack last"
    faststream_name = "projector on FastStream batch subscriber"
    b.add(Figure(name, ours, "events/s", pull_name, pull_rate, TARGET_PROJECTOR))
    b.add(Figure(faststream_name, faststream, "events/s", pull_name, pull_rate))
    b.add(Figure(name, ours, "events/s", faststream_name, faststream))
    b.add(Figure(name, ours, "events/s", f"asyncpg executemany, {PROJECTION_BATCH}/transaction",
                 db_rate))
    b.add(Figure(name, ours, "events/s", "fetch+transaction+ack loop by hand", loop_rate))
    async with b.pool.acquire() as conn:
        for table in ("notes_per_case", "faststream"):
            projected = await conn.fetchval(
                f"SELECT sum(count) FROM {quote_ident(b.schema)}.{quote_ident(table)}")
            if projected != total:
                print(f"WARNING: {table} counted {projected} events of {total}",
                      file=sys.stderr)


async def faststream_rate(b: Bench, total: int, last_seq: int) -> float:
    """Events/s of the projection's work done in a FastStream batch subscriber: for each
    fetched batch one transaction that skips events at or below the checkpoint, decodes
    the others as the projector does and upserts a row per case, then the ack of the last
    message. Measured from the broker's start until the checkpoint reaches `last_seq`."""
    catalog = EventCatalog(BENCH)
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def raw_messages(message: StreamMessage[list[Msg]]) -> list[Msg]:
        # FastStream's own decoder would json-load every body before the handler: the
        # handler takes nats-py's messages as the projector does
        return message.raw_message

    async with b.pool.acquire() as conn:
        sql = await raw_tables(conn, b.schema, "faststream")

    async def project(msgs) -> None:  # unannotated: see the subscriber below
        try:
            async with b.pool.acquire() as conn, conn.transaction():
                position = await conn.fetchval(sql.read_checkpoint)
                events = [decode_message(catalog, b.topology, b.stream, m.subject, seq,
                                         m.headers, m.data)
                          for m in msgs if (seq := stream_seq(m)) > position]
                await conn.executemany(sql.upsert, [(e.client_id, e.stream_seq) for e in events])
                await conn.execute(sql.save_checkpoint, stream_seq(msgs[-1]))
            await msgs[-1].ack()  # only after the commit, as the projector does
        except Exception as exc:
            if not finished.done():  # FastStream would only log it and fetch on
                finished.set_exception(exc)
            raise
        if stream_seq(msgs[-1]) >= last_seq and not finished.done():
            finished.set_result(None)

    # The durable consumer is ours, so that FastStream binds to the projector's settings
    # instead of creating its own; declare=False leaves the stream's settings alone.
    async with durable_consumer(b, "faststream") as durable:
        broker = NatsBroker(b.nats_url, logger=logging.getLogger("bench.faststream"))
        # Manual acks: the default policy would terminate a batch whose handler failed.
        # Unannotated, the handler is given the decoder's list as it is (FastStream would
        # validate an annotated one with pydantic). It logs through the bench's logging,
        # which shows its warnings and errors only.
        broker.subscriber(
            b.topology.context_filter(CONTEXT), durable=durable,
            stream=JStream(name=b.stream, declare=False),
            pull_sub=PullSub(batch_size=PROJECTION_BATCH, timeout=FASTSTREAM_BATCH_WAIT,
                             batch=True),
            ack_policy=AckPolicy.MANUAL, decoder=raw_messages)(project)
        try:
            with Stopwatch() as sw:
                await broker.start()
                # a failure outside the handler is only logged, and nothing would end the wait
                await asyncio.wait_for(finished, FASTSTREAM_TIMEOUT)
        finally:
            await broker.stop()
    return sw.rate(total)


@contextlib.asynccontextmanager
async def durable_consumer(b: Bench, name: str) -> AsyncIterator[str]:
    """A durable pull consumer over the whole bench stream, configured as the projector's own
    (one ack for each batch, 4 batches pending at most); its name, and removed afterwards."""
    durable = b.topology.durable(CONTEXT, name)
    await b.js.add_consumer(b.stream, ConsumerConfig(
        durable_name=durable, filter_subject=b.topology.context_filter(CONTEXT),
        ack_policy=ACK_POLICY, deliver_policy=DeliverPolicy.ALL,
        max_ack_pending=PROJECTION_BATCH * 4))
    try:
        yield durable
    finally:
        await b.js.delete_consumer(b.stream, durable)


@contextlib.asynccontextmanager
async def pull_consumer(b: Bench, name: str) -> AsyncIterator[JetStreamContext.PullSubscription]:
    """nats-py's pull subscription on a `durable_consumer`."""
    async with durable_consumer(b, name) as durable:
        psub = await b.js.pull_subscribe_bind(durable=durable, stream=b.stream)
        try:
            yield psub
        finally:
            await psub.unsubscribe()


class RawStatements(NamedTuple):
    upsert: str
    save_checkpoint: str
    read_checkpoint: str  # and lock it until the transaction ends, as the projector does


async def raw_tables(conn: asyncpg.Connection, schema: str, name: str) -> RawStatements:
    """A copy of the projection's table and a checkpoint row for a raw run."""
    s = quote_ident(schema)
    table, checkpoints = f"{s}.{quote_ident(name)}", f"{s}.{quote_ident(name + '_checkpoint')}"
    await conn.execute(NOTES_TABLE.format(table=table))
    await conn.execute(f"CREATE TABLE {checkpoints} (name text PRIMARY KEY, position bigint)")
    await conn.execute(f"INSERT INTO {checkpoints} VALUES ('raw', 0)")
    return RawStatements(
        UPSERT.format(table=table),
        f"UPDATE {checkpoints} SET position = $1 WHERE name = 'raw'",
        f"SELECT position FROM {checkpoints} WHERE name = 'raw' FOR UPDATE")


async def wait_for_checkpoint(b: Bench, runner: ProjectionRunner, last_seq: int,
                              task: asyncio.Task[None]) -> None:
    """Until the projection's committed checkpoint reaches the stream's last sequence: the
    moment a reader could see every event. The runner survives its own errors by restarting,
    so an error it reports ends the wait instead of hanging the benchmark."""
    s = quote_ident(b.schema)
    async with b.pool.acquire() as conn:
        while True:
            position = await conn.fetchval(
                f"SELECT max(position) FROM {s}.projection_checkpoints WHERE projection = $1",
                runner.name)
            if position is not None and position >= last_seq:
                return
            if task.done():
                task.result()
                raise RuntimeError("the projection runner stopped before catching up")
            if runner.status.last_error:
                raise RuntimeError(f"the projection runner failed: {runner.status.last_error}")
            await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- case load

async def bench_case_load(b: Bench) -> None:
    """Random cases loaded from a stream of `stream_size` events, ours and raw alternately."""
    messages, _ = await b.stream_state()
    # the same kind of case while the stream is smaller, to set against the full stream
    early = await time_loads(b, random.Random(1).sample(b.parallel_refs,
                                                        min(500, len(b.parallel_refs))))
    early_messages = messages

    missing = max(0, b.stream_size - messages)
    fill_refs: list[CaseRef] = []
    spread, burst, far = raw_cases(b.topology, case_refs("long", 3))
    if missing > 2 * LONG_CASE_EVENTS:
        n_fill = missing - 2 * LONG_CASE_EVENTS  # the rest: the two long cases
        fill_refs = case_refs("c", -(-n_fill // EVENTS_PER_CASE))
        cases = raw_cases(b.topology, fill_refs)
        fill: Iterable[RawMessage] = spread_through(
            itertools.islice(interleaved(cases, EVENTS_PER_CASE), n_fill), spread,
            n_fill // LONG_CASE_EVENTS)
        b.long_cases["spread"] = spread
        if b.long_stream_size > b.stream_size:  # its first events, before the second fill
            b.long_cases["far"] = far
            b.far_every = max(1, (b.long_stream_size - messages) // LONG_CASE_EVENTS)
            fill = spread_through(fill, far, b.far_every)
        await fill_stream(b, itertools.chain(fill, case_by_case([burst], LONG_CASE_EVENTS)),
                          b.stream_size)
    messages, _ = await b.stream_state()

    pool_refs = fill_refs or b.parallel_refs
    times = await time_loads(b, random.Random(2).sample(pool_refs,
                                                        min(LOAD_SAMPLES, len(pool_refs))))
    mean_reads = sum(times.reads) / len(times.reads)
    name = f"case load, {mean_reads:.1f} events, {messages:,}-event stream"
    raw_name = "one batched Direct Get"
    b.add(Figure(f"{name}, p50", percentile(times.ours, 0.5), "ms", raw_name,
                 percentile(times.raw, 0.5), TARGET_LOAD))
    b.add(Figure(f"{name}, p99", percentile(times.ours, 0.99), "ms", raw_name,
                 percentile(times.raw, 0.99), TARGET_LOAD))
    b.add(Figure(f"case load, {EVENTS_PER_CASE} events, {early_messages:,}-event stream, p50",
                 percentile(early.ours, 0.5), "ms", raw_name, percentile(early.raw, 0.5)))
    b.add(Figure(f"messages read per load, {messages:,}-event stream", mean_reads, "msgs"))
    if fill_refs:
        check = await b.store.verify(CONTEXT, spread.ref)
        if not check.intact:  # its events were published far apart; they should stay in order
            print(f"WARNING: the spread case's chain is broken: {check.detail}", file=sys.stderr)
        for case, how in ((spread, "spread over the stream"), (burst, "appended in one go")):
            times = await time_loads(b, [case.ref] * LONG_SAMPLES, warmup=5)
            name = f"case load, {case.sequence} events {how}"
            b.add(Figure(f"{name}, p50", percentile(times.ours, 0.5), "ms", raw_name,
                         percentile(times.raw, 0.5)))
            b.add(Figure(f"{name}, p99", percentile(times.ours, 0.99), "ms", raw_name,
                         percentile(times.raw, 0.99)))


async def fill_stream(b: Bench, fill: Iterable[RawMessage], goal: int) -> None:
    """Publish `fill` (pipelined, each acknowledged), not measured: on our own servers
    without `sync_interval: always`, restored before anything is timed."""
    before, _ = await b.stream_state()
    async with unsynced(b):
        reporter = asyncio.create_task(report_fill(b, goal))
        try:
            with Stopwatch() as sw:
                await publish_all(b.js, fill, max(PIPELINE_DEPTHS))
        finally:
            reporter.cancel()
    after, _ = await b.stream_state()
    progress(f"filled the stream with {after - before:,} events in {sw.seconds:.1f} s "
             f"({sw.rate(after - before):,.0f}/s)")


@contextlib.asynccontextmanager
async def unsynced(b: Bench) -> AsyncIterator[None]:
    """Our own nats-server restarted without `sync_interval: always` for the block, and
    with it after (a fill of a million events at one fsync each takes minutes); someone
    else's servers as they are. The client reconnects by itself; we wait for it."""
    if not set_nats_sync(b.endpoints, False):
        yield
        return
    await reconnected(b)
    try:
        yield
    finally:
        set_nats_sync(b.endpoints, True)
        await reconnected(b)


async def reconnected(b: Bench, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await b.js.stream_info(b.stream)
            return
        except Exception:  # noqa: BLE001 - not connected again yet, or JetStream recovering
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def report_fill(b: Bench, goal: int) -> None:
    while True:
        await asyncio.sleep(5)
        messages, _ = await b.stream_state()
        progress(f"filling: {messages:,} / {goal:,} events")


async def bench_long_stream(b: Bench) -> None:
    """A 200-event case spread over the stream, loaded with and without the case cache, at
    `stream_size` events and again, a second such case, at `long_stream_size`."""
    spread = b.long_cases.get("spread")
    if spread is None:
        return
    small, _ = await b.stream_state()
    at_small = await time_cache(b, spread.ref)
    report_cache(b, at_small, small)
    far = b.long_cases.get("far")
    if far is None:
        return
    # the second fill: more cases of five, the far case's events on through them
    n_fill = max(0, b.long_stream_size - small - (LONG_CASE_EVENTS - far.sequence))
    refs = case_refs("d", -(-n_fill // EVENTS_PER_CASE))
    fill = spread_through(itertools.islice(interleaved(raw_cases(b.topology, refs),
                                                       EVENTS_PER_CASE), n_fill),
                          far, b.far_every)
    # whatever of its 200 the spacing left over, at the end
    await fill_stream(b, itertools.chain(fill, _rest_of(far)), b.long_stream_size)
    large, _ = await b.stream_state()
    if far.sequence != LONG_CASE_EVENTS:
        print(f"WARNING: the far case holds {far.sequence} events", file=sys.stderr)
    at_large = await time_cache(b, far.ref)
    report_cache(b, at_large, large)
    what = f"{LONG_CASE_EVENTS} events spread over the stream"
    for q in (50, 99):
        b.add(Figure(f"case load with case cache, {what}, p{q} at {large:,}", at_large.p(
            "cached", q), "ms", f"the same at {small:,}", at_small.p("cached", q),
            TARGET_FLAT))
    for q in (50, 99):
        b.add(Figure(f"case load without cache, {what}, p{q} at {large:,}", at_large.p(
            "plain", q), "ms", f"the same at {small:,}", at_small.p("plain", q)))


def _rest_of(case: RawCase) -> Iterator[RawMessage]:
    while case.sequence < LONG_CASE_EVENTS:
        yield case.next_message()


@dataclass
class CacheTimes:
    plain: list[float]   # ms, sorted: EventStore.load without the cache
    cached: list[float]  # ms, sorted: with it
    reads: list[int]     # messages read from the stream by each cached load
    from_cache: list[int]
    events: int

    def p(self, kind: str, q: int) -> float:
        return percentile(getattr(self, kind), q / 100)


async def time_cache(b: Bench, ref: CaseRef, samples: int = CACHE_SAMPLES) -> CacheTimes:
    """The case loaded by the store without the cache and by the store with it, one load
    at a time, which goes first alternating. The first cached load copies the case."""
    first = await b.cached.load(CONTEXT, ref)
    await b.cache.flush()
    for _ in range(5):
        await b.store.load(CONTEXT, ref)
        await b.cached.load(CONTEXT, ref)
    t = CacheTimes([], [], [], [], len(first.events))

    async def timed(store: EventStore) -> None:
        started = time.perf_counter()
        loaded = await store.load(CONTEXT, ref)
        ms = (time.perf_counter() - started) * 1000
        if store is b.cached:
            t.cached.append(ms)
            t.reads.append(loaded.messages_read)
            t.from_cache.append(loaded.from_cache)
        else:
            t.plain.append(ms)
        if len(loaded.events) != t.events:
            raise RuntimeError(f"a load of {ref.client_id} held {len(loaded.events)} events, "
                               f"not {t.events}")

    for i in range(samples):
        for store in ((b.store, b.cached) if i % 2 else (b.cached, b.store)):
            await timed(store)
    t.plain.sort()
    t.cached.sort()
    return t


def report_cache(b: Bench, t: CacheTimes, messages: int) -> None:
    name = f"case load, {t.events} events spread over {messages:,}-event stream"
    for q in (50, 99):
        b.add(Figure(f"{name}, without cache, p{q}", t.p("plain", q), "ms"))
    for q in (50, 99):
        b.add(Figure(f"{name}, with case cache, p{q}", t.p("cached", q), "ms",
                     "the same without cache", t.p("plain", q)))
    b.add(Figure(f"{name}, with case cache: stream messages read per load",
                 statistics.mean(t.reads), "msgs"))
    b.add(Figure(f"{name}, with case cache: events from the cache per load",
                 statistics.mean(t.from_cache), "events"))


@dataclass
class LoadTimes:
    ours: list[float]  # ms, sorted
    raw: list[float]   # ms, sorted
    reads: list[int]   # messages read by each of our loads


async def time_loads(b: Bench, refs: Sequence[CaseRef], warmup: int = LOAD_WARMUP) -> LoadTimes:
    """`EventStore.load` and a raw batched Direct Get of each case, one load at a time.

    Both load every case, in alternating order: whichever goes first warms the server's
    cache for the other, so alternating shares that advantage, and both meet the same
    background (a fsync, autovacuum) within a millisecond of each other.

    The raw side takes its messages in a subscription callback until the 204 that ends the
    batch, as the store does; nats-py's `next_msg` starts a task per message and would
    flatter us.
    """
    inbox = b.nc.new_inbox()
    api = f"$JS.API.DIRECT.GET.{b.stream}"
    received: list[Msg] = []
    done: asyncio.Future[None] | None = None

    async def on_message(msg: Msg) -> None:
        if msg.headers and msg.headers.get("Status"):
            if done is not None and not done.done():
                done.set_result(None)
        else:
            received.append(msg)

    async def raw_load(ref: CaseRef) -> float:
        nonlocal done
        started = time.perf_counter()
        received.clear()
        done = asyncio.get_running_loop().create_future()
        request = {"seq": 1, "next_by_subj": b.topology.subject(CONTEXT, ref),
                   "batch": DIRECT_GET_BATCH}
        await b.nc.publish(api, json.dumps(request).encode(), reply=inbox)
        await asyncio.wait_for(done, 5)
        return (time.perf_counter() - started) * 1000

    async def our_load(ref: CaseRef) -> tuple[float, int]:
        started = time.perf_counter()
        loaded = await b.store.load(CONTEXT, ref)
        return (time.perf_counter() - started) * 1000, loaded.messages_read

    sub = await b.nc.subscribe(inbox, cb=on_message)
    try:
        for ref in refs[:warmup]:
            await our_load(ref)
            await raw_load(ref)
        times = LoadTimes([], [], [])
        for i, ref in enumerate(refs):
            if i % 2:
                times.raw.append(await raw_load(ref))
            ours, reads = await our_load(ref)
            times.ours.append(ours)
            times.reads.append(reads)
            if not i % 2:
                times.raw.append(await raw_load(ref))
    finally:
        await sub.unsubscribe()
    times.ours.sort()
    times.raw.sort()
    return times
