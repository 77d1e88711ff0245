"""CloudEvents 1.0 in binary mode over NATS headers, and the per-case hash chain.

Headers: `ce-specversion`, `ce-id`, `ce-source` (/bapas/<office>/<context>), `ce-type`
(bapas.<EventType>.v<N>), `ce-subject` (client id), `ce-time` (RFC 3339, UTC),
`content-type`, and the extensions `ce-office`, `ce-sequence` (the event's version within its
case and context, from 1), `ce-correlationid`, `ce-causationid`, `ce-actor`, `ce-prevhash` and
`ce-hash`. `Nats-Msg-Id` carries the event id so that the server drops a repeated append.

`ce-hash` = SHA-256 over the previous hash, the event's id, type, time and exact body bytes;
`ce-prevhash` links to the previous event of the same case in the same context (64 zeros for
the first). Altering a body breaks its own hash; removing or reordering an event breaks the
next link.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from .errors import EventDecodeError

SPECVERSION = "1.0"
GENESIS_HASH = "0" * 64
CONTENT_TYPE = "application/json"
MSG_ID = "Nats-Msg-Id"
_TYPE_RE = re.compile(r"^bapas\.([A-Za-z][A-Za-z0-9]*)\.v([1-9][0-9]*)$")


def ce_type(name: str, version: int) -> str:
    return f"bapas.{name}.v{version}"


@lru_cache(maxsize=1024)  # a handful of types, read for every message
def parse_ce_type(value: str) -> tuple[str, int]:
    m = _TYPE_RE.fullmatch(value)
    if not m:
        raise ValueError(f"ce-type {value!r} is not of the form bapas.<EventType>.v<N>")
    return m.group(1), int(m.group(2))


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with microseconds, e.g. 2026-11-30T09:44:28.734253Z."""
    if t.tzinfo is None:
        raise ValueError("event times must be timezone-aware")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def chain_hash(prevhash: str, event_id: str, type_: str, time: str, body: bytes) -> str:
    h = hashlib.sha256()
    h.update(f"{prevhash}\n{event_id}\n{type_}\n{time}\n".encode())
    h.update(body)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Envelope:
    """The CloudEvents attributes of one stored event (everything but the body)."""

    id: str
    type: str
    time: str
    office: str
    context: str
    client_id: str
    sequence: int
    prevhash: str
    hash: str
    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None

    @property
    def source(self) -> str:
        return f"/bapas/{self.office}/{self.context}"

    def headers(self) -> dict[str, str]:
        h = {
            "ce-specversion": SPECVERSION,
            "ce-id": self.id,
            "ce-source": self.source,
            "ce-type": self.type,
            "ce-subject": self.client_id,
            "ce-time": self.time,
            "content-type": CONTENT_TYPE,
            "ce-office": self.office,
            "ce-sequence": str(self.sequence),
            "ce-prevhash": self.prevhash,
            "ce-hash": self.hash,
            MSG_ID: self.id,
        }
        if self.actor:
            h["ce-actor"] = self.actor
        if self.correlation_id:
            h["ce-correlationid"] = self.correlation_id
        if self.causation_id:
            h["ce-causationid"] = self.causation_id
        return h

    @classmethod
    def from_headers(cls, headers: dict[str, str] | None, subject: str, stream_seq: int) -> Envelope:
        if not headers:
            raise EventDecodeError(subject, stream_seq, "message has no CloudEvents headers")
        try:
            source = headers["ce-source"]
            parts = source.split("/")
            if len(parts) != 4 or parts[1] != "bapas":
                raise ValueError(f"ce-source {source!r} is not /bapas/<office>/<context>")
            return cls(
                id=headers["ce-id"],
                type=headers["ce-type"],
                time=headers["ce-time"],
                office=headers.get("ce-office") or parts[2],
                context=parts[3],
                client_id=headers["ce-subject"],
                sequence=int(headers["ce-sequence"]),
                prevhash=headers["ce-prevhash"],
                hash=headers["ce-hash"],
                actor=headers.get("ce-actor"),
                correlation_id=headers.get("ce-correlationid"),
                causation_id=headers.get("ce-causationid"),
            )
        except KeyError as exc:
            raise EventDecodeError(subject, stream_seq, f"header {exc.args[0]} is missing") from exc
        except ValueError as exc:
            raise EventDecodeError(subject, stream_seq, str(exc)) from exc

    def computed_hash(self, body: bytes) -> str:
        return chain_hash(self.prevhash, self.id, self.type, self.time, body)


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The outcome of verifying one case's hash chain in one context."""

    intact: bool
    checked: int
    broken_at: int | None = None  # index of the first event whose link fails
    event_id: str | None = None
    reason: str | None = None     # "altered", "missing", "reordered"
    detail: str | None = None


def verify_chain(events: list[tuple[Envelope, bytes]]) -> ChainCheck:
    """Recompute a case's chain in stream order and name the first broken link.

    - altered: an event's body or attributes no longer give its own `ce-hash`;
    - missing: the link fails and the sequence jumps (or the first event is not sequence 1);
    - reordered: the link fails and the sequence goes back;
    - altered (of a link): the sequence follows on but the link does not (an event replaced).
    """
    prevhash, prevseq = GENESIS_HASH, 0
    for i, (env, body) in enumerate(events):
        if env.computed_hash(body) != env.hash:
            return ChainCheck(False, i, i, env.id, "altered",
                              f"event {env.id} (sequence {env.sequence}) does not match its hash")
        if env.prevhash != prevhash or env.sequence != prevseq + 1:
            if env.sequence > prevseq + 1:
                reason = "missing"
            elif env.sequence <= prevseq:
                reason = "reordered"
            else:  # right place, wrong link: the event before it was replaced
                reason = "altered"
            return ChainCheck(False, i, i, env.id, reason,
                              f"event {env.id} has sequence {env.sequence} after {prevseq} and "
                              f"{'links' if env.prevhash == prevhash else 'does not link'} to the "
                              "event before it")
        prevhash, prevseq = env.hash, env.sequence
    return ChainCheck(True, len(events))
