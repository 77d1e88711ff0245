"""`bapas bench audit`: one client's history among a million stored events, ours against raw.

The store is filled with valid bapas events of the three case contexts (registration,
guidance, supervision) for many clients, five events each, interleaved as cases grow side
by side over months, and with three long cases of `case_events` events each, in the
target's office. The spread case, the one the target is about, is appended all through the
fill, one event every few thousand, so its events lie far apart in every stream, as a
case's do after years beside many others. The burst case, the same events, is appended in
one go at the end: it tells what the same history costs when its events lie together. The
old case, the same events again, is appended in one go at the start, as a case closed years
ago: nothing of it lies near the end of the streams. All three are appended with
`EventStore.append`; the bulk carries the same CloudEvents headers and hash
chains, built with the same envelope code, so every message reads back as an event.

The fill is not what is measured. A million appends at one fsync each would take many
minutes (about 900 core publishes/s were stored here under `sync_interval: always`), so on
our own servers nats-server is restarted without it for the fill, the bulk goes as core
NATS publishes (no acks) whose count in the streams says when they are stored, and the
server is restarted with the shipped profile before anything is measured. On someone else's
servers (BAPAS_* URLs) the fill runs at whatever their fsync allows.

Then the audit service runs in this process (`Kernel.connect`, `build_app`, its projections
started, uvicorn on a loopback port), its client index and event index (where each event
lies, and a copy of it) read the streams, and nine reads are timed in rotating order, so
that they share conditions:

- HTTP history (ours): GET /v1/audit/clients/{id}/history of the spread case: the client
  index lookup, the case's events from the audit's copy, each decoded and its link
  checked, the merge by time, the JSON answer;
- `history()` in-process: the same without the client lookup, HTTP or JSON;
- raw copy: the same rows with a plain asyncpg query, nothing decoded;
- raw by seq: the same events read back from the streams by sequence with plain nats-py
  requests (what verify and export do);
- raw by subject: the three subjects walked with batched Direct Gets (what reading a case
  by its subject costs: it grows with how much of the stream the case spans);
- HTTP history and raw by subject of the burst case and of the old case.

Besides latencies, the CPU each kind of read costs this process and nats-server is
reported: on a shared machine wall times move with the neighbours' load, CPU much less.

It is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache

import asyncpg
import httpx
import nats
import uvicorn
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from uuid_utils import uuid7

from services.audit.app import definition as audit_service
from services.audit.history import CASE_CONTEXTS, history
from services.audit.projections import EventIndex
from services.guidance import events as gd
from services.registration import events as rg
from services.supervision import events as sv

from .. import natsfast
from ..db import quote_ident
from ..envelope import GENESIS_HASH, Envelope, ce_type, chain_hash, format_time
from ..events import Event, EventCatalog, Metadata, NewEvent
from ..ids import new_id
from ..local.servers import free_port
from ..logging import configure_logging
from ..runtime import Kernel, settle_heap, started
from ..settings import Settings
from ..store import DIRECT_GET_BATCH, CaseVersion, EventStore
from ..streams import CONTEXT_STREAMS, CaseRef, Topology, ensure_streams
from ._common import (
    Endpoints,
    Figure,
    Stopwatch,
    Target,
    bench_servers,
    format_table,
    machine_summary,
    percentile,
    progress,
    server_versions,
    set_nats_sync,
)

__all__ = ["run"]

OFFICE = "jaksel"                  # the target's office
OFFICES = ("jaksel", "jakpus", "jaktim", "bandung", "surabaya")  # the bulk's, in turn
SPREAD = CaseRef(OFFICE, "audit-spread-0001")  # the target: appended all through the fill
BURST = CaseRef(OFFICE, "audit-burst-0001")    # the same events, appended in one go at the end
OLD = CaseRef(OFFICE, "audit-old-0001")        # the same events, in one go at the start
LONG_CASES = (SPREAD, BURST, OLD)
EVENTS_PER_CLIENT = 5              # registration 1, guidance 2, supervision 2
SAMPLES = 300                      # per figure, after the warm-up
WARMUP = 20
FLUSH_EVERY = 5_000                # core publishes between PINGs (back-pressure)
REPORT_EVERY = 100_000
STORE_TIMEOUT_S = 60.0             # no progress for this long: stop waiting for the fill
TARGET_P99_MS = Target(max_value=50.0)
CASE_START = datetime(2025, 1, 6, 1, 30, tzinfo=UTC)
CASE_STEP = timedelta(days=3, hours=1, minutes=7)   # between two of the target's events

META = Metadata(actor="pk-0007", correlation_id="0199b3a0-0000-7000-8000-000000000001")


# ------------------------------------------------------------------------------ bodies

def _registered(client_id: str, office: str, at: datetime) -> rg.ClientRegistered:
    start = at.date()
    return rg.ClientRegistered(
        client_id=client_id, office=office, register_number=f"PB/{office}/2025/0001",
        program=rg.Program.PB,
        decision=rg.Decision(number="PAS-1234.PK.05.09/2025", issued_by="Ditjenpas",
                             issued_on=start),
        origin_institution="Lapas Kelas I Cipinang",
        period=rg.Period(start_on=start, end_on=start + timedelta(days=730)),
        person=rg.Person(full_name="Budi Santoso", nik="3174051203850007",
                         birth_date=date(1985, 3, 12), sex=rg.Sex.M,
                         address="Jl. Kemang Raya 12, Jakarta Selatan"),
        family_contact=None, officer_id="pk-0007", is_child=False, registered_at=at)


def _guidance_opened(client_id: str, office: str, at: datetime) -> gd.GuidanceOpened:
    start = at.date()
    return gd.GuidanceOpened(
        client_id=client_id, office=office, program="PB", period_start_on=start,
        period_end_on=start + timedelta(days=730), officer_id="pk-0007", is_child=False,
        stage=gd.Stage.AWAL, litmas_requested_at=at, litmas_due_at=at + timedelta(days=14),
        review_dates=[start + timedelta(days=243), start + timedelta(days=486)], opened_at=at)


def _session(session_id: str, at: datetime) -> gd.GuidanceSessionHeld:
    return gd.GuidanceSessionHeld(
        session_id=session_id, kind=gd.GuidanceKind.KEMANDIRIAN, approach=gd.Approach.INDIVIDU,
        held_on=at.date(), participants=[gd.Participant.KLIEN, gd.Participant.PK],
        notes="Klien mengikuti pelatihan las dan melaporkan kemajuan pekerjaan.",
        stage=gd.Stage.AWAL)


def _supervision_started(client_id: str, office: str, at: datetime) -> sv.SupervisionStarted:
    start = at.date()
    return sv.SupervisionStarted(
        client_id=client_id, office=office, program="PB", officer_id="pk-0007", is_child=False,
        period_start_on=start, period_end_on=start + timedelta(days=730), started_at=at)


def _visit(visit_id: str, at: datetime) -> sv.VisitLogged:
    return sv.VisitLogged(
        visit_id=visit_id, kind=sv.ContactKind.LAPOR_DIRI, occurred_at=at,
        outcome=sv.Outcome.MET_COMPLIED, notes="Klien hadir tepat waktu, kooperatif.",
        remote_reason=None, logged_by="pk-0007", counts_as_report=True,
        covers_due_on=at.date())


# ---------------------------------------------------------------------------- the bulk

CID, OFF = "zzcidzz", "zzoffzz"  # placeholders in the bulk's body templates
_CID, _OFF = CID.encode(), OFF.encode()


@dataclass(frozen=True, slots=True)
class Template:
    context: str
    type: str   # ce-type
    body: bytes  # with CID and OFF to replace

    def render(self, client_id: str, office: str) -> bytes:
        return self.body.replace(_CID, client_id.encode()).replace(_OFF, office.encode())


def _template(context: str, event: Event) -> Template:
    return Template(context, ce_type(event.event_type, event.event_version),
                    event.model_dump_json().encode())


@cache
def templates() -> tuple[Template, ...]:
    """The five events of a bulk client, in the order their rounds are published."""
    at = datetime(2024, 6, 3, 2, 0, tzinfo=UTC)
    return (_template("registration", _registered(CID, OFF, at)),
            _template("guidance", _guidance_opened(CID, OFF, at)),
            _template("supervision", _supervision_started(CID, OFF, at)),
            _template("guidance", _session(f"s-{CID}", at + timedelta(days=30))),
            _template("supervision", _visit(f"v-{CID}", at + timedelta(days=30))))


ROUNDS = ((0, 1, 2), (3, 4))  # round 1: the three openings; round 2: a session and a visit


@dataclass(slots=True)
class Bulk:
    """The bulk's messages, built lazily: round 1 for every client, then round 2, so a
    client's events lie far apart in each stream. Each client's last hash per context is
    kept until its next event, so that every message links to the one before it."""

    topology: Topology
    clients: int

    def messages(self) -> Iterator[tuple[str, bytes, dict[str, str]]]:
        root, tpls = self.topology.root, templates()
        clock = datetime(2024, 6, 3, 2, 0, tzinfo=UTC)
        later = {tpls[t].context for r in ROUNDS[1:] for t in r}
        hashes: dict[str, list[str]] = {c: [GENESIS_HASH] * self.clients for c in later}
        seen: dict[str, int] = {}  # rounds so far holding each context: the next sequence - 1
        for round_ in ROUNDS:
            for i in range(self.clients):
                if not i % 1000:  # event times move on by the thousand: a clock is costly
                    clock += timedelta(minutes=7)
                    now = format_time(clock)
                client_id, office = f"k{i:07d}", OFFICES[i % len(OFFICES)]
                for t in round_:
                    tpl = tpls[t]
                    context = tpl.context
                    chain = hashes.get(context)
                    body = tpl.render(client_id, office)
                    event_id = str(uuid7())  # as new_id(), without its stdlib UUID object
                    prevhash = chain[i] if chain is not None else GENESIS_HASH
                    hash_ = chain_hash(prevhash, event_id, tpl.type, now, body)
                    env = Envelope(id=event_id, type=tpl.type, time=now, office=office,
                                   context=context, client_id=client_id,
                                   sequence=seen.get(context, 0) + 1, prevhash=prevhash,
                                   hash=hash_, actor=META.actor,
                                   correlation_id=META.correlation_id)
                    if chain is not None:
                        chain[i] = hash_
                    yield f"{root}.{office}.{context}.{client_id}", body, env.headers()
            for t in round_:
                seen[tpls[t].context] = seen.get(tpls[t].context, 0) + 1


# --------------------------------------------------------------------------- the target

Make = Callable[[CaseRef, int, datetime], Event]


def _registration(ref: CaseRef, k: int, at: datetime) -> Event:
    if k % 2:
        return rg.OfficerAssigned(officer_id=f"pk-{k % 7 + 1:04d}", previous_officer_id="pk-0007",
                                  reason="rotasi beban kerja", assigned_at=at)
    return rg.AddressChanged(address=f"Jl. Melati {k}, Jakarta Selatan",
                             previous_address="Jl. Kemang Raya 12, Jakarta Selatan",
                             reported_by_client=True, changed_at=at)


def _guidance(ref: CaseRef, k: int, at: datetime) -> Event:
    if not k % 15:
        return gd.CaseOfficerAssigned(officer_id=f"pk-{k % 7 + 1:04d}", assigned_at=at)
    return _session(f"s-{ref.client_id}-{k}", at)


def _supervision(ref: CaseRef, k: int, at: datetime) -> Event:
    if not k % 6:
        return sv.ReportMissed(due_on=at.date(), grace_days=3, consecutive=1,
                               detected_on=at.date())
    return _visit(f"v-{ref.client_id}-{k}", at)


@dataclass(frozen=True, slots=True)
class CasePlan:
    """A long case's events in time order: the three openings (registration, guidance,
    supervision), then the rest of each context's share spread evenly among the others:
    officer and address changes; sessions and an officer change now and then; visits and
    a missed report now and then."""

    events: tuple[tuple[str, Make], ...]

    @classmethod
    def of(cls, n: int) -> CasePlan:
        n = max(n, len(CASE_CONTEXTS))
        n_reg = max(1, round(n * 0.1))
        n_sv = max(1, (n - n_reg) // 2)
        n_gd = n - n_reg - n_sv
        rest = sorted([(i / n_reg, "registration", _registration) for i in range(1, n_reg)]
                      + [(i / n_gd, "guidance", _guidance) for i in range(1, n_gd)]
                      + [(i / n_sv, "supervision", _supervision) for i in range(1, n_sv)],
                      key=lambda r: r[0])
        events: list[tuple[str, Make]] = [
            ("registration", lambda ref, k, at: _registered(ref.client_id, ref.office, at)),
            ("guidance", lambda ref, k, at: _guidance_opened(ref.client_id, ref.office, at)),
            ("supervision",
             lambda ref, k, at: _supervision_started(ref.client_id, ref.office, at))]
        events += [(context, make) for _, context, make in rest]
        return cls(tuple(events))

    def counts(self) -> dict[str, int]:
        return {c: sum(1 for ctx, _ in self.events if ctx == c) for c in CASE_CONTEXTS}


class CaseWriter:
    """Appends a planned case's events one by one with `EventStore.append`."""

    def __init__(self, store: EventStore, plan: CasePlan, ref: CaseRef) -> None:
        self.store = store
        self.plan = plan
        self.ref = ref
        self.versions = {c: CaseVersion.new() for c in CASE_CONTEXTS}
        self.written = 0

    @property
    def done(self) -> bool:
        return self.written >= len(self.plan.events)

    async def append_next(self) -> None:
        context, make = self.plan.events[self.written]
        at = CASE_START + CASE_STEP * self.written
        event = NewEvent(new_id(), make(self.ref, self.written, at), at, META)
        result = await self.store.append(context, self.ref, [event], self.versions[context])
        self.versions[context] = result.version
        self.written += 1


