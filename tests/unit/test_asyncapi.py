"""Each service's AsyncAPI document, drawn without servers: the subjects it publishes and
consumes, the schemas of every event of its context, and no "try it" route."""

from __future__ import annotations

import warnings

import pytest

from services.audit.app import definition as audit
from services.guidance.app import definition as guidance
from services.notification.app import definition as notification
from services.notification.events import FEED_PAYLOADS
from services.registration.app import definition as registration
from services.supervision.app import definition as supervision
from shared.access import ACCESS
from shared.asyncapi import asyncapi_document, asyncapi_html
from shared.envelope import ce_type
from shared.metrics import KernelMetrics
from shared.streams import CaseRef, Topology
from shared.web.app import create_app
from shared.web.auth import TokenService

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # see test_http.py
    from fastapi.testclient import TestClient

SERVICES = (registration, guidance, supervision, notification, audit)
TOPOLOGY = Topology()


def document(defn, topology: Topology = TOPOLOGY) -> dict:
    return asyncapi_document(defn.title, defn.version, defn.description,
                             defn.contract(topology))


def addresses(doc: dict, action: str) -> set[str]:
    return {doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[-1]]["address"]
            for op in doc["operations"].values() if op["action"] == action}


def case(context: str, topology: Topology = TOPOLOGY) -> str:
    """The address of a context's case subjects, checked against the subject events go to."""
    address = f"{topology.root}.{{office}}.{context}.{{client_id}}"
    ref = CaseRef("jaksel", "c-1")
    assert address.format(office=ref.office, client_id=ref.client_id) == \
        topology.subject(context, ref)
    return address


def messages(doc: dict, address: str) -> list[dict]:
    channel = next(c for c in doc["channels"].values() if c["address"] == address)
    return [doc["components"]["messages"][m["$ref"].rsplit("/", 1)[-1]]
            for m in channel["messages"].values()]


@pytest.mark.parametrize("defn", SERVICES, ids=lambda d: d.name)
def test_every_service_has_an_asyncapi_3_document_with_its_own_title(defn):
    doc = document(defn)
    assert doc["asyncapi"].startswith("3.")
    assert doc["info"]["title"] == defn.title and doc["info"]["version"] == defn.version


@pytest.mark.parametrize("defn,sends,receives", [
    (registration, {case("registration"), case("access")}, {case("guidance")}),
    (guidance, {case("guidance"), case("access")}, {case("registration")}),
    (supervision, {case("supervision"), case("access")},
     {case("registration"), case("guidance")}),
    (notification, {TOPOLOGY.feed_subject("{office}", t) for t in FEED_PAYLOADS},
     {case("registration"), case("guidance"), case("supervision")}),
    (audit, set(), {case("registration"), case("guidance"), case("supervision"),
                    case("access")}),
], ids=lambda v: getattr(v, "name", ""))
def test_the_document_lists_the_subjects_a_service_publishes_and_consumes(defn, sends,
                                                                          receives):
    doc = document(defn)
    assert addresses(doc, "send") == sends
    assert addresses(doc, "receive") == receives


@pytest.mark.parametrize("defn", SERVICES, ids=lambda d: d.name)
def test_a_service_receives_every_context_it_decodes_besides_its_own(defn):
    received = addresses(document(defn), "receive")
    for registry in defn.registries:
        if registry.context != defn.name:
            assert case(registry.context) in received


@pytest.mark.parametrize("defn", SERVICES, ids=lambda d: d.name)
def test_every_event_on_a_channel_has_its_schema_and_its_ce_type(defn):
    doc = document(defn)
    schemas = doc["components"]["schemas"]
    for registry in (*defn.registries, ACCESS):
        address = case(registry.context)
        if address not in addresses(doc, "send") | addresses(doc, "receive"):
            continue
        [message] = messages(doc, address)
        assert message["headers"]["properties"]["ce-type"]["enum"] == \
            [ce_type(cls.event_type, cls.event_version) for cls in registry.types()]
        for cls in registry.types():
            wanted = cls.model_json_schema()
            assert set(schemas[cls.__name__]["properties"]) == set(wanted["properties"])
            assert schemas[cls.__name__].get("required", []) == wanted.get("required", [])


@pytest.mark.parametrize("defn", (registration, guidance, supervision), ids=lambda d: d.name)
def test_a_context_publishes_every_event_of_its_events_module(defn):
    [own] = [r for r in defn.registries if r.context == defn.name]
    doc = document(defn)
    [message] = messages(doc, case(defn.name))
    payload = doc["components"]["schemas"][message["payload"]["$ref"].rsplit("/", 1)[-1]]
    assert [ref["$ref"].rsplit("/", 1)[-1] for ref in payload["anyOf"]] == \
        [cls.__name__ for cls in own.types()]


def test_a_known_required_field_is_in_the_schema():
    schemas = document(registration)["components"]["schemas"]
    assert {"nik", "birth_date"} <= set(schemas["Person"]["required"])
    assert "register_number" in schemas["ClientRegistered"]["required"]


def test_the_agency_feed_has_one_channel_per_event_type_with_its_redacted_body():
    doc = document(notification)
    schemas = doc["components"]["schemas"]
    for event_type, model in FEED_PAYLOADS.items():
        [message] = messages(doc, TOPOLOGY.feed_subject("{office}", event_type))
        name = message["payload"]["$ref"].rsplit("/", 1)[-1]
        assert name == model.__name__
        assert set(schemas[name]["properties"]) == set(model.model_fields)
        [wanted] = message["headers"]["properties"]["ce-type"]["enum"]
        assert wanted.startswith(f"bapas.{event_type}.v")
    assert "nik" not in schemas["ClientRegisteredIdentifiers"]["properties"]


def test_the_namespace_prefixes_every_address():
    ns = Topology("t1")
    for defn in SERVICES:
        doc = document(defn, ns)
        for channel in doc["channels"].values():
            assert channel["address"].startswith(("t1.bapas.", "t1.agency."))
    assert case("guidance", ns) in addresses(document(registration, ns), "receive")


def test_the_document_has_no_try_it_route_and_the_page_no_try_it_form():
    doc = document(registration)
    assert all("bindings" not in op or "http" not in op["bindings"]
               for op in doc["operations"].values())
    assert all("try" not in c["address"] for c in doc["channels"].values())
    page = asyncapi_html(doc)
    assert "TryItPlugin" not in page and "asyncapi/try" not in page
    assert registration.title in page


def test_the_routes_answer_without_a_token_and_nothing_else_is_mounted():
    app = create_app(service="registration", title="t", description="t", version="1",
                     tokens=TokenService("asyncapi-test-secret-0123456789-abcdef"),
                     metrics=KernelMetrics(), readiness=None,
                     asyncapi=lambda: document(registration))
    with TestClient(app) as http:
        r = http.get("/asyncapi.json")
        assert r.status_code == 200 and r.json()["asyncapi"].startswith("3.")
        page = http.get("/asyncapi")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert http.post("/asyncapi/try", json={}).status_code == 404
        assert http.post("/asyncapi", json={}).status_code == 405
        assert not any("asyncapi" in path for path in http.get("/openapi.json").json()["paths"])
