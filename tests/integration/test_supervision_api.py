"""Supervision over HTTP on real NATS and PostgreSQL, beside registration and guidance:
DOMAIN scenarios 2, 3 and 6, every refusal, the sweep on the real clock, the end of
supervision when guidance closes."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest

from services.guidance.app import definition as guidance
from services.registration.app import definition as registration
from services.supervision.app import definition as supervision
from services.supervision.domain import DECIDER
from services.supervision.sweeper import sweep_missed_reports
from shared.store import EventStore
from shared.streams import CaseRef
from tests.integration.test_registration_api import body, nik
from tests.support.clock import office_today, stamp_on
from tests.support.service import running
from tests.support.wait import eventually


@pytest.fixture
async def svc(settings, streams, monkeypatch):
    monkeypatch.setenv("BAPAS_SUPERVISION_SWEEP_SECONDS", "0.3")  # the real clock, swept often
    async with running(registration, settings) as reg, running(guidance, settings) as gd, \
            running(supervision, settings) as sv:
        yield reg, gd, sv


async def register(reg, i: int, started_days_ago: int, program="PB", officer="pk-0007") -> str:
    start = office_today() - timedelta(days=started_days_ago)
    payload = body(nik(i), f"Klien {i}", program=program, officer=officer)
    payload["period"] = {"start_on": start.isoformat(),
                         "end_on": (start + timedelta(days=365)).isoformat()}
    payload["decision"]["issued_on"] = (start - timedelta(days=3)).isoformat()
    r = await reg.http.post("/v1/clients", json=payload,
                            headers=reg.token("jaksel", "supervisor", sub="kasubsi"))
    assert r.status_code == 201, r.text
    return r.json()["client_id"]


async def started(sv, cid, headers=None) -> dict:
    r = await eventually(lambda: sv.http.get(f"/v1/supervision/{cid}",
                                             headers=headers or sv.token()),
                         until=lambda r: r.status_code == 200, timeout=20)
    return r.json()


async def plan(sv, cid, first_due_on: date, **kw):
    r = await sv.http.put(f"/v1/supervision/{cid}/plan", headers=sv.token(),
                          json={"first_due_on": first_due_on.isoformat(), **kw})
    return r


async def visit(sv, cid, kind="LAPOR_DIRI", day: date | None = None, outcome="MET_COMPLIED",
                headers=None, **kw):
    """A visit on the office's `day` (default today), stamped at an instant already past."""
    occurred_at = stamp_on(day or office_today())
    return await sv.http.post(f"/v1/supervision/{cid}/visits",
                              headers={**sv.token(), **(headers or {})},
                              json={"kind": kind, "occurred_at": occurred_at,
                                    "outcome": outcome, "notes": "", **kw})


async def events_of(sv, cid) -> list:
    store = EventStore(sv.kernel.nc, sv.kernel.topology, sv.kernel.catalog, keys=sv.kernel.keys)
    return (await store.load("supervision", CaseRef("jaksel", cid))).events


async def test_scenario_2_three_missed_reports_make_a_khusus_violation_and_a_review(svc):
    reg, gd, sv = svc
    cid = await register(reg, 1, started_days_ago=100)
    view = await started(sv, cid)
    assert view["status"] == "ACTIVE" and view["plan"] is None
    start = date.fromisoformat(view["period"]["start_on"])
    assert (await plan(sv, cid, start + timedelta(days=30))).status_code == 200
    # the sweeper, on the real clock, finds the three windows that closed
    view = (await eventually(lambda: sv.http.get(f"/v1/supervision/{cid}", headers=sv.token()),
                             until=lambda r: len(r.json()["missed_reports"]) == 3)).json()
    assert [m["consecutive"] for m in view["missed_reports"]] == [1, 2, 3]
    assert [m["due_on"] for m in view["missed_reports"]] == [
        (start + timedelta(days=30 * k)).isoformat() for k in (1, 2, 3)]
    (violation,) = view["violations"]
    assert (violation["category"], violation["code"]) == ("KHUSUS", "WAJIB_LAPOR_3X")
    assert view["tpp_reviews"][0]["violation_id"] == violation["violation_id"]
    assert view["status"] == "ACTIVE" and view["consecutive_missed"] == 3
    case = (await gd.http.get(f"/v1/cases/{cid}", headers=gd.token())).json()
    assert case["status"] == "OPEN" and case["revocation"] is None  # nothing revoked
    # the board is a projection: it shows the sweep's events once it has applied them
    board = await eventually(
        lambda: sv.http.get("/v1/compliance", headers=sv.token()),
        until=lambda r: r.json()["entries"] and {"VIOLATION_AWAITING_TPP", "REPORT_MISSED"}
        <= {i["kind"] for i in r.json()["entries"][0]["items"]}, timeout=10)
    kinds = {i["kind"] for i in board.json()["entries"][0]["items"]}
    assert {"VIOLATION_AWAITING_TPP", "REPORT_MISSED"} <= kinds