# ------------------------------------------------------------------------------ the fill

@dataclass
class Filled:
    total: int                 # messages in the three streams
    per_stream: dict[str, int]
    bytes: int
    seconds: float
    clients: int
    relaxed: bool              # filled on our server without sync always


async def stream_counts(js: JetStreamContext, topology: Topology) -> tuple[dict[str, int], int]:
    counts, size = {}, 0
    for context in CASE_CONTEXTS:
        info = await js.stream_info(topology.stream(context))
        counts[context] = info.state.messages
        size += info.state.bytes
    return counts, size


async def fill(endpoints: Endpoints, topology: Topology, catalog: EventCatalog, events: int,
               plan: CasePlan) -> Filled:
    """`events` events in the three streams: the bulk, the spread case's events at even
    places among it, the old case's in one go before it, the burst case's in one go after."""
    relaxed = set_nats_sync(endpoints, False)
    if relaxed:
        progress("nats-server restarted without sync_interval: always, for the fill only")
    else:
        progress("someone else's servers: the fill runs at their fsync rate (slow under "
                 "sync_interval: always)")
    n_case = len(plan.events)
    n_bulk = max(0, events - len(LONG_CASES) * n_case)
    clients = -(-n_bulk // EVENTS_PER_CLIENT)
    nc = await nats.connect(endpoints.nats_url, max_reconnect_attempts=3,
                            pending_size=64 * 1024 * 1024)
    try:
        js = nc.jetstream()
        await ensure_streams(js, topology, contexts=CONTEXT_STREAMS)
        store = EventStore(nc, topology, catalog)
        spread, burst = CaseWriter(store, plan, SPREAD), CaseWriter(store, plan, BURST)
        old = CaseWriter(store, plan, OLD)
        every = max(1, n_bulk // n_case)  # one of the spread case's events before each share
        with Stopwatch() as sw:
            while not old.done:
                await old.append_next()
            sent = 0
            for subject, body, headers in itertools.islice(Bulk(topology, clients).messages(),
                                                           n_bulk):
                if not sent % every and not spread.done:
                    await spread.append_next()
                await nc.publish(subject, body, headers=headers)
                sent += 1
                if not sent % FLUSH_EVERY:
                    await nc.flush(timeout=30)
                if not sent % REPORT_EVERY:
                    progress(f"filling: {sent:,} / {n_bulk:,} bulk events sent, "
                             f"{sent / (time.perf_counter() - sw.started):,.0f}/s")
            await nc.flush(timeout=30)
            while not spread.done:
                await spread.append_next()
            while not burst.done:
                await burst.append_next()
            # core publishes are stored when the streams hold them all
            want, seen, since = n_bulk + len(LONG_CASES) * n_case, -1, time.monotonic()
            while True:
                counts, size = await stream_counts(js, topology)
                total = sum(counts.values())
                if total >= want:
                    break
                if total != seen:
                    seen, since = total, time.monotonic()
                elif time.monotonic() - since > STORE_TIMEOUT_S:
                    print(f"WARNING: the streams hold {total:,} of {want:,} events; "
                          "going on with those", file=sys.stderr)
                    break
                await asyncio.sleep(0.2)
        progress(f"filled {total:,} events in {sw.seconds:.1f} s ({sw.rate(total):,.0f}/s)")
        return Filled(total, counts, size, sw.seconds, clients + len(LONG_CASES), relaxed)
    finally:
        await nc.close()
        if relaxed:
            progress("restarting nats-server with sync_interval: always")
            set_nats_sync(endpoints, True)


# ------------------------------------------------------------------------- measurement

class QuietServer(uvicorn.Server):
    """uvicorn in this process, leaving Ctrl-C to the benchmark."""

    @contextlib.contextmanager
    def capture_signals(self):  # noqa: ANN201
        yield


class RawReader:
    """A case's subjects read with batched Direct Gets on plain nats-py, nothing decoded.

    Messages are taken in a subscription callback until the status that ends each batch,
    as the store does; a subject with more than one batch of events is read on from the
    last sequence, as the store does."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.inbox = nc.new_inbox()
        self.received: list[Msg] = []
        self.done: asyncio.Future[None] | None = None

    async def start(self) -> None:
        await self.nc.subscribe(self.inbox, cb=self.on_message, pending_msgs_limit=1_000_000,
                                pending_bytes_limit=1 << 30)

    async def on_message(self, msg: Msg) -> None:
        if msg.headers and msg.headers.get("Status"):
            if self.done is not None and not self.done.done():
                self.done.set_result(None)
        else:
            self.received.append(msg)

    async def read(self, stream: str, subject: str) -> int:
        count, seq = 0, 1
        while True:
            self.received.clear()
            self.done = asyncio.get_running_loop().create_future()
            request = {"seq": seq, "next_by_subj": subject, "batch": DIRECT_GET_BATCH}
            await self.nc.publish(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(),
                                  reply=self.inbox)
            await asyncio.wait_for(self.done, 5)
            count += len(self.received)
            if not self.received:
                return count
            last = self.received[-1]
            if int(last.headers.get("Nats-Num-Pending", "0")) == 0:
                return count
            seq = int(last.headers["Nats-Sequence"]) + 1

    async def read_seqs(self, stream: str, seqs: list[int]) -> int:
        """The same messages by stream sequence, all requests in flight (nats-py's request)."""
        api = f"$JS.API.DIRECT.GET.{stream}"
        replies = await asyncio.gather(*(self.nc.request(api, json.dumps({"seq": s}).encode(),
                                                         timeout=5) for s in seqs))
        return len(replies)


def process_cpu_ms(pid: int | None) -> float:
    """User + system CPU time a process has used (Linux /proc, 10 ms ticks); 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class Series:
    """One kind of read: wall times (ms, sorted at the end) and the CPU it cost, summed
    over the samples: this process's (ours: server and client of HTTP both live here) and
    nats-server's. Ticks of 10 ms average out over hundreds of samples."""

    wall: list[float] = field(default_factory=list)
    cpu_ms: float = 0.0
    server_cpu_ms: float = 0.0

    def per_read(self, total: float) -> float:
        return total / len(self.wall) if self.wall else float("nan")


@dataclass
class Timings:
    series: dict[str, Series]
    events: dict[str, set[int]] = field(default_factory=dict)  # events per history answered
    intact: set[bool] = field(default_factory=set)


async def measure(kernel: Kernel, http: httpx.AsyncClient, raw: RawReader,
                  headers: dict[str, str], server_pid: int | None) -> Timings:
    """Each kind of read SAMPLES times after WARMUP rounds, in rotating order."""
    t = Timings({})

    def over_http(ref: CaseRef) -> Callable[[], Awaitable[bytes]]:
        url = f"/v1/audit/clients/{ref.client_id}/history"

        async def read() -> bytes:
            resp = await http.get(url, headers=headers)
            if resp.status_code != 200:
                raise RuntimeError(f"GET {url} answered {resp.status_code}: "
                                   f"{resp.content[:300]!r}")
            return resp.content
        return read

    copies = EventIndex.reader(kernel.pool, kernel.schema, copy=True)
    seqs_of = EventIndex.reader(kernel.pool, kernel.schema, copy=False)

    def in_process(ref: CaseRef) -> Callable[[], Awaitable[None]]:
        async def read() -> None:
            await history(kernel.store, kernel.catalog, [ref], copies)
        return read

    def raw_read(ref: CaseRef) -> Callable[[], Awaitable[None]]:
        subjects = [(kernel.topology.stream(c), kernel.topology.subject(c, ref))
                    for c in CASE_CONTEXTS]

        async def read() -> None:
            for stream, subject in subjects:
                await raw.read(stream, subject)
        return read

    # the spread case's sequences, known before the clock starts (as the index knows them)
    spread = [(kernel.topology.stream(c), kernel.topology.subject(c, SPREAD))
              for c in CASE_CONTEXTS]
    spread_seqs = [(stream, [k.seq for k in await seqs_of(subject, stream)])
                   for stream, subject in spread]

    async def raw_by_seq() -> None:
        await asyncio.gather(*(raw.read_seqs(stream, seqs) for stream, seqs in spread_seqs))

    table = f"{quote_ident(kernel.schema)}.case_events"

    async def raw_copy() -> None:
        await asyncio.gather(*(kernel.pool.fetch(
            f"SELECT seq, headers, body FROM {table} WHERE subject = $1 AND stream = $2 "
            "ORDER BY seq", subject, stream) for stream, subject in spread))

    kinds: dict[str, tuple[CaseRef, Callable[[], Awaitable[bytes | None]]]] = {
        "http": (SPREAD, over_http(SPREAD)), "history": (SPREAD, in_process(SPREAD)),
        "raw_copy": (SPREAD, raw_copy), "raw": (SPREAD, raw_read(SPREAD)),
        "raw_seq": (SPREAD, raw_by_seq),
        "burst_http": (BURST, over_http(BURST)), "burst_raw": (BURST, raw_read(BURST)),
        "old_http": (OLD, over_http(OLD)), "old_raw": (OLD, raw_read(OLD))}
    t.series = {name: Series() for name in kinds}

    async def timed(name: str) -> None:
        ref, read = kinds[name]
        out = t.series[name]
        cpu, server = time.process_time(), process_cpu_ms(server_pid)
        started = time.perf_counter()
        answer = await read()
        out.wall.append((time.perf_counter() - started) * 1000)
        out.cpu_ms += (time.process_time() - cpu) * 1000
        out.server_cpu_ms += process_cpu_ms(server_pid) - server
        if answer is not None:  # checked off the clock
            doc = json.loads(answer)
            t.events.setdefault(ref.client_id, set()).add(len(doc["events"]))
            t.intact.add(doc["intact"])

    names = list(kinds)
    for _ in range(WARMUP):
        for name in names:
            await kinds[name][1]()
    for i in range(SAMPLES):
        # rotate who goes first: the first read of a round warms the server for the others
        for name in names[i % len(names):] + names[:i % len(names)]:
            await timed(name)
        if not (i + 1) % 100:
            progress(f"measured {i + 1} / {SAMPLES} rounds")
    for s in t.series.values():
        s.wall.sort()
    return t


async def wait_for_index(kernel: Kernel) -> tuple[int, float]:
    """Until the audit's indexes (client_index over the registration stream, event_index
    over all three) have read everything stored: (events read, seconds taken)."""
    js = kernel.nc.jetstream()
    wanted = {("client_index", "registration")} | {
        ("event_index", c) for c in ("registration", "guidance", "supervision")}
    last = {c: (await js.stream_info(kernel.topology.stream(c))).state.last_seq
            for c in ("registration", "guidance", "supervision")}
    s = quote_ident(kernel.schema)
    runners = {r.name: r for r in kernel.runners}
    started = reported = time.perf_counter()
    while True:
        done, total = 0, 0
        for projection, context in wanted:
            stream = kernel.topology.stream(context)
            position = await kernel.pool.fetchval(
                f"SELECT max(position) FROM {s}.projection_checkpoints WHERE projection = $1 "
                "AND stream = $2", projection, stream) or 0
            done += min(position, last[context])
            total += last[context]
            if runners[projection].status.last_error:
                raise RuntimeError(f"the {projection} failed: "
                                   f"{runners[projection].status.last_error}")
        if done >= total:
            return sum(last.values()), time.perf_counter() - started
        if time.perf_counter() - reported > 5:
            reported = time.perf_counter()
            progress(f"indexing: {done:,} / {total:,} stream positions")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def audit_over_http(endpoints: Endpoints, namespace: str
                          ) -> AsyncIterator[tuple[Kernel, httpx.AsyncClient, dict[str, str]]]:
    """The audit service in this process, as `serve` builds it (its projections running),
    answering HTTP on a loopback port; an httpx client and an auditor's token for it."""
    settings = Settings(env="development", nats_url=endpoints.nats_url,
                        nats_monitor_url=endpoints.monitor_url, database_url=endpoints.dsn,
                        namespace=namespace, jwt_secret=secrets.token_urlsafe(32))
    async with started(audit_service, settings) as (kernel, app):
        settle_heap()
        port = free_port()
        server = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                            access_log=False, lifespan="off"))
        serving = asyncio.create_task(server.serve(), name="audit-http")
        try:
            while not server.started:
                if serving.done():
                    serving.result()
                    raise RuntimeError("the audit's HTTP server stopped before it started")
                await asyncio.sleep(0.01)
            token = kernel.tokens.issue("auditor-bench", "pusat", ["auditor"])
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         timeout=30) as http:
                yield kernel, http, {"Authorization": f"Bearer {token}"}
        finally:
            server.should_exit = True
            await serving


