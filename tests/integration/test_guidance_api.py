"""Guidance over HTTP on real NATS and PostgreSQL, with registration beside it: a case
opens from the registration event alone, and DOMAIN scenarios 4, 5 and 7 hold."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

import pytest

from services.guidance.app import definition as guidance
from services.guidance.desk import GuidanceDesk
from services.guidance.sweeper import sweep_overdue_litmas
from services.registration.app import definition as registration
from shared.store import EventStore
from shared.streams import CaseRef
from tests.integration.test_registration_api import body, nik
from tests.support.clock import office_today
from tests.support.service import running
from tests.support.wait import eventually


@pytest.fixture
async def svc(settings, streams):
    async with running(registration, settings) as reg, running(guidance, settings) as gd:
        yield reg, gd


async def register(reg, payload, office="jaksel") -> str:
    r = await reg.http.post("/v1/clients", json=payload,
                            headers=reg.token(office, "pk", "supervisor", "head", sub="kasubsi"))
    assert r.status_code == 201, r.text
    return r.json()["client_id"]


async def opened(gd, cid, headers) -> dict:
    r = await eventually(lambda: gd.http.get(f"/v1/cases/{cid}", headers=headers),
                         until=lambda r: r.status_code == 200, timeout=20)
    return r.json()


def pk(gd, office="jaksel", sub="pk-0007"):
    return gd.token(office, "pk", sub=sub)


def head(gd, office="jaksel"):
    return gd.token(office, "head", sub="kabapas-01")


async def post(gd, cid, path, payload, headers):
    return await gd.http.post(f"/v1/cases/{cid}/{path}", json=payload, headers=headers)


LITMAS = {"purpose": "REINTEGRASI", "risk_level": "SEDANG", "needs": ["pekerjaan"],
          "recommendation": "bimbingan kemandirian", "summary": "klien kooperatif"}


def program(stage):
    return {"stage": stage, "activities": [{"kind": "KEMANDIRIAN", "approach": "INDIVIDU",
                                            "frequency": "MONTHLY", "description": "las"}]}


async def decision(gd, cid, headers, subject="STAGE", outcome="APPROVED") -> str:
    r = await post(gd, cid, "tpp-decisions", {"subject": subject, "outcome": outcome,
                                              "met_on": office_today().isoformat(),
                                              "members": ["Kasi BK", "PK Madya"]}, headers)
    assert r.status_code == 200, r.text
    return r.json()["decision_id"]


async def test_registering_a_client_opens_its_case_at_tahap_awal(svc):
    reg, gd = svc
    cid = await register(reg, body())
    case = await opened(gd, cid, pk(gd))
    assert case["stage"] == "AWAL" and case["status"] == "OPEN"
    assert case["officer_id"] == "pk-0007" and case["program"] == "PB"
    requested = datetime.fromisoformat(case["litmas"]["requested_at"])
    due = datetime.fromisoformat(case["litmas"]["due_at"])
    assert due - requested == timedelta(days=7)
    start, end = (date.fromisoformat(case["period"][k]) for k in ("start_on", "end_on"))
    assert [date.fromisoformat(x) for x in case["review_dates"]] == [
        start + timedelta(days=round((end - start).days / 3)),
        start + timedelta(days=round((end - start).days * 2 / 3))]
    assert {i["kind"] for i in case["open_items"]} >= {"LITMAS_DUE", "PROGRAM_MISSING"}


async def test_scenario_5_the_stage_gate_names_what_is_missing_then_opens(svc):
    reg, gd = svc
    cid = await register(reg, body())
    await opened(gd, cid, pk(gd))
    r = await post(gd, cid, "stage", {"to_stage": "LANJUTAN", "tpp_decision_id": "nope"}, pk(gd))
    assert r.status_code == 422
    missing = {m["rule"] for m in r.json()["missing"]}
    assert missing == {"litmas_missing", "program_missing", "tpp_decision_unknown"}
    assert "litmas" in r.json()["detail"] and "program" in r.json()["detail"]
    skip = await post(gd, cid, "stage", {"to_stage": "AKHIR", "tpp_decision_id": "x"}, pk(gd))
    assert skip.status_code == 422 and skip.json()["rule"] == "stage_order"

    assert (await post(gd, cid, "litmas", LITMAS, pk(gd))).status_code == 200
    assert (await post(gd, cid, "programs", program("AWAL"), pk(gd))).status_code == 200
    rejected = await decision(gd, cid, pk(gd), outcome="REJECTED")
    r = await post(gd, cid, "stage", {"to_stage": "LANJUTAN", "tpp_decision_id": rejected},
                   pk(gd))
    assert r.status_code == 422 and r.json()["rule"] == "tpp_decision_not_approved"
    approved = await decision(gd, cid, gd.token("jaksel", "tpp", sub="tpp-ketua"))
    r = await post(gd, cid, "stage", {"to_stage": "LANJUTAN", "tpp_decision_id": approved},
                   pk(gd))
    assert r.status_code == 200 and r.json()["events"] == ["StageAdvanced"]
    store = EventStore(gd.kernel.nc, gd.kernel.topology, gd.kernel.catalog, keys=gd.kernel.keys)
    advanced = (await store.load("guidance", CaseRef("jaksel", cid))).events[-1]
    assert advanced.data.tpp_decision_id == approved and advanced.data.to_stage == "LANJUTAN"
    # the next stage needs its own program and a decision of its own
    again = await post(gd, cid, "stage", {"to_stage": "AKHIR", "tpp_decision_id": approved},
                       pk(gd))
    assert {m["rule"] for m in again.json()["missing"]} == {"program_missing",
                                                            "tpp_decision_used"}


async def test_scenario_4_a_diversion_litmas_is_due_in_72_hours_and_swept_once(svc):
    reg, gd = svc
    cid = await register(reg, body(nik(5, year=12), "Anak", program="DIVERSI",
                                   officer="pk-0001"))
    case = await opened(gd, cid, pk(gd, sub="pk-0001"))
    requested = datetime.fromisoformat(case["litmas"]["requested_at"])
    due = datetime.fromisoformat(case["litmas"]["due_at"])
    assert due - requested == timedelta(hours=72) and case["is_child"]
    # only the assigned officer (and supervisors, the head) see the child's case
    assert (await gd.http.get(f"/v1/cases/{cid}", headers=pk(gd))).status_code == 404
    runner = GuidanceDesk(gd.kernel.store).runner
    schema = gd.kernel.schema
    await eventually(lambda: gd.kernel.pool.fetchval(
        f'SELECT count(*) FROM "{schema}".cases WHERE client_id = $1', cid), equals=1)
    before = await sweep_overdue_litmas(gd.kernel.pool, schema, runner, due - timedelta(seconds=1))
    assert before == 0
    # two replicas sweep at the due time at once: one LitmasOverdue
    marked = await asyncio.gather(*(sweep_overdue_litmas(gd.kernel.pool, schema, runner, due)
                                    for _ in range(2)))
    store = EventStore(gd.kernel.nc, gd.kernel.topology, gd.kernel.catalog, keys=gd.kernel.keys)
    events = (await store.load("guidance", CaseRef("jaksel", cid))).events
    overdue = [e for e in events if e.type == "LitmasOverdue"]
    assert len(overdue) == 1 and sum(marked) >= 1
    assert overdue[0].data.officer_id == "pk-0001" and overdue[0].data.due_at == due
    await eventually(lambda: gd.kernel.pool.fetchval(
        f'SELECT litmas_overdue FROM "{schema}".cases WHERE client_id = $1', cid), equals=True)
    assert await sweep_overdue_litmas(gd.kernel.pool, schema, runner, due + timedelta(days=1)) == 0
    late = await post(gd, cid, "litmas", {**LITMAS, "purpose": "DIVERSI"}, pk(gd, sub="pk-0001"))
    assert late.status_code == 200
    view = (await gd.http.get(f"/v1/cases/{cid}", headers=pk(gd, sub="pk-0001"))).json()
    # once marked overdue, a litmas submitted afterwards counts as late
    assert view["litmas"]["overdue"] is True and view["litmas"]["submitted"]["late"] is True


async def test_scenario_7_completion_needs_akhir_the_end_date_and_a_letter(svc):
    reg, gd = svc
    start = office_today() - timedelta(days=400)
    payload = body(nik(6))
    payload["period"] = {"start_on": start.isoformat(),
                         "end_on": (office_today() - timedelta(days=1)).isoformat()}
    payload["decision"]["issued_on"] = (start - timedelta(days=3)).isoformat()
    cid = await register(reg, payload)
    await opened(gd, cid, pk(gd))
    close = {"reason": "COMPLETED", "letter_number": "W10.PAS.PAS5-PK.01.01-123",
             "closed_on": office_today().isoformat()}
    early = await post(gd, cid, "close", close, head(gd))
    assert early.status_code == 422 and early.json()["rule"] == "stage_not_final"
    await post(gd, cid, "litmas", LITMAS, pk(gd))
    for stage, to in (("AWAL", "LANJUTAN"), ("LANJUTAN", "AKHIR")):
        await post(gd, cid, "programs", program(stage), pk(gd))
        did = await decision(gd, cid, pk(gd))
        r = await post(gd, cid, "stage", {"to_stage": to, "tpp_decision_id": did}, pk(gd))
        assert r.status_code == 200, r.text
    assert (await post(gd, cid, "close", close, pk(gd))).status_code == 403  # the head signs
    no_letter = await post(gd, cid, "close", {**close, "letter_number": None}, head(gd))
    assert no_letter.status_code == 422 and no_letter.json()["field"] == "letter_number"
    r = await post(gd, cid, "close", close, head(gd))
    assert r.status_code == 200 and r.json()["events"] == ["GuidanceClosed"]
    after = await post(gd, cid, "sessions", {"kind": "KEMANDIRIAN", "approach": "INDIVIDU",
                                             "held_on": office_today().isoformat(),
                                             "participants": ["KLIEN"]}, pk(gd))
    assert after.status_code == 409 and after.json()["rule"] == "closed"
    # registration follows: the record closes and the person may be registered again
    record = await eventually(lambda: reg.http.get(f"/v1/clients/{cid}", headers=reg.token()),
                              until=lambda r: r.json().get("status") == "CLOSED")
    assert record.status_code == 200
    assert (await reg.http.post("/v1/clients", json=payload,
                                headers=reg.token())).status_code == 201


async def test_a_group_session_lands_in_every_case_or_in_none(svc):
    reg, gd = svc
    ids = [await register(reg, body(nik(20 + i), f"Klien {i}")) for i in range(3)]
    other = await register(reg, body(nik(30)), office="bandung")
    for cid in ids:
        await opened(gd, cid, pk(gd))
    session = {"kind": "KEPRIBADIAN_SOSIAL", "approach": "KELOMPOK",
               "held_on": office_today().isoformat(), "notes": "diskusi kelompok"}
    refused = await gd.http.post("/v1/group-sessions", json={**session,
                                                             "client_ids": [*ids, other]},
                                 headers=pk(gd))
    assert refused.status_code == 422
    assert [c["client_id"] for c in refused.json()["clients"]] == [other]
    store = EventStore(gd.kernel.nc, gd.kernel.topology, gd.kernel.catalog, keys=gd.kernel.keys)
    for cid in ids:
        events = (await store.load("guidance", CaseRef("jaksel", cid))).events
        assert "GuidanceSessionHeld" not in [e.type for e in events]
    r = await gd.http.post("/v1/group-sessions", json={**session, "client_ids": ids},
                           headers=pk(gd))
    assert r.status_code == 201, r.text
    group_id = r.json()["group_id"]
    for cid in ids:
        held = [e for e in (await store.load("guidance", CaseRef("jaksel", cid))).events
                if e.type == "GuidanceSessionHeld"]
        assert len(held) == 1 and held[0].data.group_id == group_id


async def test_the_revocation_path_ends_in_a_revoked_closure(svc):
    reg, gd = svc
    cid = await register(reg, body(nik(40)))
    await opened(gd, cid, pk(gd))
    no_basis = await post(gd, cid, "revocation", {"action": "PROPOSE", "tpp_decision_id": "x",
                                                  "violation_ids": ["v-1"]}, pk(gd))
    assert no_basis.status_code == 422 and no_basis.json()["rule"] == "tpp_decision_unknown"
    did = await decision(gd, cid, pk(gd), subject="REVOCATION")
    proposed = await post(gd, cid, "revocation", {"action": "PROPOSE", "tpp_decision_id": did,
                                                  "violation_ids": ["v-1"]}, pk(gd))
    assert proposed.status_code == 200
    assert (await post(gd, cid, "revocation", {"action": "IMPOSE"}, pk(gd))).status_code == 403
    assert (await post(gd, cid, "revocation", {"action": "IMPOSE"}, head(gd))).status_code == 200
    r = await post(gd, cid, "close", {"reason": "REVOKED"}, head(gd))
    assert r.status_code == 200 and r.json()["events"] == ["GuidanceClosed"]


async def test_a_transfer_closes_the_case_here_and_opens_it_there(svc):
    reg, gd = svc
    cid = await register(reg, body(nik(50)))
    await opened(gd, cid, pk(gd))
    r = await reg.http.post(f"/v1/clients/{cid}/transfer",
                            json={"to_office": "bandung", "tpp_decision_id": "tpp-9",
                                  "approved_by": "kabapas-01"},
                            headers=reg.token("jaksel", "head", sub="kabapas-01"))
    new_id = r.json()["new_client_id"]
    await eventually(lambda: gd.http.get(f"/v1/cases/{cid}", headers=pk(gd)),
                     until=lambda r: r.json()["status"] == "CLOSED")
    closed = (await gd.http.get(f"/v1/cases/{cid}", headers=pk(gd))).json()["closure"]
    assert closed["reason"] == "TRANSFERRED"
    assert closed["transferred_to"] == {"office": "bandung", "client_id": new_id}
    there = await opened(gd, new_id, gd.token("bandung", "supervisor", sub="kasubsi-bdg"))
    assert there["stage"] == "AWAL" and there["transferred_from"] == {"office": "jaksel",
                                                                      "client_id": cid}
    refused = await post(gd, cid, "close", {"reason": "TRANSFERRED"}, head(gd))
    assert refused.status_code == 409


async def test_the_worklist_follows_the_officer_and_shows_what_is_due(svc):
    reg, gd = svc
    cid = await register(reg, body(nik(60)))
    await opened(gd, cid, pk(gd))
    await reg.http.post(f"/v1/clients/{cid}/officer", headers=reg.token(),
                        json={"officer_id": "pk-0042", "reason": "rotasi"})
    listed = await eventually(
        lambda: gd.http.get("/v1/officers/pk-0042/worklist", headers=pk(gd, sub="pk-0042")),
        until=lambda r: r.status_code == 200 and r.json()["cases"])
    (case,) = listed.json()["cases"]
    assert case["client_id"] == cid
    assert {i["kind"] for i in case["items"]} == {"LITMAS_DUE", "PROGRAM_MISSING"}
    mine_only = await gd.http.get("/v1/officers/pk-0042/worklist", headers=pk(gd))
    assert mine_only.status_code == 403
    await post(gd, cid, "programs", program("AWAL"), pk(gd, sub="pk-0042"))
    await eventually(
        lambda: gd.http.get("/v1/officers/pk-0042/worklist", headers=pk(gd, sub="pk-0042")),
        until=lambda r: {i["kind"] for i in r.json()["cases"][0]["items"]} == {"LITMAS_DUE"})


async def test_offices_and_bad_input(svc):
    reg, gd = svc
    cid = await register(reg, body(nik(70)))
    await opened(gd, cid, pk(gd))
    assert (await gd.http.get(f"/v1/cases/{cid}",
                              headers=pk(gd, "bandung", "pk-0100"))).status_code == 404
    r = await post(gd, cid, "programs", {"stage": "LANJUTAN", "activities": []}, pk(gd))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "activities"
    r = await post(gd, cid, "programs", program("LANJUTAN"), pk(gd))
    assert r.status_code == 422 and r.json()["rule"] == "program_stage"
    future = (office_today() + timedelta(days=2)).isoformat()
    r = await post(gd, cid, "tpp-decisions", {"subject": "STAGE", "outcome": "APPROVED",
                                              "met_on": future, "members": ["a"]}, pk(gd))
    assert r.status_code == 422 and r.json()["field"] == "met_on"
    r = await post(gd, cid, "close", {"reason": "TRANSFERRED"}, head(gd))
    assert r.status_code == 422 and r.json()["rule"] == "transfer_by_registration"
    assert (await gd.http.get(f"/v1/cases/{cid}")).status_code == 401
