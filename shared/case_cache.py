"""A service's copy of its own cases' events, so that a long case loads at constant cost.

Reading a case by its subject (`next_by_subj`) walks the stream's blocks from one of the
case's messages to the next: a 200-event case whose events lie across the stream read in
13 ms (p50) at 100,000 events and 65 ms at 1,000,000 (issue 14). The copy holds each event's
own headers and exact body in the service's schema (`case_cache`, one row per event). It is
never the truth. A load asks the stream for the case's last message (one lookup, whatever
the stream's size) while it reads the copy, and takes the copy only when its hash chain
verifies, recomputed from the stored bytes, and

- it ends at the stream's last message (same stream sequence, same hash): nothing else is
  read; or
- it ends earlier (another writer, another replica, a write of ours not landed yet): the
  messages after its end are read from the stream (the last message itself when only one
  is missing, else by subject from the copy's last sequence on, which walks only the span
  after it) and must link to the copy's last hash; they are added to the copy.

Anything else (no copy, a broken chain, a last hash the stream does not hold at that place,
a copy ahead of the stream) reads the whole case from the stream and rewrites the copy.

Writes are behind. Appends and loads hand their rows to a queue that one task drains, all
that waits in one `executemany` (one round trip for every case that changed meanwhile), so a
command waits for no PostgreSQL write, and a failed write is logged and forgotten: the next
load reads a longer tail, or the whole case. A row is stored only if the case's row before it
is there with the hash it links to, so a case's copy is always a prefix of its chain.

`EventStore.verify` never reads the copy: an integrity check rests on the stream alone.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import asyncpg
import orjson
import structlog

from .db import quote_ident
from .envelope import Envelope, verify_chain
from .errors import EventDecodeError
from .events import SEALED_MARK, RecordedEvent
from .metrics import KernelMetrics
from .streams import CaseRef

if TYPE_CHECKING:  # the store holds a cache; the cache reads through the store
    from nats.aio.msg import Msg

    from .store import EventStore, LoadedCase

__all__ = ["CaseCache", "CASE_CACHE_TABLE"]

log = structlog.get_logger("bapas.case_cache")
CASE_CACHE_TABLE = "case_cache"
# Rows waiting to be written at most; beyond them a write is dropped (and the copy repairs
# itself from the stream on the case's next load), so an unreachable database costs memory
# only up to here.
MAX_WAITING_ROWS = 50_000
# How long the writer lets rows gather before it writes them: appends one at a time would
# otherwise cost a write each. A load within it finds the copy one event short, and the
# stream's last message (which every load reads) is that event: it costs nothing more.
WRITE_DELAY_S = 0.005

# A row (after stream and subject): sequence, stream_seq, hash, prevhash, headers, body
_Row = tuple[int, int, str, str, str, bytes]


def _own_headers(headers: dict[str, str]) -> dict[str, str]:
    """The event's own headers, as published: not what a read adds (`Nats-Sequence`,
    `Nats-Num-Pending`, ...) nor what an append asked of the server (expectations, batch)."""
    return {k: v for k, v in headers.items() if not k.startswith("Nats-") or k == "Nats-Msg-Id"}


def _row(env: Envelope, stream_seq: int, headers: dict[str, str], body: bytes) -> _Row:
    return (env.sequence, stream_seq, env.hash, env.prevhash,
            json.dumps(_own_headers(headers)), body)


class _Write:
    __slots__ = ("stream", "subject", "rows", "replace")

    def __init__(self, stream: str, subject: str, rows: list[_Row], replace: bool) -> None:
        self.stream, self.subject, self.rows, self.replace = stream, subject, rows, replace


class _Cached:
    """One row of the copy, parsed: its envelope checked against the case it belongs to."""

    __slots__ = ("stream_seq", "headers", "body", "env")

    def __init__(self, stream_seq: int, headers: dict[str, str], body: bytes,
                 env: Envelope) -> None:
        self.stream_seq, self.headers, self.body, self.env = stream_seq, headers, body, env


class CaseCache:
    """The copy of one service's cases in its schema. One per process, shared by its loads
    and appends; `flush()` waits for the writes handed over so far."""

    def __init__(self, pool: asyncpg.Pool, schema: str, *,
                 metrics: KernelMetrics | None = None,
                 max_waiting_rows: int = MAX_WAITING_ROWS,
                 write_delay: float = WRITE_DELAY_S) -> None:
        self._pool = pool
        table = f"{quote_ident(schema)}.{CASE_CACHE_TABLE}"
        self.table = table
        self._select = (f"SELECT sequence, stream_seq, headers, body FROM {table} "
                        "WHERE stream = $1 AND subject = $2 ORDER BY sequence")
        self._delete = f"DELETE FROM {table} WHERE stream = $1 AND subject = $2"
        # only after the case's row before it, holding the hash this one links to
        self._insert = (
            f"INSERT INTO {table} (stream, subject, sequence, stream_seq, hash, headers, body) "
            "SELECT $1::text, $2::text, $3::integer, $4::bigint, $5::text, $7::jsonb, $8::bytea "
            f"WHERE $3::integer = 1 OR EXISTS (SELECT 1 FROM {table} p WHERE p.stream = $1 "
            "AND p.subject = $2 AND p.sequence = $3::integer - 1 AND p.hash = $6::text "
            "AND p.stream_seq < $4::bigint) "
            "ON CONFLICT (stream, subject, sequence) DO NOTHING")
        self._metrics = metrics or KernelMetrics()
        self._max_waiting_rows = max_waiting_rows
        self._write_delay = write_delay
        self._waiting: list[_Write] = []
        self._waiting_rows = 0
        self._queued: dict[tuple[str, str], int] = {}  # (stream, subject) -> last sequence
        self._writer: asyncio.Task[None] | None = None
        self._dropping = False

    # --------------------------------------------------------------------------- loading

    async def load(self, store: EventStore, context: str, ref: CaseRef) -> LoadedCase:
        from .store import (CaseVersion, LoadedCase, decode_message,  # (store imports us)
                            sealed_subjects)

        stream = store.topology.stream(context)
        subject = store.topology.subject(context, ref)
        # the copy and the stream's last message at once: the load costs the slower of them
        rows, last = await asyncio.gather(self._read(stream, subject),
                                          store.last_message(stream, subject))
        reads = 1 if last is not None else 0
        cached = None if rows is None else _parse(rows, subject, ref, context)
        kept: list[_Cached] | None = None
        tail: list[Msg] = []
        if last is None:
            if rows:  # a copy of nothing the stream holds (a stream made anew): drop it
                self._queue(_Write(stream, subject, [], replace=True))
            kept = []
        elif cached:
            last_seq = int(last.headers["Nats-Sequence"])
            end = cached[-1]
            if end.stream_seq == last_seq:
                if end.env.hash == last.headers.get("ce-hash"):
                    kept = cached
            elif end.stream_seq < last_seq:
                missing = int(last.headers.get("ce-sequence", "0")) - end.env.sequence
                if missing == 1:
                    tail = [last]
                elif missing > 1:
                    tail = await store.read_subject(stream, subject, from_seq=end.stream_seq + 1)
                    reads += len(tail)
                if tail and _extends(end, tail, subject, last_seq):
                    kept = cached
                else:
                    tail = []
        if kept is None:  # the copy is missing, altered or ahead: the stream, and a new copy
            messages = await store.read_subject(stream, subject)
            reads += len(messages)
            source = "stream"
            kept, tail = [], messages
            if rows is not None:
                self._queue(_Write(stream, subject, [
                    _row(_envelope(m, subject), int(m.headers["Nats-Sequence"]), m.headers,
                         m.data) for m in messages], replace=bool(rows)))
        else:
            source = "cache+tail" if tail else "cache"
            if tail:
                self._extend(stream, subject, [
                    _row(_envelope(m, subject), int(m.headers["Nats-Sequence"]), m.headers,
                         m.data) for m in tail])
        self._metrics.case_loads.labels(stream, source).inc()
        if store.keys is not None and (kept or tail):
            subjects = [c.headers.get("ce-subject", "") for c in kept if SEALED_MARK in c.body]
            subjects += sealed_subjects(tail)
            if subjects:
                await store.keys.prepare(subjects)
        events = [decode_message(store.catalog, store.topology, stream, subject, c.stream_seq,
                                 c.headers, c.body, store.keys) for c in kept]
        events += store.decode(stream, subject, tail)
        return LoadedCase(ref, context, events, CaseVersion.after(events), messages_read=reads,
                          from_cache=len(kept))

    async def _read(self, stream: str, subject: str) -> list[asyncpg.Record] | None:
        """The copy's rows, or None when the database does not answer: then the case is
        read from the stream alone, and nothing is written."""
        try:
            return await self._pool.fetch(self._select, stream, subject)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            self._metrics.case_cache_errors.labels("read").inc()
            log.warning("case cache unreadable; reading the stream", subject=subject,
                        error=str(exc) or type(exc).__name__)
            return None

    # --------------------------------------------------------------------------- writing

    def appended(self, events: list[RecordedEvent]) -> None:
        """Events the store has just appended (and the server acknowledged), in order."""
        if not events:
            return
        first = events[0]
        self._extend(first.stream, first.subject, [
            (e.sequence, e.stream_seq, e.hash, e.prevhash, json.dumps(_own_headers(e.headers)),
             e.body) for e in events])

    def _extend(self, stream: str, subject: str, rows: list[_Row]) -> None:
        queued = self._queued.get((stream, subject), 0)
        rows = [r for r in rows if r[0] > queued]  # a load right after our own append
        if rows:
            self._queue(_Write(stream, subject, rows, replace=False))

    def _queue(self, write: _Write) -> None:
        if self._waiting_rows + len(write.rows) > self._max_waiting_rows:
            self._metrics.case_cache_errors.labels("dropped").inc()
            if not self._dropping:
                self._dropping = True
                log.warning("case cache writes fall behind; dropping some (loads read the "
                            "stream for those cases)", waiting=self._waiting_rows)
            return
        key = (write.stream, write.subject)
        if write.rows:
            self._queued[key] = write.rows[-1][0]
        else:
            self._queued.pop(key, None)
        self._waiting.append(write)
        self._waiting_rows += len(write.rows)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain(),
                                                                  name="case-cache-writer")

    async def _drain(self) -> None:
        await asyncio.sleep(self._write_delay)
        while self._waiting:
            batch, self._waiting, self._waiting_rows = self._waiting, [], 0
            try:
                await self._write(batch)
                self._dropping = False
            except Exception as exc:  # noqa: BLE001 - a cache write must never fail anything
                self._metrics.case_cache_errors.labels("write").inc()
                log.warning("case cache write failed; those cases load from the stream",
                            cases=len({(w.stream, w.subject) for w in batch}),
                            error=str(exc) or type(exc).__name__)
            finally:
                for w in batch:
                    key = (w.stream, w.subject)
                    if w.rows and self._queued.get(key) == w.rows[-1][0]:
                        del self._queued[key]

    async def _write(self, batch: list[_Write]) -> None:
        """Deletes of the copies being replaced, then every row in the order handed over;
        a row whose predecessor is not there is skipped by the insert itself."""
        replaced = list(dict.fromkeys((w.stream, w.subject) for w in batch if w.replace))
        rows = [(w.stream, w.subject, *r) for w in batch for r in w.rows]
        async with self._pool.acquire() as conn:
            if replaced:
                await conn.executemany(self._delete, replaced)
            if rows:
                await conn.executemany(self._insert, rows)

    async def flush(self) -> None:
        """Until every write handed over so far is done (or given up)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def close(self, timeout: float = 5.0) -> None:
        """Finish the waiting writes, for at most `timeout` seconds; drop the rest."""
        if self._writer is None or self._writer.done():
            return
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            self._writer.cancel()
            self._waiting.clear()
            log.warning("case cache writes not finished at shutdown; dropped")


