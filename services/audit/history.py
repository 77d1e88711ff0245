"""A client's history across every context, as stored, with each hash link checked.

Read-only. The events of a case live on one subject per context
(`bapas.<office>.<context>.<client_id>`); a transferred client's history continues the
case it came from, at its old office. Events are merged by event time, then stream order.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from nats.aio.msg import Msg

from shared.envelope import GENESIS_HASH, Envelope, parse_ce_type, parse_time, verify_chain
from shared.errors import EventDecodeError, KernelError
from shared.events import SEALED_MARK, Event, EventCatalog
from shared.store import EventStore
from shared.streams import CaseRef

from .case_file import VIEWS

CASE_CONTEXTS = ("registration", "guidance", "supervision")
BUNDLE_FORMAT = "bapas-audit-bundle/1"

@dataclass(frozen=True)
class StoredEvent:
    """One stored message of a case, decoded if it can be, with its link checked."""

    context: str
    ref: CaseRef
    stream: str
    stream_seq: int
    headers: dict[str, str]
    body: bytes
    envelope: Envelope
    link_holds: bool
    model: Event | None  # None when the stored body cannot be read as its type
    problem: str | None

    @property
    def data(self) -> dict[str, Any] | None:
        return self.model.model_dump(mode="json") if self.model is not None else None

    @property
    def time(self) -> datetime:
        return parse_time(self.envelope.time)

    def as_dict(self, with_data: bool = True, *, data_as_json: bool = False) -> dict[str, Any]:
        """The event as an answer shows it. With `data_as_json` the data is serialised by
        pydantic straight to JSON and embedded as it is (for orjson), not built as objects
        only to be encoded again."""
        env = self.envelope
        out = {"id": env.id, "type": env.type, "context": self.context,
               "office": env.office, "client_id": env.client_id, "sequence": env.sequence,
               "time": env.time, "actor": env.actor, "correlation_id": env.correlation_id,
               "causation_id": env.causation_id, "stream": self.stream,
               "stream_seq": self.stream_seq, "hash": env.hash, "prevhash": env.prevhash,
               "link_holds": self.link_holds}
        if with_data:
            if not data_as_json:
                out["data"] = self.data
            else:
                out["data"] = (orjson.Fragment(self.model.model_dump_json())
                               if self.model is not None else None)
        if self.problem:
            out["problem"] = self.problem
        return out


@dataclass(frozen=True, slots=True)
class Indexed:
    """One event of a case as the audit's event index holds it: where it lies and, when the
    copy was asked for, its headers and exact body."""

    seq: int
    headers: dict[str, str] | None = None
    body: bytes | None = None


CaseIndex = Callable[[str, str], Awaitable[list[Indexed]]]  # (subject, stream) -> in order


async def read_tail(store: EventStore, stream: str, subject: str, indexed: int) -> list[Msg]:
    """The subject's messages after sequence `indexed`, the last its index knows.

    Asking for the next message after a case's last one walks the stream from there to its
    end: about 3 ms at 100,000 events for a case whose last event lies far back, growing
    with the stream. The subject's last sequence is one lookup (about 0.3 ms), so the walk
    is made only when the index has not seen everything yet."""
    if not indexed:
        return await store.read_subject(stream, subject)
    last = await store.last_message(stream, subject)
    if last is None or int(last.headers["Nats-Sequence"]) <= indexed:
        return []
    return await store.read_subject(stream, subject, from_seq=indexed + 1)


async def read_case(store: EventStore, catalog: EventCatalog, context: str, ref: CaseRef,
                    index: CaseIndex | None = None) -> list[StoredEvent]:
    """A case's messages in one context, each link checked in stream order.

    The events the index knows are taken from its copy, or fetched from the stream by
    sequence where it gives none; the tail it has not seen yet is read by subject."""
    stream = store.topology.stream(context)
    subject = store.topology.subject(context, ref)
    known = await index(subject, stream) if index else []
    records = [(k.seq, k.headers, k.body) for k in known if k.body is not None]
    if len(records) < len(known):
        fetched = await store.read_seqs(stream, subject, [k.seq for k in known if k.body is None])
        records += [(int(m.headers["Nats-Sequence"]), m.headers, m.data) for m in fetched]
        records.sort(key=lambda r: r[0])
    tail = await read_tail(store, stream, subject, known[-1].seq if known else 0)
    records += [(int(m.headers["Nats-Sequence"]), m.headers, m.data) for m in tail]
    if store.keys is not None:  # the persons' keys, for the personal values sealed
        await store.keys.prepare({ref.client_id for _, _, body in records
                                  if SEALED_MARK in body})
    out: list[StoredEvent] = []
    prevhash, prevseq = GENESIS_HASH, 0
    for seq, headers, body in records:
        env = Envelope.from_headers(headers, subject, seq)
        holds = (env.computed_hash(body) == env.hash and env.prevhash == prevhash
                 and env.sequence == prevseq + 1)
        prevhash, prevseq = env.hash, env.sequence
        try:  # the envelope is parsed already: decode the body alone
            name, version = parse_ce_type(env.type)
            model, problem = catalog.decode(name, version, body, subject=env.client_id,
                                            keys=store.keys), None
        except (ValueError, LookupError) as exc:  # unknown type or version, invalid body
            model, problem = None, str(EventDecodeError(subject, seq, str(exc)))
        out.append(StoredEvent(context, ref, stream, seq, dict(headers), body, env,
                               holds, model, problem))
    return out


async def lineage(index, client_id: str) -> list[CaseRef]:
    """The client and the cases it was transferred from, oldest first. `index(client_id)`
    gives (office, transferred_from_office, transferred_from_client) or None."""
    chain: list[CaseRef] = []
    seen = set()
    current = client_id
    while current and current not in seen:
        seen.add(current)
        row = await index(current)
        if row is None:
            break
        office, from_office, from_client = row
        chain.append(CaseRef(office, current))
        current = from_client if from_office else None
    return list(reversed(chain))


async def history(store: EventStore, catalog: EventCatalog, refs: list[CaseRef],
                  index: CaseIndex | None = None) -> list[StoredEvent]:
    cases = await asyncio.gather(*(read_case(store, catalog, context, ref, index)
                                   for ref in refs for context in CASE_CONTEXTS))
    events = [e for case in cases for e in case]
    return sorted(events, key=lambda e: (e.time, e.stream, e.stream_seq))


def state_as_of(events: list[StoredEvent], ref: CaseRef, as_of: datetime) -> dict[str, Any]:
    """Each context's view of the case at `as_of`: what its events stored by then state."""
    out: dict[str, Any] = {}
    for context, view in VIEWS.items():
        models = [e.model for e in events if e.context == context and e.ref == ref
                  and e.time <= as_of and e.model is not None]
        out[context] = {"events": len(models), "state": view(models)}
    return out


