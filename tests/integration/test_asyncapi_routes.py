"""Every service, started as its process starts it, answers its AsyncAPI document and page
without a token, with the subjects of its own namespace."""

from __future__ import annotations

import pytest

from services.audit.app import definition as audit
from services.guidance.app import definition as guidance
from services.notification.app import definition as notification
from services.registration.app import definition as registration
from services.supervision.app import definition as supervision
from tests.support.service import running


@pytest.mark.parametrize("defn", (registration, guidance, supervision, notification, audit),
                         ids=lambda d: d.name)
async def test_a_running_service_serves_its_asyncapi_document_without_a_token(
        defn, settings, streams, topology):
    async with running(defn, settings) as svc:
        r = await svc.http.get("/asyncapi.json")
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["asyncapi"].startswith("3.") and doc["info"]["title"] == defn.title
        assert all(c["address"].startswith(f"{topology.namespace}.")
                   for c in doc["channels"].values())
        page = await svc.http.get("/asyncapi")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "TryItPlugin" not in page.text