def _envelope(m: Msg, subject: str) -> Envelope:
    return Envelope.from_headers(m.headers, subject, int(m.headers["Nats-Sequence"]))


def _parse(rows: list[asyncpg.Record], subject: str, ref: CaseRef,
           context: str) -> list[_Cached] | None:
    """The copy's rows if they hold this case's chain from its first event, intact as
    recomputed from the stored bytes, in rising stream order; else None."""
    out: list[_Cached] = []
    prev_seq = 0
    try:
        for r in rows:
            headers = orjson.loads(r["headers"])
            env = Envelope.from_headers(headers, subject, r["stream_seq"])
            if (env.sequence != r["sequence"] or r["stream_seq"] <= prev_seq
                    or env.client_id != ref.client_id or env.office != ref.office
                    or env.context != context):
                return None
            prev_seq = r["stream_seq"]
            out.append(_Cached(r["stream_seq"], headers, r["body"], env))
    except (EventDecodeError, orjson.JSONDecodeError, TypeError):
        return None
    if not out or not verify_chain([(c.env, c.body) for c in out]).intact:
        return None
    return out


def _extends(end: _Cached, tail: list[Msg], subject: str, last_seq: int) -> bool:
    """The stream's messages after the copy's end follow on from it: each hash recomputed,
    the first linking to the copy's last hash, reaching the stream's last message (or past
    it: the case may have moved on since it was asked). A first link that fails says the
    copy's last event is not the stream's."""
    prevhash, prevseq = end.env.hash, end.env.sequence
    try:
        for m in tail:
            env = _envelope(m, subject)
            if (env.prevhash != prevhash or env.sequence != prevseq + 1
                    or env.computed_hash(m.data) != env.hash):
                return False
            prevhash, prevseq = env.hash, env.sequence
    except EventDecodeError:
        return False
    return int(tail[-1].headers["Nats-Sequence"]) >= last_seq
