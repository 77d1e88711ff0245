"""The console's translations: forms to request bodies, refusals to fields, dates to the
way an Indonesian reader writes them, the monthly report to rows and CSV."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.console.backend import Refused
from services.console.forms import ACTIONS, REGISTRATION_FIELDS, errors_by_field, nest
from services.console.report import Report, parse_month
from services.console.words import label, tanggal, waktu


def test_dates_are_written_as_in_an_indonesian_letter():
    assert tanggal(date(2026, 12, 5)) == "5 Desember 2026"
    assert tanggal("2026-08-17") == "17 Agustus 2026"
    # an instant is shown on the office's calendar (WIB): 20:30 UTC is the next day there
    assert tanggal("2026-12-31T20:30:00Z") == "1 Januari 2027"
    assert waktu(datetime(2026, 12, 5, 7, 30, tzinfo=UTC)) == "5 Desember 2026 14.30 WIB"
    assert tanggal(None) == waktu("") == "–"


def test_codes_get_the_office_words_and_unknown_codes_stay_as_they_are():
    assert label("program", "PB") == "Pembebasan Bersyarat"
    assert label("stage", "LANJUTAN") == "Tahap lanjutan"
    assert label("program", "NEW_PROGRAM") == "NEW_PROGRAM"


def test_form_fields_named_by_api_paths_nest_and_empty_ones_are_left_out():
    assert nest({"person.nik": " 3171 ", "person.phone": "", "program": "PB",
                 "activities.0.kind": "KESEHATAN", "activities.0.approach": "INDIVIDU"}) == {
        "person": {"nik": "3171"}, "program": "PB",
        "activities": [{"kind": "KESEHATAN", "approach": "INDIVIDU"}]}


def test_each_action_builds_the_body_its_service_expects():
    litmas = ACTIONS["litmas"].body({"purpose": "REINTEGRASI", "risk_level": "RENDAH",
                                     "needs": "pekerjaan\n\n tempat tinggal ",
                                     "recommendation": "r", "summary": ""})
    assert litmas == {"purpose": "REINTEGRASI", "risk_level": "RENDAH", "recommendation": "r",
                      "needs": ["pekerjaan", "tempat tinggal"]}
    visit = ACTIONS["kunjungan"].body({"kind": "KUNJUNGAN_RUMAH", "outcome": "MET_COMPLIED",
                                       "occurred_at": "2026-12-05T14:30", "notes": ""})
    assert visit["occurred_at"] == "2026-12-05T14:30:00+07:00"  # the office's wall clock
    plan = ACTIONS["rencana"].body({"interval_days": "30", "grace_days": "3"})
    assert plan == {"interval_days": "30", "grace_days": "3", "remote_allowed": False}
    stage = ACTIONS["tahap"].body({"to_stage": "LANJUTAN", "tpp_decision_id": "d1",
                                   "csrf": "ignored"})
    assert stage == {"to_stage": "LANJUTAN", "tpp_decision_id": "d1"}


def test_refusals_land_beside_the_field_they_name():
    refused = Refused(422, {"errors": [
        {"field": "person.nik", "rule": "nik", "message": "not a valid NIK"},
        {"field": "period", "rule": "period_order", "message": "end_on must be after"},
        {"field": "needs.0", "rule": "string_too_long", "message": "too long"},
        {"field": "person.full_name", "rule": "an_unknown_rule", "message": "as written"}]})
    errors = errors_by_field(refused, (*REGISTRATION_FIELDS, "needs"))
    assert errors["person.nik"].startswith("NIK tidak valid")
    assert errors["period.end_on"] == "Tanggal selesai harus sesudah tanggal mulai."
    assert errors["needs"] == "Terlalu panjang."
    assert errors["person.full_name"] == "as written"
    # a command refused for unmet conditions: those not on the form go to its top
    missing = Refused(422, {"field": "program", "rule": "program_missing", "missing": [
        {"field": "program", "rule": "program_missing", "message": "no program"},
        {"field": "litmas", "rule": "litmas_missing", "message": "no litmas"}]})
    assert errors_by_field(missing, ACTIONS["tahap"].fields) == {
        "": "Belum ada program bimbingan untuk tahap ini. Litmas belum dicatat."}


def test_the_monthly_report_takes_each_context_s_counts():
    report = Report.of("jaksel", date(2026, 12, 1), {
        "registration": {"office": "jaksel", "month": "2026-12", "registrations": 3,
                         "registrations_by_program": {"PB": 2, "CB": 1},
                         "a_new_count": 7},
        "guidance": {"active_by_stage": {"AWAL": 4, "LANJUTAN": 0, "AKHIR": 1},
                     "active_by_program": {"PB": 5},
                     "active_by_program_and_stage": {"PB": {"AWAL": 4, "LANJUTAN": 0,
                                                            "AKHIR": 1}}},
        "supervision": None})
    assert report.totals == [("registrations", "Klien baru", 3),
                             ("a_new_count", "a new count", 7)]  # shown, not dropped
    titles = [s.title for s in report.sections]
    assert titles == ["Klien baru menurut program", "Klien aktif menurut tahap"]
    assert report.sections[1].rows[0] == ("AWAL", "Tahap awal", 4)
    assert report.grid.rows == [("PB", "Pembebasan Bersyarat", [4, 0, 1])]
    assert report.missing == ["supervision"]
    lines = report.csv().splitlines()
    assert lines[0] == "kantor,bulan,bagian,kode,uraian,jumlah"
    assert "jaksel,2026-12,ringkasan,registrations,Klien baru,3" in lines
    assert "jaksel,2026-12,Klien baru menurut program,PB,Pembebasan Bersyarat,2" in lines
    assert ("jaksel,2026-12,Klien aktif menurut program dan tahap,PB/AWAL,"
            "\"Pembebasan Bersyarat, tahap awal\",4") in lines


def test_a_month_is_written_yyyy_mm():
    today = date(2026, 12, 7)
    assert parse_month(None, today) == date(2026, 12, 1)
    assert parse_month("2026-02", today) == date(2026, 2, 1)
    for bad in ("2026-13", "2026-1", "Desember", "2026-00"):
        with pytest.raises(ValueError):
            parse_month(bad, today)
