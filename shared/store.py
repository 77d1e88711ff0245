"""The event store: JetStream streams, one exact subject per case and context.

Appends carry `Nats-Expected-Last-Subject-Sequence` (optimistic concurrency) and
`Nats-Msg-Id` = event id (idempotency). Several events from one decision go in one ADR-50
atomic batch. A case is read with batched Direct Gets on its exact subject, so reading costs
time in proportion to the case's own events, never to the stream's size.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from .envelope import (
    GENESIS_HASH,
    ChainCheck,
    Envelope,
    ce_type,
    format_time,
    parse_ce_type,
    parse_time,
    verify_chain,
)
from .errors import (AppendError, ConcurrencyError, EventDecodeError, KernelError,
                     OfficeElsewhere, Unavailable, require_connected)
from .events import (SEALED_MARK, EventCatalog, InvalidEventBody, NewEvent, RecordedEvent,
                     UnknownEventType)
from .ids import new_id
from .metrics import KernelMetrics
from .privacy import KeyRing, personal_paths, seal_body
from .streams import CaseRef, Topology

if TYPE_CHECKING:
    from .case_cache import CaseCache

__all__ = ["EventStore", "CaseVersion", "CaseWrite", "LoadedCase", "AppendResult", "decode_message"]

WRONG_LAST_SEQUENCE = 10071
BATCH_DUPLICATE_ID = 10201
# The server allows about 50 open atomic batches per stream; stay well below (DESIGN §2).
MAX_OPEN_BATCHES = 32
DIRECT_GET_BATCH = 256


@dataclass(frozen=True, slots=True)
class CaseVersion:
    """Where a case stands in one context: what the next append must expect."""

    stream_seq: int = 0      # stream sequence of the case's last event (0: no events yet)
    sequence: int = 0        # ce-sequence of the last event (the case's version)
    hash: str = GENESIS_HASH  # ce-hash of the last event

    @classmethod
    def new(cls) -> CaseVersion:
        return cls()

    @classmethod
    def after(cls, events: Sequence[RecordedEvent]) -> CaseVersion:
        """Where a case stands once `events` (its events in order) are all it holds."""
        if not events:
            return cls()
        last = events[-1]
        return cls(last.stream_seq, last.sequence, last.hash)


@dataclass(frozen=True, slots=True)
class LoadedCase:
    ref: CaseRef
    context: str
    events: list[RecordedEvent]
    version: CaseVersion
    messages_read: int = 0  # messages read from the stream for this load
    from_cache: int = 0     # events taken from the service's case cache


@dataclass(frozen=True, slots=True)
class CaseWrite:
    """Events for one case, and where the case must stand for them to be appended."""

    ref: CaseRef
    events: Sequence[NewEvent]
    expected: CaseVersion


@dataclass(frozen=True, slots=True)
class AppendResult:
    events: list[RecordedEvent]
    version: CaseVersion
    duplicate: bool = False


@dataclass(slots=True)
class _Collector:
    """The replies to one direct get: its messages, then the status that ends them."""

    messages: list[Msg] = field(default_factory=list)
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    status: str | None = None
    single: bool = False  # a plain (not batched) direct get answers with one message

    def take(self, msg: Msg) -> None:
        if self.done.done():
            return
        status = msg.headers.get("Status") if msg.headers else None
        if status:
            self.status = status
            self.done.set_result(None)
        else:
            self.messages.append(msg)
            if self.single:
                self.done.set_result(None)


class _Slots:
    """The replies to many plain direct gets, one message (or a status) each, in request
    order; one future for all of them, set when the last has answered."""

    __slots__ = ("messages", "statuses", "left", "done")

    def __init__(self, n: int) -> None:
        self.messages: list[Msg | None] = [None] * n
        self.statuses: list[str | None] = [None] * n
        self.left = n
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        if not n:
            self.done.set_result(None)

    def taker(self, i: int) -> Callable[[Msg], None]:
        def take(msg: Msg) -> None:
            if self.messages[i] is not None or self.statuses[i] is not None:
                return  # a reply already taken (a duplicate delivery)
            status = msg.headers.get("Status") if msg.headers else None
            if status:
                self.statuses[i] = status
            else:
                self.messages[i] = msg
            self.left -= 1
            if not self.left and not self.done.done():
                self.done.set_result(None)
        return take


def decode_message(catalog: EventCatalog, topology: Topology, stream: str, subject: str,
                   stream_seq: int, headers: dict[str, str] | None, body: bytes,
                   keys: KeyRing | None = None) -> RecordedEvent:
    """Turn one stored message into a RecordedEvent, running upcasters and opening sealed
    personal values with `keys` (prepared beforehand: `sealed_subjects`); errors name the
    message."""
    env = Envelope.from_headers(headers, subject, stream_seq)
    try:
        name, version = parse_ce_type(env.type)
        data = catalog.decode(name, version, body, subject=env.client_id, keys=keys)
        at = parse_time(env.time)
    except (UnknownEventType, InvalidEventBody, ValueError) as exc:
        raise EventDecodeError(subject, stream_seq, str(exc)) from exc
    return RecordedEvent(
        id=env.id, type=name, version=version, time=at, time_text=env.time, office=env.office,
        context=env.context, client_id=env.client_id, sequence=env.sequence, stream=stream,
        stream_seq=stream_seq, subject=subject, actor=env.actor,
        correlation_id=env.correlation_id, causation_id=env.causation_id,
        prevhash=env.prevhash, hash=env.hash, body=body, data=data, headers=dict(headers or {}),
    )


def sealed_subjects(messages: Iterable[Any]) -> list[str]:
    """The persons (client ids) whose keys the sealed bodies among `messages` need."""
    return [m.headers.get("ce-subject", "") for m in messages
            if SEALED_MARK in m.data and m.headers]


class EventStore:
    """Append to and read cases on JetStream. One per process; safe for concurrent use.

    With a key ring (`keys`), personal values are sealed per person when appended and
    opened when read (shared.privacy); without one, bodies are written as they are and
    sealed values read as None."""

    def __init__(self, nc: NATS, topology: Topology, catalog: EventCatalog, *,
                 metrics: KernelMetrics | None = None, timeout: float = 5.0,
                 api_prefix: str = "$JS.API", cache: CaseCache | None = None,
                 keys: KeyRing | None = None) -> None:
        """`api_prefix` reaches another JetStream domain (`$JS.<domain>.API`): an office's
        leaf reads the hub's copy of every office's cases that way. With a `cache` (the
        service's copy of its cases, see shared.case_cache) a case loads from the copy and
        the stream's tail after it, checked against the stream's last message."""
        self._nc = nc
        self.cache = cache
        self.keys = keys
        self._api = api_prefix
        self.topology = topology
        self.catalog = catalog
        self._metrics = metrics or KernelMetrics()
        self._timeout = timeout
        self._batch_slots: dict[str, asyncio.Semaphore] = {}
        self._inbox_prefix: str | None = None
        self._inbox_sub = None
        self._pending: dict[str, Callable[[Msg], None]] = {}  # reply token -> taker
        self._next_token = 0

    # ----------------------------------------------------------------------------- reading

    async def load(self, context: str, ref: CaseRef) -> LoadedCase:
        """All events of one case in one context, in order, decoded (and upcast)."""
        if self.cache is not None:
            return await self.cache.load(self, context, ref)
        return await self.load_from_stream(context, ref)

    async def load_from_stream(self, context: str, ref: CaseRef) -> LoadedCase:
        """`load` reading every event from the stream, whatever a cache holds."""
        stream = self.topology.stream(context)
        subject = self.topology.subject(context, ref)
        messages = await self.read_subject(stream, subject)
        await self.open_keys(messages)
        events = self.decode(stream, subject, messages)
        return LoadedCase(ref, context, events, CaseVersion.after(events),
                          messages_read=len(messages))

    async def open_keys(self, messages: Iterable[Any]) -> None:
        """Have the keys ready that decoding these messages needs."""
        if self.keys is not None:
            needed = sealed_subjects(messages)
            if needed:
                await self.keys.prepare(needed)

    async def last(self, context: str, ref: CaseRef) -> LoadedCase:
        """Only the case's last event (or none): enough where a case's state is its last
        fact, such as an office's register book, whatever the length of its history."""
        stream = self.topology.stream(context)
        subject = self.topology.subject(context, ref)
        messages = await self._direct_get(stream, {"last_by_subj": subject}, single=True)
        await self.open_keys(messages)
        events = self.decode(stream, subject, messages)
        return LoadedCase(ref, context, events, CaseVersion.after(events),
                          messages_read=len(messages))

    def decode(self, stream: str, subject: str, messages: Sequence[Msg]) -> list[RecordedEvent]:
        """Stored messages of one subject, as read, into events (upcast)."""
        return [decode_message(self.catalog, self.topology, stream, subject,
                               int(m.headers["Nats-Sequence"]), m.headers, m.data, self.keys)
                for m in messages]

    async def verify(self, context: str, ref: CaseRef) -> ChainCheck:
        """Recompute the case's hash chain from the stored bytes (bodies are not decoded, so
        a tampered body is reported, not refused)."""
        stream = self.topology.stream(context)
        subject = self.topology.subject(context, ref)
        messages = await self.read_subject(stream, subject)
        return verify_chain([(Envelope.from_headers(m.headers, subject,
                                                    int(m.headers["Nats-Sequence"])), m.data)
                             for m in messages])

    async def last_message(self, stream: str, subject: str) -> Msg | None:
        """The subject's last stored message, raw; None if it has none. One lookup however
        far back it lies (the server keeps each subject's last block)."""
        messages = await self._direct_get(stream, {"last_by_subj": subject}, single=True)
        return messages[0] if messages else None

    async def last_of_each(self, stream: str, subjects: Sequence[str]) -> list[Msg]:
        """The last message of each subject that has one (wildcards allowed), in stream
        order: batched Direct Get with `multi_last` (ADR-31), a request per 256 subjects."""
        out: list[Msg] = []
        for i in range(0, len(subjects), DIRECT_GET_BATCH):
            chunk = list(subjects[i:i + DIRECT_GET_BATCH])
            out.extend(await self._direct_get(stream, {"multi_last": chunk,
                                                       "batch": len(chunk)}))
        return out

    async def subjects(self, stream: str, subjects_filter: str) -> dict[str, int]:
        """The stream's subjects that match the filter, each with its number of messages
        (the server answers in pages; nats-py's stream_info reads only the first)."""
        import nats.js.errors

        out: dict[str, int] = {}
        while True:
            request = {"subjects_filter": subjects_filter, "offset": len(out)}
            reply = await self._nc.request(f"{self._api}.STREAM.INFO.{stream}",
                                           json.dumps(request).encode(), timeout=self._timeout)
            doc = json.loads(reply.data)
            if "error" in doc:
                nats.js.errors.APIError.from_error(doc["error"])
            page = (doc.get("state") or {}).get("subjects") or {}
            out.update(page)
            if not page or len(out) >= doc.get("total", 0):
                return out

    async def read_subject(self, stream: str, subject: str, *, from_seq: int = 1) -> list[Msg]:
        """Raw messages of one exact subject via batched Direct Get (no helper in nats-py)."""
        out: list[Msg] = []
        seq = from_seq
        while True:
            request = {"seq": seq, "next_by_subj": subject, "batch": DIRECT_GET_BATCH}
            messages = await self._direct_get(stream, request)
            out.extend(messages)
            if not messages:
                return out
            last = messages[-1]
            if int(last.headers.get("Nats-Num-Pending", "0")) == 0:
                return out
            seq = int(last.headers["Nats-Sequence"]) + 1

    async def read_seqs(self, stream: str, subject: str, seqs: list[int]) -> list[Msg]:
        """Messages by stream sequence, all requests in flight at once, one deadline.

        Reading by subject walks the stream's blocks from one message of the subject to
        the next: a long case spread over a large stream costs the server in proportion to
        the span. Where the sequences are known (an index), each is one lookup. A sequence
        that is gone (deleted, purged) is skipped: the hash chain tells what is missing."""
        require_connected(self._nc)
        await self._ensure_inbox()
        api = f"{self._api}.DIRECT.GET.{stream}"
        slots = _Slots(len(seqs))
        tokens = []
        try:
            for i, seq in enumerate(seqs):
                token = str(self._next_token)
                self._next_token += 1
                self._pending[token] = slots.taker(i)
                tokens.append(token)
                await self._nc.publish(api, b'{"seq":%d}' % seq,
                                       reply=f"{self._inbox_prefix}.{token}")
            async with asyncio.timeout(self._timeout):
                await slots.done
        finally:
            for token in tokens:
                self._pending.pop(token, None)
        for status in slots.statuses:
            if status not in ("404", None):
                raise KernelError(f"direct get on {stream} answered status {status} "
                                  "(is allow_direct set on the stream?)")
        out = [m for m in slots.messages if m is not None]
        for m in out:
            if m.headers.get("Nats-Subject") != subject:
                raise KernelError(f"{stream} sequence {m.headers.get('Nats-Sequence')} is on "
                                  f"{m.headers.get('Nats-Subject')}, not {subject}")
        return out

    async def _direct_get(self, stream: str, request: dict, *, single: bool = False) -> list[Msg]:
        require_connected(self._nc)
        await self._ensure_inbox()
        token = str(self._next_token)
        self._next_token += 1
        collector = _Collector(single=single)
        self._pending[token] = collector.take
        try:
            await self._nc.publish(f"{self._api}.DIRECT.GET.{stream}", json.dumps(request).encode(),
                                   reply=f"{self._inbox_prefix}.{token}")
            async with asyncio.timeout(self._timeout):
                await collector.done
        except TimeoutError:
            # no replica answered in time (a frozen or partitioned node, an election)
            raise Unavailable("nats") from None
        finally:
            self._pending.pop(token, None)
        if collector.status not in ("204", "404", None):
            raise KernelError(f"direct get on {stream} answered status {collector.status} "
                              "(is allow_direct set on the stream?)")
        return collector.messages

    async def _ensure_inbox(self) -> None:
        if self._inbox_sub is not None:
            return
        self._inbox_prefix = self._nc.new_inbox()
        self._inbox_sub = await self._nc.subscribe(f"{self._inbox_prefix}.*", cb=self._on_reply,
                                                   pending_msgs_limit=1_000_000,
                                                   pending_bytes_limit=1 << 30)

    async def _on_reply(self, msg: Msg) -> None:
        take = self._pending.get(msg.subject.rsplit(".", 1)[1])
        if take is not None:
            take(msg)

    # ----------------------------------------------------------------------------- writing

    async def append(self, context: str, ref: CaseRef, events: Sequence[NewEvent],
                     expected: CaseVersion) -> AppendResult:
        """Append `events` to the case if it still stands at `expected`.

        Raises ConcurrencyError when another writer got there first. A time-out, a conflict
        or a duplicate batch might mean our own earlier attempt was stored: those are
        settled by reading the case and looking for our event ids.
        """
        return (await self.append_together(context, [CaseWrite(ref, events, expected)]))[0]

    async def append_together(self, context: str,
                              writes: Sequence[CaseWrite]) -> list[AppendResult]:
        """Append to several cases of one context at once: all or nothing.

        One decision may have to change more than one subject (a client and the office's
        register book, say). Every case's first message carries its own expectation; the
        server checks them all at commit (ADR-50 atomic batch, which may span subjects of
        one stream).
        """
        writes = [w for w in writes if w.events]
        if not writes:
            return []
        stream = self.topology.stream(context)
        if self.keys is not None:
            personal = [w.ref.client_id for w in writes
                        if any(personal_paths(type(e.data)) for e in w.events)]
            if personal:
                await self.keys.prepare(personal, create=True,
                                        offices={w.ref.client_id: w.ref.office for w in writes})
        prepared = [(self.topology.subject(context, w.ref), w,
                     self._prepare(context, w.ref, w.events, w.expected)) for w in writes]
        messages = [(subject, env, body, w.expected.stream_seq if i == 0 else None)
                    for subject, w, envs in prepared for i, (env, body) in enumerate(envs)]
        started = time.perf_counter()
        try:
            if len(messages) == 1:
                ack = await self._publish_one(*messages[0])
            else:
                ack = await self._publish_batch(stream, messages)
            if ack.get("duplicate"):  # stored before, by an attempt whose answer was lost
                raise _MaybeWritten(None, "the server already holds these event ids")
        except _MaybeWritten as maybe:
            results = await self._reconcile(context, writes)
            if results is not None:
                return results
            names = ", ".join(subject for subject, _, _ in prepared)
            if maybe.code == WRONG_LAST_SEQUENCE:
                self._metrics.conflicts.labels(stream).inc()
                raise ConcurrencyError(names, writes[0].expected.stream_seq,
                                       maybe.detail) from None
            raise AppendError(f"append to {names} not confirmed: {maybe.detail}") from None
        finally:
            self._metrics.append_seconds.labels(stream).observe(time.perf_counter() - started)
        seq = int(ack["seq"]) - len(messages)
        results = []
        for subject, w, envs in prepared:
            recorded = []
            for (env, body), ev in zip(envs, w.events, strict=True):
                seq += 1
                recorded.append(RecordedEvent(
                    id=env.id, type=ev.data.event_type, version=ev.data.event_version,
                    time=ev.time, time_text=env.time, office=w.ref.office, context=context,
                    client_id=w.ref.client_id, sequence=env.sequence, stream=stream,
                    stream_seq=seq, subject=subject, actor=env.actor,
                    correlation_id=env.correlation_id, causation_id=env.causation_id,
                    prevhash=env.prevhash, hash=env.hash, body=body, data=ev.data,
                    headers=env.headers()))
            last = recorded[-1]
            results.append(AppendResult(recorded, CaseVersion(last.stream_seq, last.sequence,
                                                              last.hash)))
            if self.cache is not None:
                self.cache.appended(recorded)  # written behind, never failing the append
        self._metrics.appends.labels(stream).inc(len(messages))
        return results

    def _prepare(self, context: str, ref: CaseRef, events: Sequence[NewEvent],
                 expected: CaseVersion) -> list[tuple[Envelope, bytes]]:
        if not self.topology.writes(ref.office):
            raise OfficeElsewhere(ref.office)  # a case is written only in its home stream
        out = []
        prevhash, sequence = expected.hash, expected.sequence
        for ev in events:
            body = (seal_body(ev.data, ref.client_id, self.keys) if self.keys is not None
                    else ev.data.model_dump_json().encode())
            sequence += 1
            type_ = ce_type(ev.data.event_type, ev.data.event_version)
            at = format_time(ev.time)
            env = Envelope(id=ev.id, type=type_, time=at, office=ref.office, context=context,
                           client_id=ref.client_id, sequence=sequence, prevhash=prevhash,
                           hash="", actor=ev.meta.actor, correlation_id=ev.meta.correlation_id,
                           causation_id=ev.meta.causation_id)
            env = replace(env, hash=env.computed_hash(body))
            prevhash = env.hash
            out.append((env, body))
        return out

    async def _publish_one(self, subject: str, env: Envelope, body: bytes,
                           expected: int | None) -> dict:
        headers = env.headers()
        if expected is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
        return await self._request(subject, body, headers)

    async def _publish_batch(self, stream: str,
                             messages: list[tuple[str, Envelope, bytes, int | None]]) -> dict:
        """ADR-50: every message carries the batch id and its place (1..n); all but the
        last are plain publishes, the last one commits and answers the PubAck (or why the
        batch was refused, an expectation of any of its messages included). The server
        stores all of it or none. (Asking for an answer to the first message as well would
        cost a round trip per batch and tell nothing the commit does not.)"""
        slots = self._batch_slots.setdefault(stream, asyncio.Semaphore(MAX_OPEN_BATCHES))
        # unique per attempt: two writers deciding the same facts (deterministic event ids)
        # at once must not share a batch, or the server mixes them up (10176)
        batch_id = new_id()
        n = len(messages)
        async with slots:
            for i, (subject, env, body, expected) in enumerate(messages, start=1):
                headers = env.headers()
                headers["Nats-Batch-Id"] = batch_id
                headers["Nats-Batch-Sequence"] = str(i)
                if expected is not None:
                    headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
                if i < n:
                    await self._nc.publish(subject, body, headers=headers)
                else:
                    headers["Nats-Batch-Commit"] = "1"
                    return await self._request(subject, body, headers)
        raise AssertionError("unreachable")

    async def _request(self, subject: str, body: bytes, headers: dict[str, str]) -> dict:
        require_connected(self._nc)
        try:
            msg = await self._nc.request(subject, body, timeout=self._timeout, headers=headers)
        except nats.errors.TimeoutError:
            raise _MaybeWritten(None, "no answer from the server in time") from None
        except nats.errors.NoRespondersError:
            raise AppendError(f"no stream answers on {subject}: are the streams provisioned?") from None
        try:
            reply = json.loads(msg.data)
        except json.JSONDecodeError:
            raise AppendError(f"unexpected answer to append on {subject}: {msg.data[:200]!r}") from None
        err = reply.get("error")
        if err:
            code = err.get("err_code")
            if code in (WRONG_LAST_SEQUENCE, BATCH_DUPLICATE_ID):
                raise _MaybeWritten(code, err.get("description", ""))
            if err.get("code") == 503:  # JetStream temporarily unavailable: no leader yet
                raise Unavailable("nats")
            raise AppendError(f"append to {subject} refused: {err.get('description')} "
                              f"(code {code})")
        return reply

    async def _reconcile(self, context: str,
                         writes: Sequence[CaseWrite]) -> list[AppendResult] | None:
        """Our events are in the cases already (an earlier attempt landed): report success."""
        results, found_any, missing_any = [], False, False
        for w in writes:
            loaded = await self.load(context, w.ref)
            ours = {e.id for e in w.events}
            found = [e for e in loaded.events if e.id in ours]
            found_any |= bool(found)
            missing_any |= len(found) != len(ours)
            if found:
                last = found[-1]
                results.append(AppendResult(found, CaseVersion(last.stream_seq, last.sequence,
                                                               last.hash), duplicate=True))
        if not found_any:
            return None
        if missing_any:
            # Our batch is atomic, so none of it landed: another writer stored some of the
            # same facts (ids that derive from them, e.g. a missed report found by a sweep
            # while a report was being decided). The case moved on: decide again.
            raise ConcurrencyError(", ".join(self.topology.subject(context, w.ref)
                                             for w in writes), writes[0].expected.stream_seq,
                                   "another writer stored some of these facts")
        return results


class _MaybeWritten(Exception):
    def __init__(self, code: int | None, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