# ---------------------------------------------------------------------------- the run

def run(events: int = 1_000_000, case_events: int = 200) -> None:
    """Entry point of `bapas bench audit`: prints the machine, the servers and the table."""
    configure_logging("bench", fmt="console", level="warning")
    natsfast.install()  # as every service runs; raw and ours share the one client library
    try:
        with Stopwatch() as total, bench_servers() as endpoints:
            asyncio.run(_run(endpoints, events, case_events))
        print(f"\ntotal run time {total.seconds:.0f} s (servers started and stopped included)")
    except KeyboardInterrupt:
        print("interrupted: servers stopped, nothing left running", file=sys.stderr)
        raise SystemExit(130) from None


async def _run(endpoints: Endpoints, events: int, case_events: int) -> None:
    namespace = f"audit_{secrets.token_hex(4)}"
    topology = Topology(namespace)
    plan = CasePlan.of(case_events)
    n_case = len(plan.events)
    catalog = EventCatalog(*audit_service.registries)
    events = max(events, 2 * n_case)
    conn = await asyncpg.connect(endpoints.dsn)
    try:
        versions = await server_versions(endpoints.monitor_url, conn)
    finally:
        await conn.close()
    sync = {True: "sync_interval: always", False: "NOT sync always",
            None: "sync unknown"}[versions.sync_always]
    sizes = [len(t.body) for t in templates()]
    print("bapas bench audit")
    print(f"  machine     {machine_summary()}")
    print(f"  nats-server {versions.nats} ({sync}; {endpoints.source})")
    print(f"  postgresql  {versions.postgres}")
    print(f"  events      {min(sizes)}-{max(sizes)} B JSON bodies + ~{header_size():,} B "
          "CloudEvents headers")
    print(f"  run         {events:,} events in the store; three cases of {n_case} events ("
          + ", ".join(f"{n} {c}" for c, n in plan.counts().items()) + "): the spread case "
          "appended all through the fill (its events span each whole stream), the burst case "
          "appended in one go at the end, the old case in one go at the start", flush=True)
    try:
        filled = await fill(endpoints, topology, catalog, events, plan)
        how = ("core NATS publishes without acks, nats-server restarted without sync always "
               "for it and with it after" if filled.relaxed else
               "core NATS publishes without acks, on the servers as they are")
        print(f"  fill        {filled.total:,} events, {filled.clients:,} clients, in "
              f"{filled.seconds:.0f} s ({filled.total / filled.seconds:,.0f}/s): {how}; "
              "not measured")
        print("  store       " + ", ".join(f"{topology.stream(c)} {n:,}"
                                            for c, n in filled.per_stream.items())
              + f" events, {filled.bytes / 1e9:.2f} GB", flush=True)
        async with audit_over_http(endpoints, namespace) as (kernel, http, headers):
            indexed, seconds = await wait_for_index(kernel)
            print(f"  index       the audit's client and event indexes read {indexed:,} "
                  f"events in {seconds:.0f} s; not measured", flush=True)
            raw_nc = await nats.connect(endpoints.nats_url, max_reconnect_attempts=3)
            try:
                raw = RawReader(raw_nc)
                await raw.start()
                progress(f"timing {SAMPLES} reads of each kind after {WARMUP} warm-up rounds")
                server = endpoints.nats_server
                t = await measure(kernel, http, raw, headers,
                                  server.proc.pid if server and server.proc else None)
            finally:
                await raw_nc.close()
        report(t, n_case, filled.total, server_cpu=endpoints.nats_server is not None)
    finally:
        if endpoints.shared:  # someone else's servers: leave them as we found them
            await _remove(endpoints, topology)


