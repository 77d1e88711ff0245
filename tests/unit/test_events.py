"""Event contracts: registration, decoding, upcasting and the catalog of several contexts."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import pytest
from pydantic import ValidationError

from shared.envelope import GENESIS_HASH, Envelope
from shared.errors import EventDecodeError
from shared.events import Event, EventCatalog, EventRegistry, InvalidEventBody, UnknownEventType
from shared.store import decode_message
from shared.streams import Topology
from tests.support.ledger import LEDGER, Credited


def registry_with_three_versions() -> tuple[EventRegistry, type[Event]]:
    """v1 {"name"}; v2 split the name; v3 added the date of birth (unknown for old facts)."""
    reg = EventRegistry("registration")

    @reg.event(version=3)
    class ClientRegistered(Event):
        given_name: str
        family_name: str
        born_on: date | None = None

    @reg.upcaster("ClientRegistered", from_version=1)
    def _v1(data: dict) -> dict:
        given, _, family = data["name"].partition(" ")
        return {"given_name": given, "family_name": family}

    @reg.upcaster("ClientRegistered", from_version=2)
    def _v2(data: dict) -> dict:
        return {**data, "born_on": None}

    return reg, ClientRegistered


def body(data: dict) -> bytes:
    return json.dumps(data).encode()


def test_registering_sets_type_and_version_on_the_class():
    reg, cls = registry_with_three_versions()
    assert (cls.event_type, cls.event_version) == ("ClientRegistered", 3)
    assert "ClientRegistered" in reg and "ClientUnknown" not in reg
    assert list(reg.types()) == [cls]


def test_a_name_can_be_given_and_version_defaults_to_one():
    reg = EventRegistry("guidance")

    @reg.event("LitmasSubmitted")
    class Submitted(Event):
        litmas_id: str

    assert (Submitted.event_type, Submitted.event_version) == ("LitmasSubmitted", 1)
    assert "LitmasSubmitted" in reg and "Submitted" not in reg


def test_the_same_type_cannot_be_registered_twice():
    reg = EventRegistry("guidance")

    @reg.event()
    class StageAdvanced(Event):
        stage: str

    with pytest.raises(ValueError, match="StageAdvanced"):
        @reg.event("StageAdvanced", version=2)
        class StageAdvancedAgain(Event):
            stage: str


def test_the_latest_version_decodes_directly():
    reg, cls = registry_with_three_versions()
    event = reg.decode("ClientRegistered", 3, body(
        {"given_name": "Budi", "family_name": "Santoso", "born_on": "2009-04-01"}))
    assert event == cls(given_name="Budi", family_name="Santoso", born_on=date(2009, 4, 1))


def test_an_old_version_is_upcast_through_every_step():
    reg, cls = registry_with_three_versions()
    event = reg.decode("ClientRegistered", 1, body({"name": "Budi Santoso"}))
    assert isinstance(event, cls)
    assert event == cls(given_name="Budi", family_name="Santoso", born_on=None)


def test_a_middle_version_runs_only_the_later_upcasters():
    reg, cls = registry_with_three_versions()
    event = reg.decode("ClientRegistered", 2, body({"given_name": "Siti", "family_name": "Aminah"}))
    assert event == cls(given_name="Siti", family_name="Aminah")


def test_the_ledger_reads_its_v1_credit():
    event = LEDGER.decode("Credited", 1, body({"value": "125", "memo": "gaji"}))
    assert event == Credited(amount=125, note="gaji")


def test_a_missing_upcaster_is_named():
    reg = EventRegistry("supervision")

    @reg.event(version=3)
    class ReportMissed(Event):
        due_on: date

    @reg.upcaster("ReportMissed", from_version=2)
    def _v2(data: dict) -> dict:
        return data

    with pytest.raises(UnknownEventType, match="no upcaster for ReportMissed from version 1"):
        reg.decode("ReportMissed", 1, body({"due_on": "2026-01-01"}))


def test_an_unknown_type_is_refused():
    reg, _ = registry_with_three_versions()
    with pytest.raises(UnknownEventType, match="ClientTeleported"):
        reg.decode("ClientTeleported", 1, b"{}")


def test_a_version_newer_than_known_is_refused():
    reg, _ = registry_with_three_versions()
    with pytest.raises(UnknownEventType, match=r"version 4 is newer .*\(latest 3\)"):
        reg.decode("ClientRegistered", 4, body({"given_name": "a", "family_name": "b"}))


def test_an_invalid_body_names_the_field():
    reg, _ = registry_with_three_versions()
    with pytest.raises(InvalidEventBody, match="born_on") as err:
        reg.decode("ClientRegistered", 3, body(
            {"given_name": "Budi", "family_name": "Santoso", "born_on": "not a date"}))
    assert isinstance(err.value, ValueError)


def test_a_missing_field_is_named():
    reg, _ = registry_with_three_versions()
    with pytest.raises(InvalidEventBody, match="family_name"):
        reg.decode("ClientRegistered", 3, body({"given_name": "Budi"}))


def test_an_unexpected_field_is_refused():
    reg, _ = registry_with_three_versions()
    with pytest.raises(InvalidEventBody, match="nickname"):
        reg.decode("ClientRegistered", 3, body(
            {"given_name": "Budi", "family_name": "Santoso", "nickname": "B"}))


def test_an_upcast_body_is_validated_too():
    reg, _ = registry_with_three_versions()
    with pytest.raises(InvalidEventBody, match="given_name"):
        reg.decode("ClientRegistered", 2, body({"given_name": 7, "family_name": "Santoso"}))


@pytest.mark.parametrize("version", [1, 3])
def test_a_body_that_is_not_json_is_invalid(version):
    reg, _ = registry_with_three_versions()
    with pytest.raises(InvalidEventBody):
        reg.decode("ClientRegistered", version, b"\xff not json")


def stored(type_: str, data: dict, seq: int = 7) -> tuple[dict[str, str], bytes]:
    """Headers and body of one stored message of a case, as the store reads them."""
    raw = body(data)
    env = Envelope(id=f"event-{seq}", type=type_, time="2026-01-05T08:00:00.000000Z",
                   office="jaksel", context="registration", client_id="0193c1", sequence=1,
                   prevhash=GENESIS_HASH, hash="")
    return replace(env, hash=env.computed_hash(raw)).headers(), raw


SUBJECT = "bapas.jaksel.registration.0193c1"


def test_decode_message_upcasts_and_keeps_the_stored_bytes():
    reg, cls = registry_with_three_versions()
    headers, raw = stored("bapas.ClientRegistered.v1", {"name": "Budi Santoso"})
    event = decode_message(EventCatalog(reg), Topology(), "REGISTRATION", SUBJECT, 7, headers, raw)
    assert event.data == cls(given_name="Budi", family_name="Santoso")
    assert (event.type, event.version, event.sequence, event.stream_seq) == (
        "ClientRegistered", 1, 1, 7)
    assert event.body == raw and event.subject == SUBJECT


@pytest.mark.parametrize("type_, data", [
    ("bapas.ClientTeleported.v1", {}),
    ("bapas.ClientRegistered.v4", {"given_name": "a", "family_name": "b"}),
    ("bapas.ClientRegistered.v3", {"given_name": "a"}),
    ("ClientRegistered", {"given_name": "a", "family_name": "b"}),
])
def test_decode_message_names_subject_and_sequence_of_an_unreadable_event(type_, data):
    reg, _ = registry_with_three_versions()
    headers, raw = stored(type_, data)
    with pytest.raises(EventDecodeError) as err:
        decode_message(EventCatalog(reg), Topology(), "REGISTRATION", SUBJECT, 7, headers, raw)
    assert SUBJECT in str(err.value) and "stream sequence 7" in str(err.value)


def test_an_old_body_its_upcaster_cannot_read_names_subject_and_sequence():
    reg, _ = registry_with_three_versions()
    headers, raw = stored("bapas.ClientRegistered.v1", {"full_name": "Budi Santoso"})
    with pytest.raises(EventDecodeError) as err:
        decode_message(EventCatalog(reg), Topology(), "REGISTRATION", SUBJECT, 7, headers, raw)
    assert SUBJECT in str(err.value) and "stream sequence 7" in str(err.value)


def test_the_catalog_decodes_from_each_registry():
    reg, cls = registry_with_three_versions()
    catalog = EventCatalog(reg, LEDGER)
    assert "ClientRegistered" in catalog and "Credited" in catalog and "Other" not in catalog
    assert catalog.decode("Credited", 2, body({"amount": 5})) == Credited(amount=5)
    assert isinstance(catalog.decode("ClientRegistered", 1, body({"name": "A B"})), cls)
    with pytest.raises(UnknownEventType):
        catalog.decode("Other", 1, b"{}")


def test_the_catalog_refuses_one_type_from_two_contexts():
    a, b = EventRegistry("guidance"), EventRegistry("supervision")

    @a.event()
    class CaseClosed(Event):
        reason: str

    @b.event("CaseClosed")
    class SupervisionCaseClosed(Event):
        reason: str

    with pytest.raises(ValueError, match="CaseClosed .*guidance.*supervision"):
        EventCatalog(a, b)


def test_the_same_registry_twice_is_one_source():
    catalog = EventCatalog(LEDGER, LEDGER)
    assert catalog.decode("Credited", 2, body({"amount": 1})) == Credited(amount=1)


def test_events_are_frozen():
    event = Credited(amount=10, note="gaji")
    with pytest.raises(ValidationError):
        event.amount = 20
    assert event.amount == 10
    assert event.model_copy(update={"amount": 20}).amount == 20  # a new fact, not a change


def test_events_refuse_unknown_fields_when_made_in_code():
    with pytest.raises(ValidationError, match="memo"):
        Credited(amount=10, memo="gaji")
