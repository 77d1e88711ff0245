"""Audit on real NATS and PostgreSQL beside the other services: a case replays in order
across contexts and offices, its state at an instant, verification of the chains (with a
tampered copy in a scratch namespace), the access log, and who may read."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta

import pytest

from services.audit.app import definition as audit
from services.audit.history import verify_bundle
from services.guidance.app import definition as guidance
from services.registration.app import definition as registration
from services.supervision.app import definition as supervision
from shared.settings import Settings
from shared.store import EventStore
from shared.streams import CONTEXT_STREAMS, CaseRef, Topology, ensure_streams
from tests.integration.test_registration_api import body, nik
from tests.support.clock import office_today
from tests.support.service import running
from tests.support.wait import eventually

LITMAS = {"purpose": "REINTEGRASI", "risk_level": "SEDANG", "recommendation": "lanjut",
          "summary": "kooperatif"}
PROGRAM = {"stage": "AWAL", "activities": [{"kind": "KEMANDIRIAN", "approach": "INDIVIDU",
                                            "frequency": "MONTHLY", "description": "las"}]}


@pytest.fixture
async def svc(settings, streams, monkeypatch):
    monkeypatch.setenv("BAPAS_SUPERVISION_SWEEP_SECONDS", "0.3")
    async with running(registration, settings) as reg, running(guidance, settings) as gd, \
            running(supervision, settings) as sv, running(audit, settings) as au:
        yield reg, gd, sv, au


def auditor(s):
    return s.token("pusat", "auditor", sub="auditor-01")


async def a_busy_case(reg, gd, sv) -> tuple[str, dict[str, datetime]]:
    """A client registered, opened, given a litmas, a program, a decision, advanced to
    lanjutan, supervised with missed reports and a visit. Returns instants between steps."""
    start = office_today() - timedelta(days=70)
    payload = body(nik(1), "Klien Audit")
    payload["period"] = {"start_on": start.isoformat(),
                         "end_on": (start + timedelta(days=365)).isoformat()}
    payload["decision"]["issued_on"] = start.isoformat()
    pk = reg.token()
    cid = (await reg.http.post("/v1/clients", json=payload, headers=pk)).json()["client_id"]
    await eventually(lambda: gd.http.get(f"/v1/cases/{cid}", headers=pk),
                     until=lambda r: r.status_code == 200)
    await eventually(lambda: sv.http.get(f"/v1/supervision/{cid}", headers=pk),
                     until=lambda r: r.status_code == 200)
    await gd.http.post(f"/v1/cases/{cid}/litmas", json=LITMAS, headers=pk)
    await gd.http.post(f"/v1/cases/{cid}/programs", json=PROGRAM, headers=pk)
    did = (await gd.http.post(f"/v1/cases/{cid}/tpp-decisions", headers=pk, json={
        "subject": "STAGE", "outcome": "APPROVED", "met_on": office_today().isoformat(),
        "members": ["Kasi BK"]})).json()["decision_id"]
    instants = {"before_advance": datetime.now(UTC)}
    r = await gd.http.post(f"/v1/cases/{cid}/stage", headers=pk,
                           json={"to_stage": "LANJUTAN", "tpp_decision_id": did})
    assert r.status_code == 200, r.text
    instants["after_advance"] = datetime.now(UTC)
    await sv.http.put(f"/v1/supervision/{cid}/plan", headers=pk,
                      json={"first_due_on": (start + timedelta(days=30)).isoformat()})
    await eventually(lambda: sv.http.get(f"/v1/supervision/{cid}", headers=pk),
                     until=lambda r: len(r.json()["missed_reports"]) == 2)
    instants["after_misses"] = datetime.now(UTC)
    r = await sv.http.post(f"/v1/supervision/{cid}/visits", headers=pk, json={
        "kind": "LAPOR_DIRI", "occurred_at": datetime.now(UTC).isoformat(),
        "outcome": "MET_COMPLIED"})
    assert r.status_code == 200, r.text
    return cid, instants


async def history_of(au, cid, headers=None):
    return await eventually(
        lambda: au.http.get(f"/v1/audit/clients/{cid}/history", headers=headers or auditor(au)),
        until=lambda r: r.status_code == 200)


async def test_a_case_touched_by_every_service_replays_in_order(svc):
    reg, gd, sv, au = svc
    cid, _ = await a_busy_case(reg, gd, sv)
    doc = (await history_of(au, cid)).json()
    events = doc["events"]
    kinds = [e["type"].split(".")[1] for e in events]
    assert kinds[0] == "ClientRegistered"
    assert {"GuidanceOpened", "SupervisionStarted", "LitmasSubmitted", "StageAdvanced",
            "ReportMissed", "VisitLogged"} <= set(kinds)
    assert {e["context"] for e in events} == {"registration", "guidance", "supervision"}
    times = [e["time"] for e in events]
    assert times == sorted(times)  # merged in time order
    for context in ("registration", "guidance", "supervision"):
        own = [e["sequence"] for e in events if e["context"] == context]
        assert own == list(range(1, len(own) + 1))  # each case in its own order
    assert doc["intact"] and all(e["link_holds"] for e in events)
    advanced = next(e for e in events if e["type"].endswith("StageAdvanced.v1"))
    assert advanced["actor"] == "pk-0007" and advanced["data"]["to_stage"] == "LANJUTAN"
    verified = (await au.http.get(f"/v1/audit/clients/{cid}/verify", headers=auditor(au))).json()
    assert verified["intact"] is True and verified["checked"] == len(events)


async def test_the_state_as_of_an_instant_is_what_the_events_stored_by_then_say(svc):
    reg, gd, sv, au = svc
    cid, at = await a_busy_case(reg, gd, sv)
    await history_of(au, cid)

    async def state(instant: datetime) -> dict:
        r = await au.http.get(f"/v1/audit/clients/{cid}/state",
                              params={"as_of": instant.isoformat()}, headers=auditor(au))
        assert r.status_code == 200, r.text
        return r.json()["contexts"]

    before = await state(at["before_advance"])
    assert before["guidance"]["state"]["stage"] == "AWAL"
    assert before["guidance"]["state"]["litmas_submitted"] is True
    assert before["supervision"]["state"]["plan"] is None
    after = await state(at["after_advance"])
    assert after["guidance"]["state"]["stage"] == "LANJUTAN"
    missed = await state(at["after_misses"])
    assert len(missed["supervision"]["state"]["missed_run"]) == 2
    now = await state(datetime.now(UTC))
    assert now["supervision"]["state"]["missed_run"] == []  # the report broke the run
    assert now["registration"]["state"]["status"] == "ACTIVE"
    early = await state(datetime(2020, 1, 1, tzinfo=UTC))
    assert all(c["events"] == 0 for c in early.values())


async def test_verify_finds_an_altered_event_and_a_gap(svc, settings, nc, servers):
    reg, gd, sv, au = svc
    cid, _ = await a_busy_case(reg, gd, sv)
    store = EventStore(nc, Topology(settings.namespace), au.kernel.catalog, keys=au.kernel.keys)
    originals = {c: await store.read_subject(store.topology.stream(c),
                                             store.topology.subject(c, CaseRef("jaksel", cid)))
                 for c in ("registration", "guidance", "supervision")}

    async def scratch_copy(change) -> str:
        """The case copied into a scratch namespace, `change(context, i, body)` applied."""
        scratch = Topology("s" + settings.namespace[1:])
        js = nc.jetstream()
        await ensure_streams(js, scratch, contexts=CONTEXT_STREAMS)
        for context, messages in originals.items():
            for i, m in enumerate(messages):
                changed = change(context, i, m.data)
                if changed is None:
                    continue
                headers = {k: v for k, v in m.headers.items()
                           if k.startswith(("ce-", "content"))}
                await js.publish(scratch.subject(context, CaseRef("jaksel", cid)), changed,
                                 headers=headers)
        return scratch.namespace

    async def verify_in(namespace: str) -> dict:
        scratch_settings = Settings(**{**settings.model_dump(), "namespace": namespace})
        async with running(audit, scratch_settings) as scratch:
            r = await history_of(scratch, cid, auditor(scratch))
            assert r.status_code == 200
            return (await scratch.http.get(f"/v1/audit/clients/{cid}/verify",
                                           headers=auditor(scratch))).json()

    altered = await scratch_copy(lambda c, i, b: b.replace(b'"LANJUTAN"', b'"AKHIR"')
                                 if c == "guidance" else b)
    result = await verify_in(altered)
    assert result["intact"] is False and result["reason"] == "altered"
    assert result["copy"]["matches"] is True  # the audit copied what the stream holds
    assert result["context"] == "guidance"
    advanced = next(m for m in originals["guidance"] if b'"LANJUTAN"' in m.data)
    assert result["event_id"] == advanced.headers["ce-id"]
    await _drop(nc, au, altered)

    gap = await scratch_copy(lambda c, i, b: None if (c, i) == ("supervision", 2) else b)
    result = await verify_in(gap)
    assert result["intact"] is False and result["reason"] == "missing"
    assert result["context"] == "supervision"
    assert result["event_id"] == originals["supervision"][3].headers["ce-id"]
    await _drop(nc, au, gap)


async def _drop(nc, au, namespace: str) -> None:
    js = nc.jetstream()
    for info in await js.streams_info():
        if info.config.name.startswith(namespace.upper() + "_"):
            await js.delete_stream(info.config.name)
    async with au.kernel.pool.acquire() as conn:
        for row in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                                    namespace + "\\_%"):
            await conn.execute(f'DROP SCHEMA "{row["nspname"]}" CASCADE')


async def test_an_export_verifies_offline_and_a_tampered_one_does_not(svc):
    reg, gd, sv, au = svc
    cid, _ = await a_busy_case(reg, gd, sv)
    await history_of(au, cid)
    bundle = (await au.http.get(f"/v1/audit/clients/{cid}/export", headers=auditor(au))).json()
    result = verify_bundle(bundle)
    assert result["intact"] and result["cases"] == 3
    tampered = copy.deepcopy(bundle)
    m = tampered["messages"][1]
    m["body"] = base64.b64encode(base64.b64decode(m["body"]).replace(b"pk-0007",
                                                                      b"pk-0666")).decode()
    assert verify_bundle(tampered)["intact"] is False
    dropped = copy.deepcopy(bundle)
    del dropped["messages"][2]
    del dropped["manifest"][2]
    dropped["manifest_sha256"] = __import__("hashlib").sha256(
        json.dumps(dropped["manifest"], sort_keys=True).encode()).hexdigest()
    assert verify_bundle(dropped)["reason"] in ("missing", "altered")


async def test_who_may_read_the_audit_and_the_record_of_reads(svc):
    reg, gd, sv, au = svc
    cid, _ = await a_busy_case(reg, gd, sv)
    await history_of(au, cid)
    url = f"/v1/audit/clients/{cid}/history"
    assert (await au.http.get(url, headers=au.token())).status_code == 403  # a plain PK
    assert (await au.http.get(url, headers=au.token("bandung", "head",
                                                    sub="kabapas-bdg"))).status_code == 404
    assert (await au.http.get(url, headers=au.token("jaksel", "head",
                                                    sub="kabapas-01"))).status_code == 200
    assert (await au.http.get(url)).status_code == 401
    # the reads of the busy case through the services are on record
    await reg.http.get(f"/v1/clients/{cid}", headers=reg.token())
    reads = await eventually(
        lambda: au.http.get("/v1/audit/access", params={"client_id": cid}, headers=auditor(au)),
        until=lambda r: r.status_code == 200 and {x["service"] for x in r.json()["reads"]}
        >= {"registration", "guidance", "supervision"} or None)
    assert all(x["actor"] == "pk-0007" for x in reads.json()["reads"])
    other_head = au.token("bandung", "head", sub="kabapas-bdg")
    r = await au.http.get("/v1/audit/access", params={"client_id": cid}, headers=other_head)
    assert r.json()["reads"] == []
    assert (await au.http.get("/v1/audit/access", headers=auditor(au))).status_code == 422
    # an instant that parses but lies before year 1 in UTC (found by the API fuzz test)
    for path, name in (("/v1/audit/access", "since"), (f"/v1/audit/clients/{cid}/state", "as_of")):
        r = await au.http.get(path, params={name: "0001-01-01T00:00:00+00:01"},
                              headers=auditor(au))
        assert r.status_code == 422, r.text
        assert (r.json()["field"], r.json()["errors"][0]["rule"]) == (f"query.{name}",
                                                                      "instant_range")


async def test_a_transferred_clients_history_includes_the_case_it_came_from(svc):
    reg, gd, sv, au = svc
    cid = (await reg.http.post("/v1/clients", json=body(nik(9)), headers=reg.token())).json()[
        "client_id"]
    r = await reg.http.post(f"/v1/clients/{cid}/transfer", headers=reg.token(
        "jaksel", "head", sub="kabapas-01"), json={"to_office": "bandung",
                                                   "tpp_decision_id": "tpp-1",
                                                   "approved_by": "kabapas-01"})
    new_id = r.json()["new_client_id"]
    bandung_head = au.token("bandung", "head", sub="kabapas-bdg")
    doc = (await eventually(
        lambda: au.http.get(f"/v1/audit/clients/{new_id}/history", headers=bandung_head),
        until=lambda r: r.status_code == 200 and any(
            e["type"].endswith("GuidanceOpened.v1") and e["office"] == "bandung"
            for e in r.json()["events"]))).json()
    assert doc["cases"] == [{"office": "jaksel", "client_id": cid},
                            {"office": "bandung", "client_id": new_id}]
    offices = [e["office"] for e in doc["events"]]
    assert offices.index("bandung") > offices.index("jaksel")
    kinds = [e["type"].split(".")[1] for e in doc["events"]]
    assert "ClientTransferred" in kinds and kinds.count("ClientRegistered") == 2


async def copied(au, cid: str, events: int) -> str:
    """Once the audit's copy holds the client's `events`: the copy's table."""
    copies = f'"{au.kernel.schema}".case_events'
    await eventually(lambda: au.kernel.pool.fetchval(
        f"SELECT count(*) FROM {copies} WHERE subject LIKE $1", f"%.{cid}"), equals=events)
    return copies