def verify(events: list[StoredEvent]) -> dict[str, Any]:
    """Recompute every case chain; the first broken link, and why."""
    checked = 0
    by_case: dict[tuple[str, CaseRef], list[StoredEvent]] = {}
    for e in sorted(events, key=lambda e: (e.stream, e.stream_seq)):
        by_case.setdefault((e.context, e.ref), []).append(e)
    for (context, ref), case in by_case.items():
        result = verify_chain([(e.envelope, e.body) for e in case])
        checked += result.checked
        if not result.intact:
            return {"intact": False, "checked": checked, "context": context,
                    "office": ref.office, "client_id": ref.client_id,
                    "broken_at": result.broken_at, "event_id": result.event_id,
                    "reason": result.reason, "detail": result.detail}
    return {"intact": True, "checked": checked, "cases": len(by_case)}


def compare_copy(stored: list[StoredEvent], copied: list[StoredEvent]) -> dict[str, Any]:
    """Whether the audit's copy of the events holds exactly what the streams hold: the
    first event where they differ, and how."""
    truth = {(e.stream, e.stream_seq): e for e in stored}
    copy = {(e.stream, e.stream_seq): e for e in copied}
    for key in sorted(truth.keys() | copy.keys()):
        a, b = truth.get(key), copy.get(key)
        if a is not None and b is not None and a.body == b.body and a.envelope == b.envelope:
            continue
        if a is None:
            detail = "the copy holds an event the stream does not"
        elif b is None:
            detail = "the stream holds an event the copy does not"
        else:
            detail = "the copy differs from the stream"
        event = a or b
        return {"matches": False, "checked": len(truth), "stream": key[0], "stream_seq": key[1],
                "event_id": event.envelope.id, "detail": detail}
    return {"matches": True, "checked": len(truth)}


def bundle(client_id: str, events: list[StoredEvent], exported_at: datetime) -> dict[str, Any]:
    """A self-contained export: every message with its headers and exact body, and a
    manifest of hashes. `verify_bundle` checks it with no server."""
    messages = [{"context": e.context, "office": e.ref.office, "client_id": e.ref.client_id,
                 "stream": e.stream, "stream_seq": e.stream_seq, "headers": e.headers,
                 "body": base64.b64encode(e.body).decode()}
                for e in sorted(events, key=lambda e: (e.context, e.ref.office, e.stream_seq))]
    manifest = [{"id": m["headers"]["ce-id"], "hash": m["headers"]["ce-hash"],
                 "body_sha256": hashlib.sha256(base64.b64decode(m["body"])).hexdigest()}
                for m in messages]
    return {"format": BUNDLE_FORMAT, "client_id": client_id,
            "exported_at": exported_at.isoformat(), "messages": messages,
            "manifest": manifest,
            "manifest_sha256": hashlib.sha256(json.dumps(manifest, sort_keys=True)
                                              .encode()).hexdigest()}


def verify_bundle(doc: dict[str, Any]) -> dict[str, Any]:
    """Offline: the manifest matches the messages and every case chain holds."""
    if doc.get("format") != BUNDLE_FORMAT:
        raise KernelError(f"not a {BUNDLE_FORMAT} file")
    manifest = doc["manifest"]
    if hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest() != \
            doc["manifest_sha256"]:
        return {"intact": False, "reason": "manifest", "detail": "the manifest was changed"}
    if len(manifest) != len(doc["messages"]):
        return {"intact": False, "reason": "missing",
                "detail": f"{len(doc['messages'])} messages for {len(manifest)} in the manifest"}
    cases: dict[tuple[str, str, str], list[tuple[Envelope, bytes]]] = {}
    for entry, m in zip(manifest, doc["messages"], strict=True):
        body = base64.b64decode(m["body"])
        env = Envelope.from_headers(m["headers"], f"{m['context']}:{m['client_id']}",
                                    m["stream_seq"])
        if entry["id"] != env.id or entry["hash"] != env.hash or \
                entry["body_sha256"] != hashlib.sha256(body).hexdigest():
            return {"intact": False, "reason": "altered", "event_id": env.id,
                    "detail": f"event {env.id} differs from the manifest"}
        cases.setdefault((m["context"], m["office"], m["client_id"]), []).append((env, body))
    checked = 0
    for (context, office, client_id), case in cases.items():
        result = verify_chain(case)
        checked += result.checked
        if not result.intact:
            return {"intact": False, "checked": checked, "context": context, "office": office,
                    "client_id": client_id, "event_id": result.event_id,
                    "reason": result.reason, "detail": result.detail}
    return {"intact": True, "checked": checked, "cases": len(cases)}
