"""The monthly office report (laporan bulanan) on real NATS and PostgreSQL: registration,
guidance and supervision each answer `GET /v1/reports/monthly` with the counts they own,
after real registrations, decisions, closures, transfers, visits, sweeps and violations;
another office's facts stay out; a bad month, a role without access and another office
are refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from services.guidance.app import definition as guidance
from services.registration.app import definition as registration
from services.supervision.app import definition as supervision
from shared.office_time import Month
from tests.integration.test_registration_api import body, nik
from tests.support.clock import now_utc, office_today, stamp_on
from tests.support.service import running
from tests.support.wait import eventually

PROGRAMS = ["PB", "CB", "CMB", "ASIMILASI", "DIVERSI", "PIDANA_BERSYARAT", "PIDANA_PENGAWASAN"]
LITMAS = {"purpose": "REINTEGRASI", "risk_level": "SEDANG", "needs": ["pekerjaan"],
          "recommendation": "bimbingan kemandirian", "summary": "klien kooperatif"}


@pytest.fixture
async def svc(settings, streams, monkeypatch):
    monkeypatch.setenv("BAPAS_SUPERVISION_SWEEP_SECONDS", "0.3")  # the real clock, swept often
    async with running(registration, settings) as reg, running(guidance, settings) as gd, \
            running(supervision, settings) as sv:
        yield reg, gd, sv


async def this_month() -> Month:
    """The office's month now; a test that would straddle midnight WIB at the month's end
    waits for the new month first, so that what it does all falls in the month it reads."""
    now = now_utc()
    month = Month.of(now)
    left = (month.end - now).total_seconds()
    if left < 180:
        await asyncio.sleep(left + 1)
        month = Month.of(now_utc())
    return month


def before(month: Month) -> Month:
    day = month.first_day - timedelta(days=1)
    return Month(day.year, day.month)


def of_day(day: date) -> Month:
    return Month(day.year, day.month)


def zeros(keys) -> dict[str, int]:
    return dict.fromkeys(keys, 0)


def with_counts(keys, **found: int) -> dict[str, int]:
    return {**zeros(keys), **found}


async def register(reg, i: int, program: str = "PB", office: str = "jaksel",
                   started_days_ago: int = 20) -> str:
    payload = body(nik(i), f"Klien {i}", program=program)
    start = office_today() - timedelta(days=started_days_ago)
    payload["period"] = {"start_on": start.isoformat(),
                         "end_on": (start + timedelta(days=365)).isoformat()}
    payload["decision"]["issued_on"] = (start - timedelta(days=3)).isoformat()
    r = await reg.http.post("/v1/clients", json=payload,
                            headers=reg.token(office, "supervisor", sub="kasubsi"))
    assert r.status_code == 201, r.text
    return r.json()["client_id"]


async def report(service, month: Month | str | None = None, *roles: str, office: str = "jaksel",
                 of_office: str | None = None):
    """The report as a person of `office` with `roles` (default: pk) asks for it; `month`
    and `of_office` go as given into the query (`month` and `office`)."""
    query = {}
    if month is not None:
        query["month"] = str(month)
    if of_office is not None:
        query["office"] = of_office
    return await service.http.get("/v1/reports/monthly", params=query,
                                   headers=service.token(office, *(roles or ("pk",)),
                                                         sub="pk-0007"))


async def settles(service, month: Month, expected: dict, office: str = "jaksel") -> dict:
    """The report of `month`, once the projection shows `expected` (it is ~100 ms behind)."""
    r = await eventually(lambda: report(service, month, office=office),
                         until=lambda r: r.status_code == 200 and r.json() == expected,
                         timeout=30)
    return r.json()


class Guidance:
    def __init__(self, gd) -> None:
        self.gd = gd
        self.pk = gd.token("jaksel", "pk", sub="pk-0007")
        self.head = gd.token("jaksel", "head", sub="kabapas-01")

    async def opened(self, cid: str, office: str = "jaksel") -> None:
        headers = self.gd.token(office, "supervisor", sub="kasubsi")
        await eventually(lambda: self.gd.http.get(f"/v1/cases/{cid}", headers=headers),
                         until=lambda r: r.status_code == 200, timeout=20)

    async def post(self, cid: str, path: str, payload: dict, headers=None) -> dict:
        r = await self.gd.http.post(f"/v1/cases/{cid}/{path}", json=payload,
                                    headers=headers or self.pk)
        assert r.status_code == 200, r.text
        return r.json()

    async def decision(self, cid: str, subject: str) -> str:
        return (await self.post(cid, "tpp-decisions", {
            "subject": subject, "outcome": "APPROVED", "met_on": office_today().isoformat(),
            "members": ["Kasi BK", "PK Madya"]}))["decision_id"]


async def test_registrations_transfers_stages_and_closures_are_counted_in_their_month(svc):
    reg, gd, _ = svc
    month = await this_month()
    g = Guidance(gd)
    advanced = await register(reg, 1, "PB")
    waiting = await register(reg, 2, "PB")
    deceased = await register(reg, 3, "PB")
    moved = await register(reg, 4, "CB")
    revoked = await register(reg, 5, "ASIMILASI")
    own_bandung = await register(reg, 6, "PB", office="bandung")
    for cid in (advanced, waiting, deceased, moved, revoked):
        await g.opened(cid)
    await g.opened(own_bandung, "bandung")

    # tahap awal -> lanjutan on a litmas, a program and the panel's decision
    await g.post(advanced, "litmas", LITMAS)
    await g.post(advanced, "programs", {"stage": "AWAL", "activities": [
        {"kind": "KEMANDIRIAN", "approach": "INDIVIDU", "frequency": "MONTHLY",
         "description": "las"}]})
    stage_decision = await g.decision(advanced, "STAGE")
    await g.post(advanced, "stage", {"to_stage": "LANJUTAN", "tpp_decision_id": stage_decision})
    # a death, today
    await g.post(deceased, "close", {"reason": "DECEASED",
                                     "closed_on": office_today().isoformat()})
    # the revocation path: the panel, the proposal, the head, the closure
    revocation_decision = await g.decision(revoked, "REVOCATION")
    await g.post(revoked, "revocation", {"action": "PROPOSE",
                                         "tpp_decision_id": revocation_decision,
                                         "violation_ids": ["v-1"]})
    await g.post(revoked, "revocation", {"action": "IMPOSE"}, g.head)
    await g.post(revoked, "close", {"reason": "REVOKED"}, g.head)
    # a transfer to bandung, on the panel's decision
    transfer_decision = await g.decision(moved, "TRANSFER")
    r = await reg.http.post(f"/v1/clients/{moved}/transfer",
                            headers=reg.token("jaksel", "head", sub="kabapas-01"),
                            json={"to_office": "bandung", "tpp_decision_id": transfer_decision,
                                  "approved_by": "kabapas-01"})
    assert r.status_code == 200, r.text
    await g.opened(r.json()["new_client_id"], "bandung")

    jaksel = await settles(reg, month, {
        "office": "jaksel", "month": str(month),
        "registrations": 5, "registrations_by_program": with_counts(PROGRAMS, PB=3, CB=1,
                                                                    ASIMILASI=1),
        "transfers_in": 0, "transfers_in_by_program": zeros(PROGRAMS),
        "transfers_out": 1, "transfers_out_by_office": {"bandung": 1},
        # the death and the revocation closed their registrations, the transfer moved one
        "active_clients": 2, "active_clients_by_program": with_counts(PROGRAMS, PB=2)})
    assert jaksel["month"] == str(month)
    await settles(reg, month, {
        "office": "bandung", "month": str(month),
        "registrations": 1, "registrations_by_program": with_counts(PROGRAMS, PB=1),
        "transfers_in": 1, "transfers_in_by_program": with_counts(PROGRAMS, CB=1),
        "transfers_out": 0, "transfers_out_by_office": {},
        "active_clients": 2, "active_clients_by_program": with_counts(PROGRAMS, PB=1, CB=1)},
        office="bandung")

    stages = ["AWAL", "LANJUTAN", "AKHIR"]
    grid = {p: zeros(stages) for p in PROGRAMS}
    grid["PB"] = {"AWAL": 1, "LANJUTAN": 1, "AKHIR": 0}
    await settles(gd, month, {
        "office": "jaksel", "month": str(month),
        "active_cases": 2, "active_by_program": with_counts(PROGRAMS, PB=2),
        "active_by_stage": {"AWAL": 1, "LANJUTAN": 1, "AKHIR": 0},
        "active_by_program_and_stage": grid,
        "closures": 3, "closures_by_reason": {"COMPLETED": 0, "REVOKED": 1, "TRANSFERRED": 1,
                                              "DECEASED": 1},
        "revocations": 1, "revocations_proposed": 1,
        "litmas_submitted": 1, "litmas_by_purpose": {"REINTEGRASI": 1, "DIVERSI": 0,
                                                     "PEMBIMBINGAN": 0},
        "litmas_submitted_late": 0, "litmas_overdue": 0,
        "tpp_decisions": 3, "tpp_decisions_by_subject": {"STAGE": 1, "PROGRAM": 0,
                                                         "REVOCATION": 1, "TRANSFER": 1},
        "tpp_decisions_by_outcome": {"APPROVED": 3, "REJECTED": 0, "DEFERRED": 0}})
    bandung = (await eventually(lambda: report(gd, month, office="bandung"),
                                until=lambda r: r.json()["active_cases"] == 2)).json()
    assert bandung["active_by_program"] == with_counts(PROGRAMS, PB=1, CB=1)
    assert bandung["active_by_stage"] == {"AWAL": 2, "LANJUTAN": 0, "AKHIR": 0}
    assert bandung["closures"] == bandung["tpp_decisions"] == 0

    # all of it happened this month: the month before knows none of it
    earlier = before(month)
    r = await report(reg, earlier)
    assert r.status_code == 200 and r.json()["month"] == str(earlier)
    assert r.json()["registrations"] == r.json()["active_clients"] == 0
    r = (await report(gd, earlier)).json()
    assert r["active_cases"] == r["closures"] == r["tpp_decisions"] == r["litmas_submitted"] == 0
    assert set(r["closures_by_reason"].values()) == {0}  # every bar, at zero
    # without a month: the office's current month
    assert (await report(reg)).json() == jaksel


async def test_reports_are_counted_in_the_month_they_were_due(svc):
    reg, _, sv = svc
    month = await this_month()
    today = office_today()
    pk = sv.token("jaksel", "pk", sub="pk-0007")
    # three monthly reports missed (the sweep finds them on the real clock), then due again
    missing = await register(reg, 11, started_days_ago=100)
    # one report due today and made today
    reporting = await register(reg, 12, started_days_ago=20)
    # a home visit finds the client gone; the officer records a new offence
    gone = await register(reg, 13, started_days_ago=20)
    elsewhere = await register(reg, 14, office="bandung", started_days_ago=20)
    async def started(cid: str, office: str = "jaksel") -> dict:
        headers = sv.token(office, "supervisor", sub="kasubsi")
        r = await eventually(lambda: sv.http.get(f"/v1/supervision/{cid}", headers=headers),
                             until=lambda r: r.status_code == 200, timeout=20)
        return r.json()

    views = {cid: await started(cid) for cid in (missing, reporting, gone)}
    views[elsewhere] = await started(elsewhere, "bandung")
    start = {cid: date.fromisoformat(v["period"]["start_on"]) for cid, v in views.items()}
    end = {cid: date.fromisoformat(v["period"]["end_on"]) for cid, v in views.items()}

    async def plan(cid: str, first_due_on: date, office: str = "jaksel") -> None:
        r = await sv.http.put(f"/v1/supervision/{cid}/plan",
                              headers=sv.token(office, "pk", sub="pk-0007"),
                              json={"interval_days": 30, "grace_days": 3,
                                    "first_due_on": first_due_on.isoformat()})
        assert r.status_code == 200, r.text

    async def contact(cid: str, kind: str, outcome: str, office: str = "jaksel") -> list:
        r = await sv.http.post(f"/v1/supervision/{cid}/visits",
                               headers=sv.token(office, "pk", sub="pk-0007"),
                               json={"kind": kind, "occurred_at": stamp_on(today),
                                     "outcome": outcome, "notes": ""})
        assert r.status_code == 200, r.text
        return r.json()["events"]

    async def violation(cid: str, code: str, office: str = "jaksel") -> None:
        r = await sv.http.post(f"/v1/supervision/{cid}/violations",
                               headers=sv.token(office, "pk", sub="pk-0007"),
                               json={"category": "UMUM", "code": code, "notes": ""})
        assert r.status_code == 200, r.text

    await plan(missing, start[missing] + timedelta(days=30))
    missed = [start[missing] + timedelta(days=30 * k) for k in (1, 2, 3)]
    await eventually(lambda: sv.http.get(f"/v1/supervision/{missing}", headers=pk),
                     until=lambda r: len(r.json()["missed_reports"]) == 3)
    await plan(reporting, today)
    assert await contact(reporting, "LAPOR_DIRI", "MET_COMPLIED") == ["VisitLogged"]
    assert await contact(gone, "KUNJUNGAN_RUMAH", "MOVED_UNREPORTED") == [
        "VisitLogged", "ViolationRecorded"]
    await violation(gone, "TERSANGKA")
    # bandung's facts, which jaksel's report must not count
    await plan(elsewhere, today, office="bandung")
    await contact(elsewhere, "LAPOR_DIRI", "MET_COMPLIED", office="bandung")
    await contact(elsewhere, "KUNJUNGAN_KERJA", "MET_COMPLIED", office="bandung")
    await violation(elsewhere, "TERPIDANA", office="bandung")

    def every(first: date, last: date) -> list[date]:
        return [first + timedelta(days=30 * k) for k in range((last - first).days // 30 + 1)]

    received = [today]
    pending = (every(missed[-1] + timedelta(days=30), end[missing])
               + every(today + timedelta(days=30), end[reporting]))

    def reports_in(m: Month) -> dict[str, int]:
        def n(days):
            return sum(1 for d in days if m.first_day <= d < m.next_first_day)
        return {"due": n(missed) + n(received) + n(pending), "received": n(received),
                "missed": n(missed), "pending": n(pending)}

    kinds = ["LAPOR_DIRI", "LAPOR_JARAK_JAUH", "KUNJUNGAN_RUMAH", "KUNJUNGAN_KERJA",
             "PERTEMUAN_KELUARGA", "PERTEMUAN_MASYARAKAT"]
    outcomes = ["MET_COMPLIED", "MET_FAILED_TO_COMPLY", "ACCEPTABLE_ABSENCE", "NOT_FOUND",
                "MOVED_UNREPORTED"]
    codes = ["TERSANGKA", "TERPIDANA", "MERESAHKAN_MASYARAKAT", "WAJIB_LAPOR_3X",
             "PINDAH_TANPA_LAPOR", "TIDAK_MENGIKUTI_PROGRAM"]
    now = await settles(sv, month, {
        "office": "jaksel", "month": str(month), "reports": reports_in(month),
        "visits": 2, "visits_by_kind": with_counts(kinds, LAPOR_DIRI=1, KUNJUNGAN_RUMAH=1),
        "visits_by_outcome": with_counts(outcomes, MET_COMPLIED=1, MOVED_UNREPORTED=1),
        # the third miss in a row (recorded by today's sweep), the move, the new offence
        "violations": 3, "violations_by_category": {"UMUM": 1, "KHUSUS": 2},
        "violations_by_code": with_counts(codes, TERSANGKA=1, WAJIB_LAPOR_3X=1,
                                          PINDAH_TANPA_LAPOR=1)})
    assert now["reports"]["received"] == 1
    # the months of the misses count them, and nothing else of this test
    for m in sorted({of_day(d) for d in missed} - {month}):
        r = (await report(sv, m)).json()
        assert r["reports"] == reports_in(m), m
        assert r["visits"] == r["violations"] == 0
    assert sum(reports_in(m)["missed"] for m in {of_day(d) for d in missed}) == 3
    # bandung's own report has bandung's facts only
    r = (await eventually(lambda: report(sv, month, office="bandung"),
                          until=lambda r: r.json()["visits"] == 2
                          and r.json()["violations"] == 1)).json()
    assert r["office"] == "bandung"
    assert r["visits_by_kind"] == with_counts(kinds, LAPOR_DIRI=1, KUNJUNGAN_KERJA=1)
    assert r["violations_by_code"] == with_counts(codes, TERPIDANA=1)
    assert r["reports"]["received"] == 1 and r["reports"]["missed"] == 0


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "2026-1", "26-12", "2026-12-01",
                                   "Desember", "", "0000-01", "2026-12 "])
async def test_a_bad_month_is_refused_naming_the_field_and_the_rule(svc, month):
    for service in svc:
        r = await report(service, month)
        assert r.status_code == 422, (month, r.text)
        doc = r.json()
        assert doc["field"] == "query.month" and doc["rule"] == "month_format"
        assert doc["errors"][0]["field"] == "query.month" and "YYYY-MM" in doc["detail"]


async def test_roles_and_offices_are_checked(svc):
    reg, _, sv = svc
    month = await this_month()
    await register(reg, 21, "PB", office="bandung")
    for service in svc:
        for role in ("agency", "admin"):
            r = await report(service, month, role)
            assert r.status_code == 403 and r.json()["rule"] == "role_required", r.text
        assert (await service.http.get("/v1/reports/monthly")).status_code == 401
        for role in ("pk", "supervisor", "head", "tpp", "auditor"):
            r = await report(service, month, role)
            assert r.status_code == 200 and r.json()["office"] == "jaksel", (role, r.text)
        # another office: auditors only
        r = await report(service, month, "supervisor", "head", of_office="bandung")
        assert r.status_code == 403 and r.json()["field"] == "query.office", r.text
        assert r.json()["rule"] == "office_scope"
        r = await report(service, month, "auditor", office="kanwil-dki", of_office="bandung")
        assert r.status_code == 200 and r.json()["office"] == "bandung"
        assert (await report(service, month, "pk", of_office="jaksel")).status_code == 200
    # the auditor reads bandung's counts, jaksel's staff their own (none)
    r = await eventually(lambda: report(reg, month, "auditor", office="kanwil-dki",
                                        of_office="bandung"),
                         until=lambda r: r.json()["registrations"] == 1)
    assert r.json()["registrations_by_program"]["PB"] == 1
    assert (await report(reg, month)).json()["registrations"] == 0
    # the default month is the office's current month (WIB)
    r = await report(sv)
    assert r.status_code == 200 and r.json()["month"] == str(Month.of(datetime.now(UTC)))