async def test_scenario_3_a_report_after_two_misses_resets_the_count(svc):
    reg, gd, sv = svc
    cid = await register(reg, 2, started_days_ago=70)
    start = date.fromisoformat((await started(sv, cid))["period"]["start_on"])
    await plan(sv, cid, start + timedelta(days=30))
    await eventually(lambda: sv.http.get(f"/v1/supervision/{cid}", headers=sv.token()),
                     until=lambda r: len(r.json()["missed_reports"]) == 2)
    r = await visit(sv, cid)
    assert r.status_code == 200 and r.json()["events"] == ["VisitLogged"]
    view = (await sv.http.get(f"/v1/supervision/{cid}", headers=sv.token())).json()
    assert view["consecutive_missed"] == 0 and view["violations"] == []
    assert view["contacts"][0]["covers_due_on"] == (start + timedelta(days=90)).isoformat()
    assert view["next_due_on"] == (start + timedelta(days=120)).isoformat()


async def test_scenario_6_a_client_who_moved_unreported_is_a_khusus_violation(svc):
    reg, gd, sv = svc
    cid = await register(reg, 3, started_days_ago=20)
    await started(sv, cid)
    r = await visit(sv, cid, kind="KUNJUNGAN_RUMAH", day=office_today() - timedelta(days=1),
                    outcome="MOVED_UNREPORTED")
    assert r.status_code == 200 and r.json()["events"] == ["VisitLogged", "ViolationRecorded"]
    visited, violation = (await events_of(sv, cid))[-2:]
    assert visited.type == "VisitLogged" and not visited.data.counts_as_report
    assert (violation.data.category, violation.data.code) == ("KHUSUS", "PINDAH_TANPA_LAPOR")
    assert violation.data.source_id == visited.data.visit_id


async def test_a_visit_retried_with_its_idempotency_key_is_stored_once(svc):
    reg, gd, sv = svc
    cid = await register(reg, 4, started_days_ago=20)
    await started(sv, cid)
    day = office_today() - timedelta(days=1)
    first = await visit(sv, cid, day=day, outcome="MOVED_UNREPORTED", kind="KUNJUNGAN_RUMAH",
                        headers={"Idempotency-Key": "visit-4-a"})
    again = await visit(sv, cid, day=day, outcome="MOVED_UNREPORTED", kind="KUNJUNGAN_RUMAH",
                        headers={"Idempotency-Key": "visit-4-a"})
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["events"] == again.json()["events"] == ["VisitLogged", "ViolationRecorded"]
    other = await visit(sv, cid, day=day, headers={"Idempotency-Key": "visit-4-b"})
    assert other.status_code == 200 and other.json()["events"] == ["VisitLogged"]
    types = [e.type for e in await events_of(sv, cid)]
    assert types.count("VisitLogged") == 2 and types.count("ViolationRecorded") == 1
    bad = await visit(sv, cid, headers={"Idempotency-Key": "x" * 201})
    assert bad.status_code == 422 and bad.json()["field"] == "header.Idempotency-Key"