async def test_the_event_index_reads_the_same_history_as_the_subjects(svc):
    from services.audit.history import history as read_history
    reg, gd, sv, au = svc
    cid, _ = await a_busy_case(reg, gd, sv)
    doc = (await history_of(au, cid)).json()
    await copied(au, cid, len(doc["events"]))
    indexed = (await au.http.get(f"/v1/audit/clients/{cid}/history",
                                 headers=auditor(au))).json()
    by_subject = await read_history(au.kernel.store, au.kernel.catalog,
                                    [CaseRef("jaksel", cid)])
    assert [e["id"] for e in indexed["events"]] == [e.envelope.id for e in by_subject]
    assert [e["data"] for e in indexed["events"]] == [e.data for e in by_subject]
    assert indexed["intact"]
    verified = (await au.http.get(f"/v1/audit/clients/{cid}/verify", headers=auditor(au))).json()
    assert verified["intact"] is True
    assert verified["copy"] == {"matches": True, "checked": len(by_subject)}


async def test_an_altered_copy_shows_in_history_and_verify_tells_it_from_the_streams(svc):
    reg, gd, sv, au = svc
    cid, _ = await a_busy_case(reg, gd, sv)
    doc = (await history_of(au, cid)).json()
    copies = await copied(au, cid, len(doc["events"]))
    advanced = next(e for e in doc["events"] if e["type"].startswith("bapas.StageAdvanced."))
    changed = await au.kernel.pool.execute(
        f"UPDATE {copies} SET body = convert_to(replace(convert_from(body, 'UTF8'), "
        "'\"LANJUTAN\"', '\"AKHIR\"'), 'UTF8') WHERE subject LIKE $1 AND headers->>'ce-id' = $2",
        f"%.{cid}", advanced["id"])
    assert changed == "UPDATE 1"

    after = (await au.http.get(f"/v1/audit/clients/{cid}/history", headers=auditor(au))).json()
    assert after["intact"] is False
    broken = [e["id"] for e in after["events"] if not e["link_holds"]]
    assert broken == [advanced["id"]]

    verified = (await au.http.get(f"/v1/audit/clients/{cid}/verify", headers=auditor(au))).json()
    assert verified["intact"] is True  # the streams hold what was written
    assert verified["copy"]["matches"] is False
    assert verified["copy"]["event_id"] == advanced["id"]
    assert verified["copy"]["detail"] == "the copy differs from the stream"


