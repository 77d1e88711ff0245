"""Erasure under UU 27/2022 on real servers: the legal holds that refuse it (an open case,
the retention period, an auditor's hold), and what an erasure leaves: the person's
personal fields gone from the registration's APIs and read model, the facts kept, the hash
chain whole, the erasure itself on the record."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import nats.js.errors
import pytest

from services.audit.history import verify_bundle
from services.guidance.app import definition as guidance
from services.registration.app import definition as registration
from services.supervision.app import definition as supervision
from shared.office_time import office_date
from shared.store import EventStore
from shared.streams import CaseRef
from tests.integration.test_registration_api import body
from tests.support.service import running
from tests.support.wait import eventually

NIK = "3171014508950003"
NAME = "Rahasia Pribadi"
BASIS = "UU 27/2022 Pasal 8"


@pytest.fixture
async def system(settings, streams):
    now = settings.model_copy(update={"privacy_retention_days": 0})
    async with running(registration, now) as reg, running(guidance, now) as gd:
        yield reg, gd


async def registered(reg) -> str:
    r = await reg.http.post("/v1/clients", json=body(NIK, NAME), headers=reg.token())
    assert r.status_code == 201, r.text
    return r.json()["client_id"]


async def erase(reg, client_id: str, **token):
    return await reg.http.post("/v1/privacy/erasures",
                               json={"client_id": client_id, "legal_basis": BASIS},
                               headers=reg.token("jaksel", "head", sub="kabapas", **token))


async def closed(reg, gd, client_id: str) -> None:
    await eventually(lambda: gd.http.get(f"/v1/cases/{client_id}", headers=gd.token()),
                     until=lambda r: r.status_code == 200)
    r = await gd.http.post(f"/v1/cases/{client_id}/close", headers=gd.token(),
                           json={"reason": "DECEASED",
                                 "closed_on": datetime.now(UTC).date().isoformat()})
    assert r.status_code == 200, r.text
    await eventually(lambda: reg.http.get(f"/v1/clients/{client_id}", headers=reg.token()),
                     until=lambda r: r.json()["status"] == "CLOSED")


async def test_an_open_case_is_a_legal_hold(system):
    reg, _ = system
    cid = await registered(reg)
    r = await erase(reg, cid)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["rule"] == "legal_hold" and problem["field"] == "client_id"
    assert [h["hold"] for h in problem["holds"]] == ["open_case"]
    assert (await reg.http.get(f"/v1/clients/{cid}", headers=reg.token())).json()[
        "person"]["full_name"] == NAME
    # only the head of office erases
    r = await reg.http.post("/v1/privacy/erasures", json={"client_id": cid, "legal_basis": BASIS},
                            headers=reg.token("jaksel", "pk"))
    assert r.status_code == 403


async def test_the_retention_period_is_a_legal_hold(settings, streams):
    async with running(registration, settings) as reg, running(guidance, settings) as gd:
        cid = await registered(reg)
        await closed(reg, gd, cid)
        r = await erase(reg, cid)
        assert r.status_code == 409, r.text
        (hold,) = r.json()["holds"]
        assert hold["hold"] == "retention"
        assert hold["until"] > datetime.now(UTC).date().replace(year=datetime.now(UTC).year + 9
                                                               ).isoformat()


async def test_an_auditor_s_hold_stands_until_it_is_lifted(system):
    reg, gd = system
    cid = await registered(reg)
    await closed(reg, gd, cid)
    auditor = reg.token("pusat", "auditor", sub="auditor-1")
    r = await reg.http.post(f"/v1/clients/{cid}/legal-holds", headers=auditor,
                            json={"reason": "pemeriksaan Itjen", "office": "jaksel"})
    assert r.status_code == 201, r.text
    hold_id = r.json()["hold_id"]
    refused = await erase(reg, cid)
    assert refused.status_code == 409
    assert [(h["hold"], h.get("hold_id")) for h in refused.json()["holds"]] == [
        ("auditor_hold", hold_id)]
    assert "pemeriksaan Itjen" in refused.json()["detail"]
    lifted = await reg.http.delete(f"/v1/clients/{cid}/legal-holds/{hold_id}",
                                   headers=auditor, params={"office": "jaksel"})
    assert lifted.status_code == 200 and lifted.json()["events"] == ["LegalHoldLifted"]
    assert (await erase(reg, cid)).status_code == 200


async def test_an_erased_person_keeps_their_facts_and_loses_their_data(system):
    reg, gd = system
    cid = await registered(reg)
    await closed(reg, gd, cid)
    case = (await gd.http.get(f"/v1/cases/{cid}", headers=gd.token())).json()
    assert case["erased"] is False
    r = await erase(reg, cid)
    assert r.status_code == 200, r.text
    case = await eventually(lambda: gd.http.get(f"/v1/cases/{cid}", headers=gd.token()),
                            until=lambda r: r.json()["erased"] is True)
    assert case.json()["status"] == "CLOSED"  # the facts stay
    assert r.json()["erased_cases"] == [{"office": "jaksel", "client_id": cid}]
    again = await erase(reg, cid)  # asked once more: the same answer, nothing new
    assert again.status_code == 200 and again.json()["version"] == r.json()["version"]

    view = (await reg.http.get(f"/v1/clients/{cid}", headers=reg.token())).json()
    assert view["erased"] is True
    assert {k: view["person"][k] for k in ("full_name", "nik", "birth_date", "address",
                                           "phone")} == dict.fromkeys(
        ("full_name", "nik", "birth_date", "address", "phone"))
    assert view["family_contact"]["name"] is None
    assert (view["register_number"], view["program"], view["status"]) == (
        view["register_number"], "PB", "CLOSED")
    # the read model: the row stays, its personal columns do not
    row = await eventually(
        lambda: reg.kernel.pool.fetchrow(
            f'SELECT * FROM "{reg.kernel.schema}".clients WHERE client_id = $1', cid),
        until=lambda row: row["erased"])
    assert (row["full_name"], row["nik"], row["address"], row["birth_date"]) == (None,) * 4
    assert row["program"] == "PB" and row["register_number"].startswith("JAKSEL-")
    found = (await reg.http.get("/v1/clients", headers=reg.token("jaksel", "head"),
                                params={"q": NAME})).json()
    assert found["items"] == []
    # the stream: nothing readable, the chain whole, the erasure on the record
    store = EventStore(reg.kernel.nc, reg.kernel.topology, reg.kernel.catalog,
                       keys=reg.kernel.keys)
    stream = store.topology.stream("registration")
    subject = store.topology.subject("registration", CaseRef("jaksel", cid))
    raw = b"".join(m.data for m in await store.read_subject(stream, subject))
    assert NAME.encode() not in raw and NIK.encode() not in raw
    # nor in any case of the stream, its subjects and headers: the NIK index is named by a
    # keyed digest, so no plain digest of the NIK gives it back by trying every NIK
    everything = b"".join(
        m.subject.encode() + repr(m.headers).encode() + (m.data or b"")
        for m in await store.read_subject(stream, store.topology.context_filter("registration")))
    digest = hashlib.sha256(NIK.encode()).hexdigest()
    assert NIK.encode() not in everything and NAME.encode() not in everything
    assert digest[:16].encode() not in everything and b".nikh-" in everything
    assert (await store.verify("registration", CaseRef("jaksel", cid))).intact
    erased = [e for e in (await store.load("registration", CaseRef("jaksel", cid))).events
              if e.type == "PersonErased"]
    assert [(e.data.erased_by, e.data.legal_basis) for e in erased] == [("kabapas", BASIS)]


async def test_notification_forgets_the_person_and_what_it_would_have_sent(settings, streams):
    from services.notification.app import definition as notification

    now = settings.model_copy(update={"privacy_retention_days": 0})
    async with running(registration, now) as reg, running(guidance, now) as gd, \
            running(notification, now) as nt:
        cid = await registered(reg)
        s = f'"{nt.kernel.schema}"'
        await eventually(lambda: nt.kernel.pool.fetchval(
            f"SELECT full_name FROM {s}.contacts WHERE client_id = $1", cid), equals=NAME)
        kept = await eventually(lambda: nt.kernel.pool.fetch(
            f"SELECT body FROM {s}.deliveries WHERE client_id = $1", cid), until=bool)
        assert any(NAME.encode() in bytes(r["body"]) for r in kept)  # the officer's e-mail
        await closed(reg, gd, cid)
        assert (await erase(reg, cid)).status_code == 200
        await eventually(lambda: nt.kernel.pool.fetchval(
            f"SELECT full_name FROM {s}.contacts WHERE client_id = $1", cid), equals="")
        rows = await nt.kernel.pool.fetch(
            f"SELECT body, headers::text AS headers, status FROM {s}.deliveries "
            "WHERE client_id = $1", cid)
        assert rows and not [r for r in rows if NAME.encode() in bytes(r["body"])
                             or NAME in r["headers"]]
        assert {r["status"] for r in rows} <= {"SKIPPED", "DELIVERED", "DEAD"}


async def test_subject_access_shows_everything_held_and_who_read_it(settings, streams):
    from services.audit.app import definition as audit

    now = settings.model_copy(update={"privacy_retention_days": 0})
    async with running(registration, now) as reg, running(guidance, now) as gd, \
            running(audit, now) as au:
        cid = await registered(reg)
        assert (await reg.http.get(f"/v1/clients/{cid}", headers=reg.token())).status_code == 200
        head = au.token("jaksel", "head", sub="kabapas")
        path = f"/v1/privacy/subjects/{cid}/report"
        report = await eventually(lambda: au.http.get(path, headers=head), until=lambda r: (
            r.status_code == 200 and any(x["actor"] == "pk-0007" for x in r.json()["reads"])))
        doc = report.json()
        assert doc["erased"] is False and doc["cases"] == [{"office": "jaksel", "client_id": cid}]
        registered_event = next(e for e in doc["events"] if e["type"].endswith("ClientRegistered.v1"))
        assert registered_event["data"]["person"]["full_name"] == NAME  # decrypted
        assert registered_event["data"]["person"]["nik"] == NIK
        assert any(x["actor"] == "pk-0007" and x["what"] == f"GET /v1/clients/{cid}"
                   for x in doc["reads"])
        # another office's head gets nothing; a PK is not the one who answers the person
        assert (await au.http.get(path, headers=au.token("jaktim", "head"))).status_code == 404
        assert (await au.http.get(path, headers=au.token("jaksel", "pk"))).status_code == 403

        await closed(reg, gd, cid)
        assert (await erase(reg, cid)).status_code == 200
        after = await eventually(lambda: au.http.get(path, headers=head),
                                 until=lambda r: r.json()["erased"])
        assert NAME not in after.text and NIK not in after.text
        verify = (await au.http.get(f"/v1/audit/clients/{cid}/verify", headers=head)).json()
        assert verify["intact"] is True, verify


async def test_the_retention_sweep_lists_whom_the_head_may_erase_and_erases_no_one(system):
    reg, gd = system
    ended = await registered(reg)
    r = await reg.http.post("/v1/clients", json=body("3171010101900007", "Masih Aktif"),
                            headers=reg.token())
    still_open = r.json()["client_id"]
    await closed(reg, gd, ended)
    head = reg.token("jaksel", "head", sub="kabapas")
    sweep = await eventually(lambda: reg.http.get("/v1/privacy/retention-due", headers=head),
                             until=lambda r: r.status_code == 200 and r.json()["due"])
    doc = sweep.json()
    assert doc["retention_days"] == 0
    assert [(x["client_id"], x["holds"]) for x in doc["due"]] == [(ended, [])]
    assert still_open not in {x["client_id"] for x in doc["due"]}
    view = (await reg.http.get(f"/v1/clients/{ended}", headers=reg.token())).json()
    assert view["erased"] is False and view["person"]["full_name"] == NAME  # listed, kept
    auditor = reg.token("pusat", "auditor", sub="auditor-1")
    await reg.http.post(f"/v1/clients/{ended}/legal-holds", headers=auditor,
                        json={"reason": "sengketa", "office": "jaksel"})
    held = (await reg.http.get("/v1/privacy/retention-due", headers=head)).json()["due"]
    assert [h["hold"] for h in held[0]["holds"]] == ["auditor_hold"]
    assert (await reg.http.get("/v1/privacy/retention-due",
                               headers=reg.token("jaksel", "pk"))).status_code == 403


async def test_a_rebuild_after_erasure_cannot_bring_the_data_back(system):
    reg, gd = system
    cid = await registered(reg)
    await closed(reg, gd, cid)
    assert (await erase(reg, cid)).status_code == 200
    runner = next(r for r in reg.kernel.runners if r.name == "client_directory")
    tag = await runner.request_rebuild()
    s = f'"{reg.kernel.schema}"'
    await eventually(lambda: reg.kernel.pool.fetchval(
        f"SELECT active_tag FROM {s}.projection_versions WHERE projection = $1",
        "client_directory"), equals=tag)
    row = await reg.kernel.pool.fetchrow(f"SELECT * FROM {s}.clients WHERE client_id = $1", cid)
    assert (row["full_name"], row["nik"], row["address"], row["phone"]) == (None,) * 4
    assert row["erased"] and row["status"] == "CLOSED" and row["program"] == "PB"


async def test_an_erasure_reaches_every_earlier_case_of_the_person(system):
    """Transferred twice (jaksel -> bandung -> surabaya): the erasure at the office of the
    latest case covers all three; an earlier case is not erased on its own (its guidance
    goes on elsewhere: a hold naming that office)."""
    reg, gd = system
    cid = await registered(reg)
    chain = [("jaksel", cid)]
    for to_office in ("bandung", "surabaya"):
        office, client_id = chain[-1]
        r = await reg.http.post(
            f"/v1/clients/{client_id}/transfer", headers=reg.token(office, "head", sub="kabapas"),
            json={"to_office": to_office, "tpp_decision_id": f"tpp-{to_office}",
                  "approved_by": "kabapas"})
        assert r.status_code == 200, r.text
        new_id = r.json()["new_client_id"]
        await eventually(lambda: reg.http.get(f"/v1/clients/{new_id}",
                                              headers=reg.token(to_office)),
                         until=lambda r: r.status_code == 200)
        chain.append((to_office, new_id))
    refused = await erase(reg, cid)
    assert refused.status_code == 409
    assert [(h["hold"], h.get("office")) for h in refused.json()["holds"]
            if h["hold"] == "transferred"] == [("transferred", "bandung")]
    office, last = chain[-1]
    await eventually(lambda: gd.http.get(f"/v1/cases/{last}", headers=gd.token(office)),
                     until=lambda r: r.status_code == 200)
    r = await gd.http.post(f"/v1/cases/{last}/close", headers=gd.token(office),
                           json={"reason": "DECEASED",
                                 "closed_on": office_date(datetime.now(UTC)).isoformat()})
    assert r.status_code == 200, r.text
    await eventually(lambda: reg.http.get(f"/v1/clients/{last}", headers=reg.token(office)),
                     until=lambda r: r.json()["status"] == "CLOSED")
    r = await reg.http.post("/v1/privacy/erasures",
                            json={"client_id": last, "legal_basis": BASIS},
                            headers=reg.token(office, "head", sub="kabapas"))
    assert r.status_code == 200, r.text
    assert [(c["office"], c["client_id"]) for c in r.json()["erased_cases"]] == [
        chain[2], chain[1], chain[0]]
    for office, client_id in chain:
        view = (await reg.http.get(f"/v1/clients/{client_id}",
                                   headers=reg.token(office, "supervisor"))).json()
        assert view["person"]["full_name"] is None and view["person"]["nik"] is None, office


async def test_the_supervision_view_says_the_person_is_erased(settings, streams):
    now = settings.model_copy(update={"privacy_retention_days": 0})
    async with running(registration, now) as reg, running(guidance, now) as gd, \
            running(supervision, now) as sv:
        cid = await registered(reg)
        view = await eventually(lambda: sv.http.get(f"/v1/supervision/{cid}",
                                                    headers=sv.token()),
                                until=lambda r: r.status_code == 200)
        assert view.json()["erased"] is False
        await closed(reg, gd, cid)
        assert (await erase(reg, cid)).status_code == 200
        await eventually(lambda: sv.http.get(f"/v1/supervision/{cid}", headers=sv.token()),
                         until=lambda r: r.status_code == 200 and r.json()["erased"] is True)


NOTE = "Catatan rumah tangga yang pribadi"
PERSONAL_VALUES = (NAME, NIK, "Jl. Kemang Raya No. 5", "+6281234567890", "+6281111111111",
                   NOTE, hashlib.sha256(NIK.encode()).hexdigest()[:16])


def personal_in(text: str) -> list[str]:
    """The personal values found in `text`, as written or hex-encoded (bytea columns)."""
    low = text.lower()
    return [v for v in PERSONAL_VALUES if v in text or v.encode().hex() in low]


async def every_table(pool, namespace: str) -> str:
    """Every row of every table of the test's schemas, as text."""
    out = []
    tables = await pool.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema LIKE $1 AND table_type = 'BASE TABLE'", namespace + "%")
    for t in tables:
        name = f'"{t["table_schema"]}"."{t["table_name"]}"'
        out += [f"{name} {r[0]}" for r in await pool.fetch(f"SELECT row_to_json(t)::text "
                                                             f"FROM {name} t")]
    return "\n".join(out)


