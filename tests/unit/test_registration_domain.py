"""Registration rules as given / when / then: pure, no IO."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import pytest

from services.registration import domain as d
from services.registration.events import nik_case, rekeyed_nik_case
from shared.errors import DomainConflict, DomainError
from shared.privacy import IndexKey

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def registering(**overrides) -> d.RegisterClient:
    values = dict(
        client_id="c-1", office="jaksel", program=d.Program.PB,
        decision=d.Decision(number="PAS-1", issued_by="Dirjen PAS", issued_on=date(2026, 10, 1)),
        origin_institution="Lapas Cipinang",
        period=d.Period(start_on=date(2026, 10, 5), end_on=date(2027, 10, 4)),
        full_name="Siti Aminah", nik="3171015708450001", address="Jl. Kemang 5",
        registered_at=NOW, officer_id="pk-0007")
    values.update(overrides)
    return d.RegisterClient(**values)


def given(*events: d.Event) -> d.Client:
    return d.DECIDER.fold(events)


def registered(**overrides) -> d.ClientRegistered:
    return d.register(registering(**overrides), d.Client(), d.BookState(), d.NikState()).client[0]


class TestRegister:
    def test_the_nik_gives_birth_date_and_sex(self):
        e = registered()
        assert e.person.birth_date == date(1945, 8, 17) and e.person.sex is d.Sex.F
        assert e.warnings == [] and not e.is_child

    def test_the_register_book_gives_the_next_number_of_the_office_and_year(self):
        out = d.register(registering(), d.Client(), d.BookState(last_number=41), d.NikState())
        assert out.client[0].register_number == "JAKSEL-2026-00042"
        assert out.book == [d.RegisterNumberIssued(number=42, register_number="JAKSEL-2026-00042",
                                                   client_id="c-1")]
        assert out.nik == [d.NikClaimed(client_id="c-1")]

    def test_the_register_year_follows_the_office_calendar(self):
        new_year_wib = datetime(2026, 12, 31, 18, 30, tzinfo=UTC)  # 01:30 on 1 January in WIB
        assert registered(registered_at=new_year_wib).register_number == "JAKSEL-2027-00001"

    def test_a_stated_birth_date_or_sex_that_disagrees_is_kept_with_a_warning(self):
        e = registered(birth_date=date(1946, 1, 1), sex=d.Sex.M)
        assert e.person.birth_date == date(1946, 1, 1) and e.person.sex is d.Sex.M
        assert len(e.warnings) == 2

    def test_an_active_nik_in_the_office_is_refused_naming_the_client(self):
        with pytest.raises(DomainConflict) as err:
            d.register(registering(), d.Client(), d.BookState(), d.NikState(holder="c-0"))
        assert err.value.extra == {"existing_client_id": "c-0"} and "c-0" in err.value.message

    def test_a_transferred_client_is_received_even_if_the_nik_is_active(self):
        link = d.CaseLink(office="bandung", client_id="c-0")
        out = d.register(registering(transferred_from=link), d.Client(), d.BookState(),
                         d.NikState(holder="c-9"))
        assert out.nik == [] and "c-9" in out.client[0].warnings[0]

    @pytest.mark.parametrize("program", [d.Program.DIVERSI, d.Program.PIDANA_PENGAWASAN])
    def test_child_programs_make_a_childs_case(self, program):
        assert registered(program=program).is_child

    def test_someone_under_18_is_a_child_whatever_the_program(self):
        assert registered(nik="3171011503120001").is_child  # born 2012-03-15

    def test_a_two_digit_year_takes_the_latest_century_not_in_the_future(self):
        assert d.nik_facts("3171011503120001", date(2026, 1, 1)).birth_date == date(2012, 3, 15)
        assert d.nik_facts("3171011503450001", date(2026, 1, 1)).birth_date == date(1945, 3, 15)

    def test_the_period_must_end_after_it_starts(self):
        with pytest.raises(DomainError) as err:
            registered(period=d.Period(start_on=date(2026, 1, 1), end_on=date(2026, 1, 1)))
        assert err.value.field == "period.end_on"

    def test_a_decision_letter_from_the_future_is_refused(self):
        with pytest.raises(DomainError) as err:
            registered(decision=d.Decision(number="x", issued_by="y",
                                           issued_on=date(2026, 12, 25)))
        assert err.value.field == "decision.issued_on"

    def test_a_client_id_registers_once(self):
        with pytest.raises(DomainConflict):
            d.register(registering(), given(registered()), d.BookState(), d.NikState())


class TestChanges:
    def test_assigning_an_officer_names_the_previous_one(self):
        (e,) = d.decide(d.AssignOfficer("pk-0009", "rotasi", NOW), given(registered()))
        assert e == d.OfficerAssigned(officer_id="pk-0009", previous_officer_id="pk-0007",
                                      reason="rotasi", assigned_at=NOW)

    def test_assigning_the_same_officer_records_nothing(self):
        assert d.decide(d.AssignOfficer("pk-0007", "x", NOW), given(registered())) == []

    def test_an_address_change_keeps_the_previous_address(self):
        (e,) = d.decide(d.ChangeAddress("Jl. Melati 2", True, NOW), given(registered()))
        assert e.previous_address == "Jl. Kemang 5" and e.reported_by_client

    def test_a_correction_keeps_old_and_new_value(self):
        (e,) = d.decide(d.CorrectDetails("person.full_name", "Siti A. Lubis", "ketik", NOW),
                        given(registered()))
        assert (e.old_value, e.new_value) == ("Siti Aminah", "Siti A. Lubis")
        state = given(registered(), e)
        assert state.value("person.full_name") == "Siti A. Lubis"

    def test_correcting_the_program_to_a_child_program_makes_a_childs_case(self):
        (e,) = d.decide(d.CorrectDetails("program", "DIVERSI", "salah", NOW), given(registered()))
        assert given(registered(), e).is_child

    @pytest.mark.parametrize("field, value, rule", [
        ("person.nik", "3171015708450002", "not_correctable"),
        ("person.birth_date", "17-08-1945", "date"),
        ("person.sex", "X", "sex"),
        ("program", "HUKUMAN", "program"),
        ("person.full_name", "  ", "text"),
        ("period.end_on", "2026-01-01", "period_order"),
    ])
    def test_a_bad_correction_is_refused_naming_the_rule(self, field, value, rule):
        with pytest.raises(DomainError) as err:
            d.decide(d.CorrectDetails(field, value, "r", NOW), given(registered()))
        assert err.value.rule == rule

    def test_a_transfer_names_the_receiving_office_and_new_client(self):
        (e,) = d.decide(d.TransferClient("bandung", "tpp-1", "kabapas", "c-2", NOW),
                        given(registered()))
        assert (e.to_office, e.new_client_id) == ("bandung", "c-2")

    def test_a_transfer_to_the_same_office_is_refused(self):
        with pytest.raises(DomainError) as err:
            d.decide(d.TransferClient("jaksel", "tpp-1", "k", "c-2", NOW), given(registered()))
        assert err.value.field == "to_office"

    def test_after_a_transfer_the_record_is_read_only(self):
        moved = d.ClientTransferred(to_office="bandung", new_client_id="c-2",
                                    tpp_decision_id="t", approved_by="k", transferred_at=NOW)
        with pytest.raises(DomainConflict) as err:
            d.decide(d.ChangeAddress("Jl. Lain", True, NOW), given(registered(), moved))
        assert err.value.rule == "transferred"

    def test_an_unregistered_client_is_not_found(self):
        with pytest.raises(DomainError) as err:
            d.decide(d.ChangeAddress("x", True, NOW), d.Client())
        assert err.value.status == 404


def test_the_nik_index_case_shows_neither_the_nik_nor_a_plain_digest_of_it():
    nik = "3171015708450001"
    key = IndexKey(b"k" * 32)
    case = nik_case(nik, key)
    plain = hashlib.sha256(nik.encode()).hexdigest()
    assert case.startswith("nikh-") and nik not in case and plain[:12] not in case
    assert case == nik_case(nik, key) != nik_case("3171015708450002", key)
    # named by the key: without it, trying every NIK finds nothing
    assert nik_case(nik, IndexKey(b"j" * 32)) != case


def test_a_nik_index_case_of_an_earlier_version_is_renamed_to_the_same_case():
    nik, key = "3171015708450001", IndexKey(b"k" * 32)
    unkeyed = "nik-" + hashlib.sha256(nik.encode()).hexdigest()[:40]  # as earlier versions named it
    assert rekeyed_nik_case(unkeyed, key) == nik_case(nik, key)
    assert rekeyed_nik_case(nik_case(nik, key), key) is None
    assert rekeyed_nik_case("register-2026", key) is None


def test_an_index_key_is_long_enough():
    with pytest.raises(ValueError, match="BAPAS_PRIVACY_INDEX_KEY.*32"):
        IndexKey(b"short")