async def test_while_the_event_index_is_not_built_history_reads_the_streams(svc):
    reg, gd, sv, au = svc
    cid, _ = await a_busy_case(reg, gd, sv)
    doc = (await history_of(au, cid)).json()
    schema = au.kernel.schema
    definition = await au.kernel.pool.fetchval("SELECT pg_get_viewdef($1::regclass)",
                                               f'"{schema}".case_events')
    await au.kernel.pool.execute(f'DROP VIEW "{schema}".case_events')  # as before a switch
    try:
        r = await au.http.get(f"/v1/audit/clients/{cid}/history", headers=auditor(au))
        assert r.status_code == 200, r.text
        assert [e["id"] for e in r.json()["events"]] == [e["id"] for e in doc["events"]]
        verified = (await au.http.get(f"/v1/audit/clients/{cid}/verify",
                                      headers=auditor(au))).json()
        assert verified["intact"] is True and verified["copy"]["matches"] is None
    finally:
        await au.kernel.pool.execute(f'CREATE VIEW "{schema}".case_events AS {definition}')


async def test_a_case_reads_the_events_its_index_has_not_seen_yet(svc):
    from services.audit.history import Indexed, read_case
    reg, gd, sv, au = svc
    cid, _ = await a_busy_case(reg, gd, sv)
    ref, store, catalog = CaseRef("jaksel", cid), au.kernel.store, au.kernel.catalog
    whole = await read_case(store, catalog, "guidance", ref)  # by subject, no index
    assert len(whole) >= 4 and all(e.link_holds for e in whole)

    def index_knowing(k: int):
        async def index(subject: str, stream: str) -> list[Indexed]:
            assert subject == store.topology.subject("guidance", ref)
            return [Indexed(e.stream_seq, e.headers, e.body) for e in whole[:k]]
        return index

    for k in (0, 1, len(whole) - 1, len(whole)):  # lagging, far behind, one behind, caught up
        read = await read_case(store, catalog, "guidance", ref, index_knowing(k))
        assert [e.envelope.id for e in read] == [e.envelope.id for e in whole], k
        assert [e.stream_seq for e in read] == [e.stream_seq for e in whole], k
        assert all(e.link_holds for e in read), k
