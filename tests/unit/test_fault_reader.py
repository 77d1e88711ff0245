"""The fault suite's own reader must be able to say no: it finds an altered, a missing or a
reordered event, and counts a command stored twice as twice."""

from __future__ import annotations

import json

from shared.envelope import GENESIS_HASH, chain_hash
from shared.local.faults import Command, StoredEvent, broken_chains, times_stored

SUBJECT = "bapas.jaksel.supervision.c1"


def case(*bodies: dict) -> list[StoredEvent]:
    """A chain made with the kernel's own hash function: the reader recomputes it anew."""
    out, prev = [], GENESIS_HASH
    for i, body in enumerate(bodies, 1):
        raw = json.dumps(body).encode()
        kind, when, eid = "bapas.VisitLogged.v1", f"2026-12-06T10:00:0{i}.000000Z", f"e{i}"
        digest = chain_hash(prev, eid, kind, when, raw)
        out.append(StoredEvent("SUPERVISION", i, SUBJECT, {
            "ce-id": eid, "ce-type": kind, "ce-time": when, "ce-sequence": str(i),
            "ce-prevhash": prev, "ce-hash": digest,
            # the harness sends its key as the correlation id (the notes are sealed)
            "ce-correlationid": body.get("notes", "")}, raw))
        prev = digest
    return out


def test_an_intact_chain_passes():
    assert broken_chains(case({"notes": "a"}, {"notes": "b"}, {"notes": "c"})) == []


def test_an_altered_body_a_gap_and_a_reordering_are_found():
    altered = case({"notes": "a"}, {"notes": "b"})
    altered[1].body = b'{"notes": "B"}'
    assert broken_chains(altered) == [f"{SUBJECT} at SUPERVISION #2"]
    events = case({"notes": "a"}, {"notes": "b"}, {"notes": "c"})
    assert broken_chains([events[0], events[2]]) != []
    assert broken_chains([events[1], events[0], events[2]]) != []


def test_a_command_stored_twice_counts_twice_and_a_lost_one_zero():
    events = case({"notes": "k1"}, {"notes": "k2"}, {"notes": "k1"})
    visit = lambda key: Command("visit", key, client_id="c1")  # noqa: E731
    assert times_stored(visit("k2"), events) == 1
    assert times_stored(visit("k1"), events) == 2
    assert times_stored(visit("k3"), events) == 0
