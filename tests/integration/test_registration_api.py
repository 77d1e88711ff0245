"""Registration over HTTP on real NATS and PostgreSQL: every command, query and refusal."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import timedelta

import pytest

from services.registration.app import definition
from shared.store import EventStore
from shared.streams import CaseRef
from tests.support.clock import office_today
from tests.support.service import running
from tests.support.wait import eventually

SITI = "3171015708450001"  # born 1945-08-17, female


def nik(i: int, *, female: bool = False, year: int = 85) -> str:
    day = 1 + i % 28 + (40 if female else 0)
    return f"317101{day:02d}{1 + i % 12:02d}{year:02d}{1 + i:04d}"


def body(the_nik: str = SITI, name: str = "Siti Aminah", program: str = "PB",
         officer: str | None = "pk-0007", **person) -> dict:
    start = office_today() - timedelta(days=20)
    return {
        "program": program,
        "decision": {"number": "PAS-1234.PK.01.05.06 Tahun 2026",
                     "issued_by": "Direktur Jenderal Pemasyarakatan",
                     "issued_on": (start - timedelta(days=4)).isoformat()},
        "origin_institution": "Lapas Kelas I Cipinang",
        "period": {"start_on": start.isoformat(), "end_on": (start + timedelta(days=365)).isoformat()},
        "person": {"full_name": name, "nik": the_nik,
                   "address": "Jl. Kemang Raya No. 5, Jakarta Selatan", "phone": "+6281234567890",
                   **person},
        "family_contact": {"name": "Budi", "relation": "anak", "phone": "+6281111111111"},
        "officer_id": officer,
    }


@pytest.fixture
async def svc(settings, streams):
    async with running(definition, settings) as s:
        yield s


async def register(svc, payload=None, office="jaksel", role="pk", **headers):
    r = await svc.http.post("/v1/clients", json=payload or body(),
                            headers={**svc.token(office, role), **headers})
    return r


async def test_a_nik_gives_birth_date_and_sex(svc):
    r = await register(svc)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["register_number"] == f"JAKSEL-{office_today().year}-00001"
    assert out["version"] == 1 and out["warnings"] == []
    view = (await svc.http.get(f"/v1/clients/{out['client_id']}", headers=svc.token())).json()
    assert view["person"]["birth_date"] == "1945-08-17" and view["person"]["sex"] == "F"
    assert view["status"] == "ACTIVE" and view["officer_id"] == "pk-0007"
    assert view["is_child"] is False


async def test_a_stated_birth_date_that_disagrees_is_kept_with_a_warning(svc):
    r = await register(svc, body(birth_date="1950-01-01", sex="M"))
    assert r.status_code == 201
    warnings = r.json()["warnings"]
    assert any("birth_date 1950-01-01 differs from the NIK (1945-08-17)" in w for w in warnings)
    assert any("sex M differs from the NIK (F)" in w for w in warnings)
    view = (await svc.http.get(f"/v1/clients/{r.json()['client_id']}", headers=svc.token())).json()
    assert view["person"]["birth_date"] == "1950-01-01" and view["person"]["sex"] == "M"


async def test_a_second_active_registration_of_a_nik_in_the_office_is_refused(svc):
    first = (await register(svc)).json()["client_id"]
    r = await register(svc, body(name="Siti A."))
    assert r.status_code == 409
    problem = r.json()
    assert problem["existing_client_id"] == first and first in problem["detail"]
    assert problem["field"] == "person.nik" and problem["rule"] == "nik_active"
    # another office may register the same person
    assert (await register(svc, office="bandung")).status_code == 201


async def test_an_idempotent_retry_answers_the_same_and_stores_nothing_more(svc):
    key = str(uuid.uuid4())
    first = await register(svc, **{"Idempotency-Key": key})
    again = await register(svc, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    store = EventStore(svc.kernel.nc, svc.kernel.topology, svc.kernel.catalog, keys=svc.kernel.keys)
    client = await store.load("registration", CaseRef("jaksel", first.json()["client_id"]))
    assert len(client.events) == 1
    year = office_today().year
    book = await store.load("registration", CaseRef("jaksel", f"register-{year}"))
    assert [e.data.number for e in book.events] == [1]
    other = await register(svc, body(name="Someone Else"), **{"Idempotency-Key": key})
    assert other.status_code == 422 and other.json()["field"] == "header.Idempotency-Key"


async def test_register_numbers_are_unique_when_officers_register_at_once(svc):
    results = await asyncio.gather(*(register(svc, body(nik(i), f"Klien {i}"))
                                     for i in range(12)))
    assert all(r.status_code == 201 for r in results), [r.text for r in results]
    numbers = sorted(r.json()["register_number"] for r in results)
    year = office_today().year
    assert numbers == [f"JAKSEL-{year}-{n:05d}" for n in range(1, 13)]


async def test_offices_see_only_their_own_clients(svc):
    cid = (await register(svc)).json()["client_id"]
    other = svc.token("bandung", "pk", sub="pk-0100")
    assert (await svc.http.get(f"/v1/clients/{cid}", headers=other)).status_code == 404
    r = await svc.http.post(f"/v1/clients/{cid}/officer", headers=other,
                            json={"officer_id": "pk-0100", "reason": "ambil alih"})
    assert r.status_code == 404 and "bandung" not in r.text
    missing = await svc.http.get(f"/v1/clients/{uuid.uuid4()}", headers=svc.token())
    assert missing.status_code == 404 and missing.json()["detail"] == r.json()["detail"]
    await eventually(lambda: _search(svc, svc.token()), until=lambda items: len(items) == 1)
    assert await _search(svc, other) == []
    auditor = svc.token("pusat", "auditor", sub="auditor-01")
    assert (await svc.http.get(f"/v1/clients/{cid}", headers=auditor)).status_code == 200


async def test_a_childs_case_is_seen_only_by_its_officer_supervisors_and_the_head(svc):
    child = (await register(svc, body(nik(3), "Anak", program="DIVERSI",
                                      officer="pk-0001"))).json()["client_id"]
    minor = (await register(svc, body(nik(4, year=12), "Remaja", program="PB",
                                      officer="pk-0001"))).json()["client_id"]
    for cid in (child, minor):
        url = f"/v1/clients/{cid}"
        assert (await svc.http.get(url, headers=svc.token(sub="pk-0007"))).status_code == 404
        assert (await svc.http.get(url, headers=svc.token(sub="pk-0001"))).status_code == 200
        for role in ("supervisor", "head"):
            assert (await svc.http.get(url, headers=svc.token("jaksel", role,
                                                              sub="x"))).status_code == 200
    view = (await svc.http.get(f"/v1/clients/{minor}", headers=svc.token(sub="pk-0001"))).json()
    assert view["is_child"] is True
    await eventually(lambda: _search(svc, svc.token("jaksel", "head", sub="k")),
                     until=lambda items: len(items) == 2)
    assert await _search(svc, svc.token(sub="pk-0007")) == []
    assert len(await _search(svc, svc.token(sub="pk-0001"))) == 2


@pytest.mark.parametrize("change, field, rule", [
    (lambda b: b["person"].update(nik="12345"), "person.nik", "nik"),
    (lambda b: b["person"].update(nik="3171013002001234"), "person.nik", "nik"),
    (lambda b: b["period"].update(end_on=b["period"]["start_on"]), "period", "period_order"),
    (lambda b: b["person"].update(phone="call me"), "person.phone", "string_pattern_mismatch"),
    (lambda b: b.update(program="HUKUMAN_MATI"), "program", "enum"),
    (lambda b: b["person"].pop("full_name"), "person.full_name", "missing"),
    (lambda b: b.update(surprise=True), "surprise", "extra_forbidden"),
    (lambda b: b["decision"].update(issued_on="2026-02-30"), "decision.issued_on", "date_from_datetime_parsing"),
])
async def test_bad_input_is_refused_naming_the_field_and_the_rule(svc, change, field, rule):
    payload = copy.deepcopy(body())
    change(payload)
    r = await register(svc, payload)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    errors = r.json()["errors"]
    assert any(e["field"] == field and e["rule"] == rule for e in errors), errors


async def test_a_decision_letter_from_the_future_is_refused(svc):
    payload = body()
    payload["decision"]["issued_on"] = (office_today() + timedelta(days=3)).isoformat()
    r = await register(svc, payload)
    assert r.status_code == 422 and r.json()["field"] == "decision.issued_on"


async def test_who_may_register(svc):
    assert (await svc.http.post("/v1/clients", json=body())).status_code == 401
    r = await register(svc, role="tpp")
    assert r.status_code == 403 and "pk" in r.json()["detail"]
    assert (await register(svc, role="supervisor")).status_code == 201


async def test_officer_address_and_corrections_keep_what_was_before(svc):
    cid = (await register(svc)).json()["client_id"]
    pk = svc.token()
    r = await svc.http.post(f"/v1/clients/{cid}/officer", headers=pk,
                            json={"officer_id": "pk-0009", "reason": "rotasi"})
    assert r.status_code == 200 and r.json()["events"] == ["OfficerAssigned"]
    again = await svc.http.post(f"/v1/clients/{cid}/officer", headers=pk,
                                json={"officer_id": "pk-0009", "reason": "rotasi"})
    assert again.json()["changed"] is False
    r = await svc.http.post(f"/v1/clients/{cid}/address", headers=pk,
                            json={"address": "Jl. Melati 2, Depok", "reported_by_client": True})
    assert r.json()["events"] == ["AddressChanged"]
    r = await svc.http.post(f"/v1/clients/{cid}/corrections", headers=pk,
                            json={"field": "person.full_name", "value": "Siti Aminah Lubis",
                                  "reason": "salah ketik"})
    assert r.json()["events"] == ["ClientDetailsCorrected"] and r.json()["version"] == 4
    store = EventStore(svc.kernel.nc, svc.kernel.topology, svc.kernel.catalog, keys=svc.kernel.keys)
    events = (await store.load("registration", CaseRef("jaksel", cid))).events
    assigned, moved, corrected = (e.data for e in events[1:4])
    assert assigned.previous_officer_id == "pk-0007" and assigned.officer_id == "pk-0009"
    assert moved.previous_address.startswith("Jl. Kemang") and moved.reported_by_client
    assert (corrected.old_value, corrected.new_value) == ("Siti Aminah", "Siti Aminah Lubis")
    r = await svc.http.post(f"/v1/clients/{cid}/corrections", headers=pk,
                            json={"field": "person.birth_date", "value": "1945-08-18",
                                  "reason": "akta kelahiran"})
    assert r.json()["events"] == ["ClientDetailsCorrected"]
    view = (await svc.http.get(f"/v1/clients/{cid}", headers=pk)).json()
    assert view["person"]["full_name"] == "Siti Aminah Lubis"
    assert view["person"]["birth_date"] == "1945-08-18"
    schema = svc.kernel.schema
    row = await eventually(lambda: svc.kernel.pool.fetchrow(
        f'SELECT full_name, birth_date FROM "{schema}".clients WHERE client_id = $1', cid),
        until=lambda r: r and str(r["birth_date"]) == "1945-08-18")
    assert row["full_name"] == "Siti Aminah Lubis"  # the read model took both corrections
    ready = (await svc.http.get("/readyz")).json()
    assert ready["held_cases"] == []
    # read models on the kernel's own loop, reactions as FastStream subscribers
    intakes = {c["name"]: c["intake"] for c in ready["consumers"]}
    assert intakes["client_directory"] == "kernel"
    assert intakes["transfer_intake"] == intakes["follow_guidance_closure"] == "faststream"
    assert view["person"]["address"] == "Jl. Melati 2, Depok" and view["officer_id"] == "pk-0009"
    bad = await svc.http.post(f"/v1/clients/{cid}/corrections", headers=pk,
                              json={"field": "person.nik", "value": "x", "reason": "r"})
    assert bad.status_code == 422 and bad.json()["field"] == "field"
    bad = await svc.http.post(f"/v1/clients/{cid}/corrections", headers=pk,
                              json={"field": "period.end_on", "value": "kemarin", "reason": "r"})
    assert bad.status_code == 422 and bad.json()["rule"] == "date"
    await eventually(lambda: svc.http.get("/v1/officers/pk-0009/caseload", headers=pk),
                     until=lambda r: r.json()["active"] == 1)


async def test_a_transfer_lands_at_the_receiving_office(svc):
    cid = (await register(svc)).json()["client_id"]
    head = svc.token("jaksel", "head", sub="kabapas-01")
    payload = {"to_office": "bandung", "tpp_decision_id": "tpp-77", "approved_by": "kabapas-01"}
    refused = await svc.http.post(f"/v1/clients/{cid}/transfer", headers=svc.token(), json=payload)
    assert refused.status_code == 403
    r = await svc.http.post(f"/v1/clients/{cid}/transfer", headers=head, json=payload)
    assert r.status_code == 200, r.text
    new_id = r.json()["new_client_id"]
    bandung = svc.token("bandung", "supervisor", sub="kasubsi-bdg")
    arrived = await eventually(lambda: svc.http.get(f"/v1/clients/{new_id}", headers=bandung),
                               until=lambda r: r.status_code == 200)
    view = arrived.json()
    assert view["office"] == "bandung" and view["transferred_from"] == {"office": "jaksel",
                                                                      "client_id": cid}
    assert view["person"]["nik"] == SITI and view["register_number"].startswith("BANDUNG-")
    # the receiving office reads the old case's record; the old case is read-only
    old = await svc.http.get(f"/v1/clients/{cid}", headers=bandung)
    assert old.status_code == 200 and old.json()["status"] == "TRANSFERRED"
    assert old.json()["transferred_to"] == {"office": "bandung", "client_id": new_id}
    frozen = await svc.http.post(f"/v1/clients/{cid}/address", headers=svc.token(),
                                 json={"address": "Jl. Lain", "reported_by_client": True})
    assert frozen.status_code == 409 and frozen.json()["rule"] == "transferred"
    # the person is no longer active at the old office: registering again is allowed there
    assert (await register(svc)).status_code == 201
    # but is at the new one
    dup = await register(svc, office="bandung")
    assert dup.status_code == 409 and dup.json()["existing_client_id"] == new_id


async def test_search_pages_with_a_cursor_and_filters(svc):
    for i in range(5):
        await register(svc, body(nik(10 + i), f"Klien Nomor {i}",
                                 program="CB" if i % 2 else "PB"))
    pk = svc.token()
    await eventually(lambda: _search(svc, pk), until=lambda items: len(items) == 5)
    seen, cursor = [], None
    while True:
        r = await svc.http.get("/v1/clients", headers=pk,
                               params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        page = r.json()
        seen += [i["full_name"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == [f"Klien Nomor {i}" for i in range(5)] and len(seen) == 5
    cb = (await svc.http.get("/v1/clients", headers=pk, params={"program": "CB"})).json()
    assert {i["full_name"] for i in cb["items"]} == {"Klien Nomor 1", "Klien Nomor 3"}
    by_number = (await svc.http.get("/v1/clients", headers=pk,
                                    params={"q": f"{office_today().year}-00003"})).json()
    assert [i["full_name"] for i in by_number["items"]] == ["Klien Nomor 2"]
    by_name = (await svc.http.get("/v1/clients", headers=pk, params={"q": "nomor 4"})).json()
    assert [i["full_name"] for i in by_name["items"]] == ["Klien Nomor 4"]
    by_nik = (await svc.http.get("/v1/clients", headers=pk, params={"q": nik(13)})).json()
    assert [i["full_name"] for i in by_nik["items"]] == ["Klien Nomor 3"]
    part = (await svc.http.get("/v1/clients", headers=pk, params={"q": nik(13)[:12]})).json()
    assert part["items"] == []  # only the whole NIK finds a person
    bad = await svc.http.get("/v1/clients", headers=pk, params={"cursor": "!!"})
    assert bad.status_code == 422 and bad.json()["field"] == "query.cursor"
    load = (await svc.http.get("/v1/officers/pk-0007/caseload", headers=pk)).json()
    assert load == {"officer_id": "pk-0007", "office": "jaksel", "active": 5,
                    "by_program": {"CB": 2, "PB": 3}}


async def test_every_read_of_a_client_is_recorded(svc):
    cid = (await register(svc)).json()["client_id"]
    await svc.http.get(f"/v1/clients/{cid}", headers=svc.token("jaksel", "head", sub="kabapas"))
    store = EventStore(svc.kernel.nc, svc.kernel.topology, svc.kernel.catalog, keys=svc.kernel.keys)
    reads = await eventually(lambda: store.load("access", CaseRef("jaksel", cid)),
                             until=lambda loaded: loaded.events)
    assert [(e.actor, e.data.what) for e in reads.events] == [
        ("kabapas", f"GET /v1/clients/{cid}")]


async def _search(svc, headers, **params) -> list[dict]:
    r = await svc.http.get("/v1/clients", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]