async def test_every_refusal_names_its_rule(svc):
    reg, gd, sv = svc
    cid = await register(reg, 4, started_days_ago=20)
    start = date.fromisoformat((await started(sv, cid))["period"]["start_on"])
    checks = [
        (await visit(sv, cid, day=office_today() + timedelta(days=3)), "date_future"),
        (await visit(sv, cid, day=start - timedelta(days=2)), "outside_period"),
        (await visit(sv, cid, kind="LAPOR_JARAK_JAUH", remote_reason="jauh"),
         "remote_not_allowed"),
        (await plan(sv, cid, start + timedelta(days=400)), "after_period"),
        (await plan(sv, cid, start - timedelta(days=1)), "before_period"),
        (await plan(sv, cid, start + timedelta(days=30), interval_days=7, grace_days=7),
         "grace_range"),
    ]
    for response, rule in checks:
        assert response.status_code == 422 and response.json()["rule"] == rule, response.text
    await plan(sv, cid, start + timedelta(days=30), remote_allowed=True)
    r = await visit(sv, cid, kind="LAPOR_JARAK_JAUH")
    assert r.status_code == 422 and r.json()["field"] == "remote_reason"
    r = await sv.http.post(f"/v1/supervision/{cid}/violations", headers=sv.token(),
                           json={"category": "UMUM", "code": "PINDAH_TANPA_LAPOR"})
    assert r.status_code == 422 and r.json()["field"] == "code"
    r = await sv.http.post(f"/v1/supervision/{cid}/visits", headers=sv.token(),
                           json={"kind": "LAPOR_DIRI", "occurred_at": "2026-11-02T09:30:00",
                                 "outcome": "MET_COMPLIED"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "occurred_at"
    other = sv.token("bandung", "pk", sub="pk-0100")
    assert (await sv.http.get(f"/v1/supervision/{cid}", headers=other)).status_code == 404
    assert (await sv.http.get(f"/v1/supervision/{cid}")).status_code == 401
    ok = await sv.http.post(f"/v1/supervision/{cid}/violations", headers=sv.token(),
                            json={"category": "UMUM", "code": "TERSANGKA", "notes": "polsek"})
    assert ok.status_code == 200 and ok.json()["events"] == ["ViolationRecorded"]


async def test_a_childs_supervision_is_seen_by_its_officer_only(svc):
    reg, gd, sv = svc
    cid = await register(reg, 5, started_days_ago=10, program="DIVERSI", officer="pk-0001")
    await started(sv, cid, sv.token(sub="pk-0001"))
    assert (await sv.http.get(f"/v1/supervision/{cid}", headers=sv.token())).status_code == 404
    await eventually(lambda: sv.http.get("/v1/compliance", headers=sv.token(sub="pk-0001")),
                     until=lambda r: [e["client_id"] for e in r.json()["entries"]] == [cid])
    assert (await sv.http.get("/v1/compliance", headers=sv.token())).json()["entries"] == []


async def test_two_sweeps_at_once_record_each_miss_once(svc):
    reg, gd, sv = svc
    cid = await register(reg, 6, started_days_ago=200)
    start = date.fromisoformat((await started(sv, cid))["period"]["start_on"])
    schema = sv.kernel.schema
    await eventually(lambda: sv.kernel.pool.fetchval(
        f'SELECT count(*) FROM "{schema}".board WHERE client_id = $1', cid), equals=1)
    await plan(sv, cid, start + timedelta(days=14), interval_days=14)
    await eventually(lambda: sv.kernel.pool.fetchval(
        f'SELECT next_due_on FROM "{schema}".board WHERE client_id = $1', cid),
        until=lambda due: due is not None)
    runner = sv.kernel.command_runner("supervision", DECIDER)
    await asyncio.gather(*(sweep_missed_reports(sv.kernel.pool, schema, runner, office_today())
                           for _ in range(3)))
    await asyncio.sleep(1)  # and the service's own sweeper, on its own schedule
    missed = [e.data.due_on for e in await events_of(sv, cid) if e.type == "ReportMissed"]
    expected = [start + timedelta(days=14 * k) for k in range(1, 15)
                if start + timedelta(days=14 * k + 3) < office_today()]
    assert missed == expected and len(missed) == len(set(missed)) == 14


async def test_closing_guidance_ends_supervision_and_leaves_the_board(svc):
    reg, gd, sv = svc
    cid = await register(reg, 7, started_days_ago=10)
    await started(sv, cid)
    await eventually(lambda: sv.http.get("/v1/compliance", headers=sv.token()),
                     until=lambda r: cid in [e["client_id"] for e in r.json()["entries"]])
    await eventually(lambda: gd.http.get(f"/v1/cases/{cid}", headers=gd.token()),
                     until=lambda r: r.status_code == 200)
    r = await gd.http.post(f"/v1/cases/{cid}/close", headers=gd.token(),
                           json={"reason": "DECEASED", "closed_on": office_today().isoformat()})
    assert r.status_code == 200, r.text
    view = (await eventually(lambda: sv.http.get(f"/v1/supervision/{cid}", headers=sv.token()),
                             until=lambda r: r.json()["status"] == "ENDED")).json()
    assert view["ended"]["reason"] == "guidance closed: DECEASED"
    await eventually(lambda: sv.http.get("/v1/compliance", headers=sv.token()),
                     until=lambda r: cid not in [e["client_id"] for e in r.json()["entries"]])
    refused = await visit(sv, cid)
    assert refused.status_code == 409 and refused.json()["rule"] == "ended"


async def test_the_board_lists_the_most_urgent_first(svc):
    reg, gd, sv = svc
    due_soon = await register(reg, 8, started_days_ago=25)
    missed = await register(reg, 9, started_days_ago=45)
    violated = await register(reg, 10, started_days_ago=5)
    for cid in (due_soon, missed, violated):
        await started(sv, cid)
    await plan(sv, due_soon, office_today() + timedelta(days=5))
    await plan(sv, missed, office_today() - timedelta(days=10))
    await plan(sv, violated, office_today() + timedelta(days=20))
    await sv.http.post(f"/v1/supervision/{violated}/violations", headers=sv.token(),
                       json={"category": "KHUSUS", "code": "MERESAHKAN_MASYARAKAT"})
    board = await eventually(
        lambda: sv.http.get("/v1/compliance", headers=sv.token(), params={"officer_id": "pk-0007"}),
        until=lambda r: len(r.json()["entries"]) == 3 and r.json()["entries"][1][
            "consecutive_missed"] == 1)
    assert [e["client_id"] for e in board.json()["entries"]] == [violated, missed, due_soon]