async def every_stream(nc, namespace: str) -> str:
    """Every message of every stream of the test's namespace, subject, headers and body."""
    js = nc.jetstream()
    out = []
    for info in await js.streams_info():
        if not info.config.name.startswith(namespace.upper() + "_") or not info.state.messages:
            continue
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                m = await js.get_msg(info.config.name, seq)
            except nats.js.errors.NotFoundError:
                continue
            out.append(f"{info.config.name} {m.subject} {m.headers} "
                       f"{(m.data or b'').decode(errors='replace')}")
    return "\n".join(out)


async def test_an_erased_person_appears_nowhere(settings, streams, namespace):
    """After erasure no personal value, nor a digest that gives the NIK back, is in any
    stream read raw (the agency feed's and the keys' included), any table of any service,
    or the auditor's export."""
    from services.audit.app import definition as audit
    from services.notification.app import definition as notification

    now = settings.model_copy(update={"privacy_retention_days": 0})
    async with running(registration, now) as reg, running(guidance, now) as gd, \
            running(supervision, now) as sv, running(notification, now) as nt, \
            running(audit, now) as au:
        cid = await registered(reg)
        await eventually(lambda: sv.http.get(f"/v1/supervision/{cid}", headers=sv.token()),
                         until=lambda r: r.status_code == 200)
        visit = await sv.http.post(f"/v1/supervision/{cid}/visits", headers=sv.token(), json={
            "kind": "KUNJUNGAN_RUMAH", "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "outcome": "MET_COMPLIED", "notes": NOTE})
        assert visit.status_code == 200, visit.text
        auditor = au.token("pusat", "auditor", sub="auditor-1")
        export = f"/v1/audit/clients/{cid}/export"
        await eventually(lambda: au.http.get(export, headers=auditor),
                         until=lambda r: r.status_code == 200 and len(r.json()["messages"]) >= 3)
        # the read models hold the data in clear until the erasure: the sweep sees it
        await eventually(lambda: every_table(reg.kernel.pool, namespace),
                         until=lambda text: {NAME, NIK, "+6281234567890"} <= set(personal_in(text)))
        await closed(reg, gd, cid)
        assert (await erase(reg, cid)).status_code == 200
        await eventually(lambda: nt.kernel.pool.fetchval(
            f'SELECT full_name FROM "{nt.kernel.schema}".contacts WHERE client_id = $1', cid),
            equals="")
        await eventually(lambda: every_table(reg.kernel.pool, namespace),
                         until=lambda text: not personal_in(text))
        assert personal_in(await every_stream(reg.kernel.nc, namespace)) == []
        bundle = (await au.http.get(export, headers=auditor)).json()
        bodies = "\n".join(base64.b64decode(m["body"]).decode(errors="replace")
                           for m in bundle["messages"])
        assert personal_in(json.dumps(bundle)) == [] and personal_in(bodies) == []
        assert verify_bundle(bundle)["intact"]
