"""Agency webhooks on real NATS and PostgreSQL and a local HTTP receiver: subscribing,
signed CloudEvents, data levels, retries, dead letters, pausing, rotation, rebuilds."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from services.guidance.app import definition as guidance
from services.notification.app import definition as notification
from services.registration.app import definition as registration
from tests.integration.test_registration_api import body, nik
from tests.support.clock import office_today
from tests.support.receiver import receiver
from tests.support.service import running
from tests.support.wait import eventually

PERSONAL = ("nik", "address", "phone", "full_name", "birth_date", "family_contact", "person")


@pytest.fixture
def hooks():
    with receiver() as r:
        yield r


@pytest.fixture
async def svc(settings, streams, monkeypatch):
    for name, value in {"RETRY_BASE_SECONDS": "0.2", "POLL_SECONDS": "0.05",
                        "PAUSE_AFTER_FAILURES": "3", "PAUSE_SECONDS": "30",
                        "RETRY_HORIZON_HOURS": "0.001"}.items():  # 3.6 s to dead, for tests
        monkeypatch.setenv(f"BAPAS_NOTIFICATION_{name}", value)
    async with running(registration, settings) as reg, running(guidance, settings) as gd, \
            running(notification, settings) as nt:
        yield reg, gd, nt


def head(svc_, office="jaksel"):
    return svc_.token(office, "head", sub="kabapas-01")


async def subscribe(nt, url, event_types=("ClientRegistered",), level="IDENTIFIERS",
                    office="jaksel"):
    r = await nt.http.post("/v1/subscriptions", headers=head(nt, office), json={
        "agency": "Kejaksaan Negeri Jakarta Selatan", "agency_kind": "KEJAKSAAN",
        "event_types": list(event_types), "data_level": level,
        "delivery": {"kind": "WEBHOOK", "url": url}})
    return r


async def register(reg, i, office="jaksel"):
    r = await reg.http.post("/v1/clients", json=body(nik(i), f"Klien {i}"),
                            headers=reg.token(office, "pk", sub="pk-0007"))
    assert r.status_code == 201, r.text
    return r.json()["client_id"]


def verify(secret: str, got) -> dict:
    return Webhook(secret).verify(got.body, got.headers)


async def test_subscribing_checks_the_endpoint_the_types_and_the_caller(svc, hooks):
    reg, gd, nt = svc
    r = await subscribe(nt, "http://example.org/hook")
    assert r.status_code == 422 and r.json()["rule"] == "url_not_https"
    r = await subscribe(nt, hooks.url(), event_types=["NikClaimed"])
    assert r.status_code == 422 and r.json()["field"] == "event_types"
    r = await subscribe(nt, hooks.on("/no-handshake", allow_origin=False))
    assert r.status_code == 422 and r.json()["rule"] == "webhook_handshake"
    r = await nt.http.post("/v1/subscriptions", headers=nt.token(), json={})
    assert r.status_code == 403
    r = await subscribe(nt, hooks.url())
    assert r.status_code == 201 and r.json()["secret"].startswith("whsec_")
    listed = (await nt.http.get("/v1/subscriptions", headers=head(nt))).json()
    assert [s["id"] for s in listed] == [r.json()["id"]] and "secret" not in listed[0]
    assert (await nt.http.get("/v1/subscriptions", headers=head(nt, "bandung"))).json() == []


async def test_signed_cloudevents_arrive_at_each_level_with_what_it_allows(svc, hooks):
    reg, gd, nt = svc
    ids = await subscribe(nt, hooks.on("/ids"))
    full = await subscribe(nt, hooks.on("/full"), level="FULL")
    other_office = await subscribe(nt, hooks.on("/bandung"), office="bandung")
    assert other_office.status_code == 201
    cid = await register(reg, 1)
    got_ids = (await eventually(lambda: hooks.at("/ids")))[0]
    got_full = (await eventually(lambda: hooks.at("/full")))[0]
    for got, sub in ((got_ids, ids), (got_full, full)):
        data = verify(sub.json()["secret"], got)
        assert got.headers["ce-type"] == "bapas.ClientRegistered.v1"
        assert got.headers["ce-subject"] == cid and got.headers["ce-specversion"] == "1.0"
        assert got.headers["webhook-id"] == got.headers["ce-id"]
        assert got.headers["content-type"] == "application/json"
        assert data["client_id"] == cid and data["register_number"].startswith("JAKSEL-")
    identifiers = json.loads(got_ids.body)
    assert not any(k in identifiers for k in PERSONAL)
    assert nik(1) not in got_ids.body.decode() and "Kemang" not in got_ids.body.decode()
    assert "ce-actor" not in got_ids.headers and "ce-hash" not in got_ids.headers
    assert json.loads(got_full.body)["person"]["nik"] == nik(1)
    assert got_full.headers["ce-datalevel"] == "FULL" and "ce-hash" in got_full.headers
    assert hooks.at("/bandung") == []  # another office's subscriber hears nothing


async def test_a_receiver_that_fails_twice_then_succeeds_ends_with_one_delivery(svc, hooks):
    reg, gd, nt = svc
    sub = (await subscribe(nt, hooks.on("/flaky", fail_first=2))).json()
    await register(reg, 2)
    await eventually(lambda: hooks.at("/flaky"), until=lambda got: len(got) == 3)
    got = hooks.at("/flaky")
    assert len({g.headers["webhook-id"] for g in got}) == 1  # one delivery, three attempts
    for g in got:
        verify(sub["secret"], g)
    rows = await eventually(lambda: nt.http.get("/v1/deliveries", headers=head(nt),
                                                params={"subscription_id": sub["id"]}),
                            until=lambda r: [d["status"] for d in r.json()] == ["DELIVERED"])
    (delivery,) = rows.json()
    assert delivery["attempts"] == 3 and delivery["event_id"] == got[0].headers["webhook-id"]


async def test_retry_after_is_honoured(svc, hooks):
    reg, gd, nt = svc
    await subscribe(nt, hooks.on("/busy", fail_first=1, retry_after="2"))
    await register(reg, 3)
    got = await eventually(lambda: hooks.at("/busy"), until=lambda g: len(g) == 2)
    assert got[1].at - got[0].at >= 1.9


async def test_a_delivery_that_keeps_failing_dies_and_can_be_retried(svc, hooks):
    reg, gd, nt = svc
    sub = (await subscribe(nt, hooks.on("/down", status=503))).json()
    await register(reg, 4)
    dead = await eventually(lambda: nt.http.get("/v1/deliveries", headers=head(nt),
                                                params={"status": "DEAD"}),
                            until=lambda r: r.json(), timeout=30)
    (row,) = dead.json()
    assert row["subscription_id"] == sub["id"] and row["last_status"] == 503
    hooks.on("/down", status=200)
    r = await nt.http.post(f"/v1/deliveries/{row['id']}/retry", headers=head(nt))
    assert r.status_code == 200 and r.json()["status"] == "RETRYING"
    await eventually(lambda: nt.http.get("/v1/deliveries", headers=head(nt),
                                         params={"status": "DELIVERED"}),
                     until=lambda r: [d["id"] for d in r.json()] == [row["id"]])
    again = await nt.http.post(f"/v1/deliveries/{row['id']}/retry", headers=head(nt))
    assert again.status_code == 409


async def test_a_failing_endpoint_is_paused_and_never_delays_the_others(svc, hooks):
    reg, gd, nt = svc
    broken = (await subscribe(nt, hooks.on("/broken", status=500, delay=0.5))).json()
    await subscribe(nt, hooks.on("/healthy"))
    for i in range(5):
        await register(reg, 10 + i)
    await eventually(lambda: hooks.at("/healthy"), until=lambda g: len(g) == 5)
    listed = await eventually(lambda: nt.http.get("/v1/subscriptions", headers=head(nt)),
                              until=lambda r: any(s["paused_until"] for s in r.json()))
    paused = next(s for s in listed.json() if s["id"] == broken["id"])
    assert paused["paused_until"] is not None
    attempts = len(hooks.at("/broken"))
    assert attempts == 3  # paused after three failures in a row: not hammered
    await register(reg, 20)
    await eventually(lambda: hooks.at("/healthy"), until=lambda g: len(g) == 6)
    assert len(hooks.at("/broken")) == attempts


async def test_after_a_rotation_both_secrets_sign_during_the_overlap(svc, hooks):
    reg, gd, nt = svc
    sub = (await subscribe(nt, hooks.on("/rotating"))).json()
    rotated = (await nt.http.post(f"/v1/subscriptions/{sub['id']}/rotate-secret",
                                  headers=head(nt))).json()
    assert rotated["secret"] != sub["secret"]
    await register(reg, 5)
    (got,) = await eventually(lambda: hooks.at("/rotating"))
    assert len(got.headers["webhook-signature"].split()) == 2
    verify(sub["secret"], got)
    verify(rotated["secret"], got)


async def test_a_rebuild_never_sends_a_past_delivery_again(svc, hooks):
    reg, gd, nt = svc
    await subscribe(nt, hooks.on("/once"))
    for i in range(3):
        await register(reg, 30 + i)
    await eventually(lambda: hooks.at("/once"), until=lambda g: len(g) == 3)
    runner = next(r for r in nt.kernel.runners if r.name == "delivery_router")
    tag = await runner.request_rebuild()
    schema = nt.kernel.schema
    await eventually(lambda: nt.kernel.pool.fetchval(
        f'SELECT active_tag FROM "{schema}".projection_versions WHERE projection = $1',
        "delivery_router"), equals=tag, timeout=30)
    await register(reg, 40)  # the rebuilt router is live: new events still go out
    await eventually(lambda: hooks.at("/once"), until=lambda g: len(g) == 4)
    rows = await nt.kernel.pool.fetch(
        f'SELECT channel, count(*) AS n FROM "{schema}".deliveries GROUP BY channel')
    # one webhook and one (skipped: no address) officer e-mail per event, nothing twice
    assert {r["channel"]: r["n"] for r in rows} == {"WEBHOOK": 4, "EMAIL": 4}
    assert len({g.headers["webhook-id"] for g in hooks.at("/once")}) == 4


async def test_scenario_7_closing_a_case_reaches_a_subscribed_agency(svc, hooks):
    reg, gd, nt = svc
    sub = (await subscribe(nt, hooks.on("/kejari"), event_types=["GuidanceClosed"])).json()
    start = office_today() - timedelta(days=400)
    payload = body(nik(50), "Klien Selesai")
    payload["period"] = {"start_on": start.isoformat(),
                         "end_on": (office_today() - timedelta(days=1)).isoformat()}
    payload["decision"]["issued_on"] = start.isoformat()
    cid = (await reg.http.post("/v1/clients", json=payload,
                               headers=reg.token("jaksel", "pk", sub="pk-0007"))).json()["client_id"]
    pk = gd.token("jaksel", "pk", sub="pk-0007")
    await eventually(lambda: gd.http.get(f"/v1/cases/{cid}", headers=pk),
                     until=lambda r: r.status_code == 200)
    await gd.http.post(f"/v1/cases/{cid}/litmas", headers=pk, json={
        "purpose": "REINTEGRASI", "risk_level": "RENDAH", "recommendation": "lanjut",
        "summary": "baik"})
    for stage, to in (("AWAL", "LANJUTAN"), ("LANJUTAN", "AKHIR")):
        await gd.http.post(f"/v1/cases/{cid}/programs", headers=pk, json={
            "stage": stage, "activities": [{"kind": "KEMANDIRIAN", "approach": "INDIVIDU",
                                            "frequency": "MONTHLY", "description": "x"}]})
        decision = (await gd.http.post(f"/v1/cases/{cid}/tpp-decisions", headers=pk, json={
            "subject": "STAGE", "outcome": "APPROVED", "met_on": office_today().isoformat(),
            "members": ["Kasi BK"]})).json()["decision_id"]
        r = await gd.http.post(f"/v1/cases/{cid}/stage", headers=pk,
                               json={"to_stage": to, "tpp_decision_id": decision})
        assert r.status_code == 200, r.text
    r = await gd.http.post(f"/v1/cases/{cid}/close", headers=head(gd), json={
        "reason": "COMPLETED", "letter_number": "W10.PAS.PAS5-PK.01.01-123",
        "closed_on": office_today().isoformat()})
    assert r.status_code == 200, r.text
    (got,) = await eventually(lambda: hooks.at("/kejari"))
    data = verify(sub["secret"], got)
    assert got.headers["ce-type"] == "bapas.GuidanceClosed.v1" and got.headers["ce-subject"] == cid
    assert data == {"reason": "COMPLETED", "closed_on": office_today().isoformat(),
                    "letter_number": "W10.PAS.PAS5-PK.01.01-123", "stage": "AKHIR",
                    "transferred_to": None}
