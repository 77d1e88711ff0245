"""The CloudEvents envelope and the per-case hash chain: pure functions, no servers."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.envelope import (
    GENESIS_HASH, MSG_ID, Envelope, ce_type, chain_hash, format_time, parse_ce_type, parse_time,
    verify_chain,
)
from shared.errors import EventDecodeError

SUBJECT = "bapas.jaksel.guidance.0193c1"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def chain(n: int) -> list[tuple[Envelope, bytes]]:
    """A well-formed history of `n` events of one case, as the store would write it."""
    out, prevhash = [], GENESIS_HASH
    start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    for i in range(1, n + 1):
        body = f'{{"step": {i}, "note": "session {i}"}}'.encode()
        env = Envelope(id=f"event-{i}", type=ce_type("SessionHeld", 1),
                       time=format_time(start + timedelta(days=i)), office="jaksel",
                       context="guidance", client_id="0193c1", sequence=i, prevhash=prevhash,
                       hash="")
        env = replace(env, hash=env.computed_hash(body))
        prevhash = env.hash
        out.append((env, body))
    return out


# ------------------------------------------------------------------------------ ce-type

@pytest.mark.parametrize("name, version", [("ClientRegistered", 1), ("StageAdvanced", 12),
                                           ("X", 3), ("Litmas2Submitted", 1)])
def test_ce_type_round_trips(name, version):
    value = ce_type(name, version)
    assert value == f"bapas.{name}.v{version}"
    assert parse_ce_type(value) == (name, version)


@pytest.mark.parametrize("value", [
    "", "bapas", "bapas.ClientRegistered", "bapas.ClientRegistered.1",
    "bapas.ClientRegistered.v", "bapas.ClientRegistered.v0", "bapas.ClientRegistered.v01",
    "bapas.ClientRegistered.v-1", "other.ClientRegistered.v1", "BAPAS.ClientRegistered.v1",
    "bapas..v1", "bapas.1Registered.v1", "bapas.Client.Registered.v1",
    "bapas.Client Registered.v1", "bapas.ClientRegistered.v1.extra",
    " bapas.ClientRegistered.v1",
])
def test_parse_ce_type_refuses_other_forms(value):
    with pytest.raises(ValueError, match="bapas.<EventType>.v<N>"):
        parse_ce_type(value)


def test_parse_ce_type_refuses_a_trailing_newline():
    with pytest.raises(ValueError):
        parse_ce_type("bapas.ClientRegistered.v1\n")


# ------------------------------------------------------------------------------ time

def test_format_time_is_rfc3339_in_utc_with_z():
    at = datetime(2026, 11, 30, 9, 44, 28, 734253, tzinfo=UTC)
    assert format_time(at) == "2026-11-30T09:44:28.734253Z"


def test_format_time_converts_other_offsets_to_utc():
    jakarta = timezone(timedelta(hours=7))
    at = datetime(2026, 11, 30, 16, 44, 28, tzinfo=jakarta)
    text = format_time(at)
    assert text == "2026-11-30T09:44:28.000000Z"
    assert RFC3339_UTC.match(text)
    assert parse_time(text) == at  # the same instant


def test_format_time_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2026, 11, 30, 9, 44, 28))


def test_parse_time_reads_what_format_time_writes():
    at = datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=UTC)
    back = parse_time(format_time(at))
    assert back == at and back.utcoffset() == timedelta(0)


# ------------------------------------------------------------------------------ headers

def full_envelope() -> Envelope:
    return Envelope(id="0193aa-id", type="bapas.StageAdvanced.v2",
                    time="2026-11-30T09:44:28.734253Z", office="jaksel", context="guidance",
                    client_id="0193c1", sequence=7, prevhash="a" * 64, hash="b" * 64,
                    actor="pk-0007", correlation_id="corr-42", causation_id="cause-41")


def test_headers_carry_every_cloudevents_attribute_and_extension():
    h = full_envelope().headers()
    assert h == {
        "ce-specversion": "1.0",
        "ce-id": "0193aa-id",
        "ce-source": "/bapas/jaksel/guidance",
        "ce-type": "bapas.StageAdvanced.v2",
        "ce-subject": "0193c1",
        "ce-time": "2026-11-30T09:44:28.734253Z",
        "content-type": "application/json",
        "ce-office": "jaksel",
        "ce-sequence": "7",
        "ce-prevhash": "a" * 64,
        "ce-hash": "b" * 64,
        "ce-actor": "pk-0007",
        "ce-correlationid": "corr-42",
        "ce-causationid": "cause-41",
        MSG_ID: "0193aa-id",
    }
    assert MSG_ID == "Nats-Msg-Id"
    assert all(isinstance(v, str) for v in h.values())  # NATS headers are strings


def test_headers_round_trip_through_from_headers():
    env = full_envelope()
    assert Envelope.from_headers(env.headers(), SUBJECT, 12) == env


def test_optional_extensions_are_left_out_and_read_back_as_none():
    env = replace(full_envelope(), actor=None, correlation_id=None, causation_id=None)
    h = env.headers()
    assert not {"ce-actor", "ce-correlationid", "ce-causationid"} & h.keys()
    assert Envelope.from_headers(h, SUBJECT, 12) == env


def test_from_headers_ignores_headers_the_server_adds():
    h = {**full_envelope().headers(), "Nats-Sequence": "12", "Nats-Subject": SUBJECT,
         "Nats-Time-Stamp": "2026-11-30T09:44:28.8Z"}
    assert Envelope.from_headers(h, SUBJECT, 12) == full_envelope()


@pytest.mark.parametrize("header", ["ce-id", "ce-type", "ce-time", "ce-source", "ce-subject",
                                    "ce-sequence", "ce-prevhash", "ce-hash"])
def test_a_missing_header_is_named_with_the_subject_and_stream_sequence(header):
    h = full_envelope().headers()
    del h[header]
    with pytest.raises(EventDecodeError) as err:
        Envelope.from_headers(h, SUBJECT, 4711)
    assert err.value.subject == SUBJECT and err.value.stream_seq == 4711
    message = str(err.value)
    assert SUBJECT in message and "stream sequence 4711" in message and header in message


def test_a_message_without_headers_is_named():
    for headers in (None, {}):
        with pytest.raises(EventDecodeError, match=r"stream sequence 9\)"):
            Envelope.from_headers(headers, SUBJECT, 9)


@pytest.mark.parametrize("change", [{"ce-source": "/other/jaksel/guidance"},
                                    {"ce-source": "/bapas/jaksel"},
                                    {"ce-sequence": "seven"}])
def test_malformed_headers_are_decode_errors(change):
    h = {**full_envelope().headers(), **change}
    with pytest.raises(EventDecodeError) as err:
        Envelope.from_headers(h, SUBJECT, 3)
    assert SUBJECT in str(err.value) and "stream sequence 3" in str(err.value)


# ------------------------------------------------------------------------------ hash chain

BASE = dict(prevhash="0" * 64, event_id="e1", type_="bapas.X.v1",
            time="2026-01-01T00:00:00.000000Z", body=b'{"a":1}')


def test_chain_hash_is_sha256_hex():
    value = chain_hash(**BASE)
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert chain_hash(**BASE) == value  # deterministic


@pytest.mark.parametrize("field, other", [
    ("prevhash", "1" * 64), ("event_id", "e2"), ("type_", "bapas.X.v2"),
    ("time", "2026-01-01T00:00:00.000001Z"), ("body", b'{"a":2}'), ("body", b'{"a": 1}'),
])
def test_chain_hash_changes_with_every_input(field, other):
    assert chain_hash(**{**BASE, field: other}) != chain_hash(**BASE)


def test_an_intact_chain_verifies():
    events = chain(5)
    check = verify_chain(events)
    assert check.intact and check.checked == 5 and check.broken_at is None
    assert check.reason is None


def test_an_empty_history_is_intact():
    assert verify_chain([]).intact


def test_an_altered_body_is_named_at_its_index():
    events = chain(5)
    env, body = events[2]
    events[2] = (env, body.replace(b"session 3", b"session 9"))
    check = verify_chain(events)
    assert not check.intact
    assert (check.broken_at, check.reason, check.event_id) == (2, "altered", env.id)


@pytest.mark.parametrize("change", [{"time": "2027-01-01T00:00:00.000000Z"},
                                    {"type": "bapas.SessionHeld.v2"}, {"id": "forged"}])
def test_altered_attributes_are_named(change):
    events = chain(4)
    env, body = events[1]
    events[1] = (replace(env, **change), body)
    check = verify_chain(events)
    assert (check.intact, check.broken_at, check.reason) == (False, 1, "altered")


def test_a_removed_middle_event_is_missing():
    events = chain(5)
    del events[2]
    check = verify_chain(events)
    assert not check.intact
    assert (check.broken_at, check.reason) == (2, "missing")
    assert check.event_id == "event-4"  # the first event whose link fails
    assert "sequence 4 after 2" in check.detail


def test_two_swapped_events_break_the_chain_at_the_first_moved_one():
    events = chain(5)
    events[1], events[2] = events[2], events[1]
    check = verify_chain(events)
    assert not check.intact
    assert check.broken_at == 1 and check.event_id == "event-3"
    assert check.reason in ("reordered", "missing")


def test_an_event_moved_back_is_reordered():
    events = chain(4)
    events.append(events[1])  # an earlier event shows up again after later ones
    check = verify_chain(events)
    assert (check.intact, check.broken_at, check.reason) == (False, 4, "reordered")


def test_a_history_not_starting_at_sequence_one_is_missing_its_start():
    events = chain(4)[1:]
    check = verify_chain(events)
    assert (check.intact, check.broken_at, check.reason) == (False, 0, "missing")


def test_a_replaced_event_with_a_valid_own_hash_breaks_the_next_link():
    events = chain(4)
    env, _ = events[1]
    forged_body = b'{"step": 2, "note": "never happened"}'
    forged = replace(env, id="forged")
    events[1] = (replace(forged, hash=forged.computed_hash(forged_body)), forged_body)
    check = verify_chain(events)
    # the forgery is self-consistent; the event after it no longer links
    assert (check.intact, check.broken_at, check.reason) == (False, 2, "altered")