def report(t: Timings, n_case: int, total: int, *, server_cpu: bool) -> None:
    for ref in LONG_CASES:
        seen = t.events.get(ref.client_id, set())
        if seen != {n_case}:
            print(f"WARNING: histories of {ref.client_id} held {sorted(seen)} events, not "
                  f"{n_case}", file=sys.stderr)
    if t.intact != {True}:
        print(f"WARNING: histories answered intact {sorted(t.intact)}", file=sys.stderr)
    s = t.series
    by_subject = f"{len(CASE_CONTEXTS)} subjects, batched Direct Gets"
    by_seq = "the same events, Direct Get by seq"
    copy = "the copy, plain asyncpg SELECT"
    names = {"raw": by_subject, "burst_raw": by_subject, "old_raw": by_subject,
             "raw_seq": by_seq, "raw_copy": copy}

    def latency(name: str, kind: str, raw: str, target: Target | None = None) -> list[Figure]:
        return [Figure(f"{name}, p{q}", percentile(s[kind].wall, q / 100), "ms", names[raw],
                       percentile(s[raw].wall, q / 100), target if q == 99 else None)
                for q in (50, 99)]

    figures = [*latency("spread case, HTTP history", "http", "raw_copy", TARGET_P99_MS),
               *latency("spread case, HTTP history", "http", "raw_seq"),
               *latency("spread case, HTTP history", "http", "raw"),
               *latency("spread case, history() in-process", "history", "raw_copy"),
               *latency("burst case, HTTP history", "burst_http", "burst_raw"),
               *latency("old case, HTTP history", "old_http", "old_raw")]
    cpu = [("spread case, HTTP history", "http", "raw_copy"),
           ("spread case, history() in-process", "history", "raw_copy"),
           ("spread case, raw by seq", "raw_seq", "raw_copy"),
           ("spread case, raw by subject", "raw", "raw_copy"),
           ("burst case, HTTP history", "burst_http", "burst_raw"),
           ("old case, HTTP history", "old_http", "old_raw")]
    if server_cpu:
        figures += [Figure(f"nats-server CPU per read, {name}", s[k].per_read(s[k].server_cpu_ms),
                           "ms", names[r], s[r].per_read(s[r].server_cpu_ms))
                    for name, k, r in cpu]
    figures += [Figure(f"bench process CPU per read, {name}", s[k].per_read(s[k].cpu_ms), "ms",
                       names[r], s[r].per_read(s[r].cpu_ms)) for name, k, r in cpu]
    print()
    print(format_table(figures))
    worst = ", ".join(f"{k} {v.wall[-1]:.1f}" for k, v in s.items())
    print(f"\nEach case's history holds {n_case} events of a {total:,}-event store. "
          f"{SAMPLES} reads of each kind after {WARMUP} warm-up rounds, the {len(s)} kinds in "
          "rotating order. HTTP history: GET /v1/audit/clients/{id}/history on loopback to the "
          "audit service in this process (client index lookup, the case's events from the "
          "audit's copy, decoding, link checks, merge by time, JSON; uvicorn and the httpx "
          "client share this process and its CPU). history(): the copy's query, decoding, "
          "link checks and merge alone. Raw copy: the same rows with a plain asyncpg query; "
          "raw by seq: the same events read back from the streams by sequence with plain "
          "nats-py requests (what verify and export do); raw by subject: the three subjects "
          "walked with batched Direct Gets; nothing decoded. ratio = ours / raw: how many "
          "times the raw latency (or CPU) we take. CPU per read: this process from "
          "process_time, nats-server from /proc (10 ms ticks, averaged). Slowest read, ms: "
          f"{worst}.")


def header_size() -> int:
    env = Envelope(id=new_id(), type=templates()[0].type, time=format_time(CASE_START),
                   office=OFFICE, context="registration", client_id=SPREAD.client_id,
                   sequence=1, prevhash=GENESIS_HASH, hash=GENESIS_HASH, actor=META.actor,
                   correlation_id=META.correlation_id)
    return sum(len(k) + len(v) + 4 for k, v in env.headers().items())


async def _remove(endpoints: Endpoints, topology: Topology) -> None:
    nc = await nats.connect(endpoints.nats_url, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        for context in CONTEXT_STREAMS:
            with contextlib.suppress(Exception):
                await js.delete_stream(topology.stream(context))
    finally:
        await nc.close()
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(endpoints.dsn)
        try:
            await conn.execute("DROP SCHEMA IF EXISTS "
                               f"{quote_ident(topology.schema(audit_service.name))} CASCADE")
        finally:
            await conn.close()
