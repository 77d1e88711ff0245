"""A supervision process killed (SIGKILL) in the middle of a missed-report sweep, then
restarted: every missed report is recorded, none twice."""

from __future__ import annotations

import asyncio
import functools
from datetime import date, timedelta

import nats
import pytest

from services.supervision.events import EVENTS
from shared.events import EventCatalog
from shared.store import EventStore
from shared.streams import CaseRef, Topology
from shared.web.auth import TokenService
from tests.conftest import TEST_SECRET
from tests.integration.test_registration_api import body, nik
from tests.support.calls import call as json_call
from tests.support.clock import office_today
from tests.support.processes import services
from tests.support.wait import eventually

pytestmark = pytest.mark.slow
CLIENTS = 40
INTERVAL = 7
TOKEN = TokenService(TEST_SECRET).issue("kasubsi", "jaksel", ["pk", "supervisor", "head"])


call = functools.partial(json_call, token=TOKEN)


def expected_misses(start: date, today: date) -> list[date]:
    first = start + timedelta(days=INTERVAL)
    dues, due = [], first
    while due + timedelta(days=3) < today:
        dues.append(due)
        due += timedelta(days=INTERVAL)
    return dues


async def misses(store: EventStore, cids: list[str]) -> dict[str, list]:
    out = {}
    for cid in cids:
        events = (await store.load("supervision", CaseRef("jaksel", cid))).events
        out[cid] = [e.data for e in events if e.type == "ReportMissed"]
    return out


async def test_a_sweep_killed_midway_resumes_with_nothing_lost_and_nothing_twice(servers):
    with services(servers, ("registration", "supervision"),
                  BAPAS_SUPERVISION_SWEEP_SECONDS="0.2") as system:
        reg, sup = system.urls["registration"], system.urls["supervision"]
        # 300 = 7 * 42 + 6: the same misses are due whether the sweeps run today or up to
        # four days later, so a run that crosses midnight WIB expects what it finds
        start = office_today() - timedelta(days=300)
        cids = []
        for i in range(CLIENTS):
            payload = body(nik(100 + i), f"Klien {i}")
            payload["period"] = {"start_on": start.isoformat(),
                                 "end_on": (start + timedelta(days=400)).isoformat()}
            payload["decision"]["issued_on"] = start.isoformat()
            status, doc = call("POST", f"{reg}/v1/clients", payload)
            assert status == 201, doc
            cids.append(doc["client_id"])
        for cid in cids:
            await eventually(lambda cid=cid: call("GET", f"{sup}/v1/supervision/{cid}")[0],
                             equals=200)
        nc = await nats.connect(servers.nats_url)
        try:
            store = EventStore(nc, Topology(system.namespace), EventCatalog(EVENTS))
            for cid in cids:
                status, doc = call("PUT", f"{sup}/v1/supervision/{cid}/plan",
                                   {"interval_days": INTERVAL, "grace_days": 3,
                                    "first_due_on": (start + timedelta(days=INTERVAL)).isoformat()})
                assert status == 200, doc
            # kill the process as soon as the sweep has recorded some, not all
            seen = await eventually(lambda: misses(store, cids),
                                    until=lambda m: any(m.values()), every=0.02)
            system.kill("supervision")
            want = expected_misses(start, office_today())
            recorded_at_kill = sum(len(v) for v in seen.values())
            assert 0 < recorded_at_kill < len(want) * CLIENTS, "the kill did not land mid-sweep"
            system.start("supervision")
            final = await eventually(lambda: misses(store, cids),
                                     until=lambda m: all(len(v) >= len(want)
                                                         for v in m.values()), timeout=120)
            await asyncio.sleep(1)  # a few more sweeps: they must add nothing
            final = await misses(store, cids)
            for cid, recorded in final.items():
                assert [m.due_on for m in recorded] == want, cid
                assert [m.consecutive for m in recorded] == list(range(1, len(want) + 1))
                events = (await store.load("supervision", CaseRef("jaksel", cid))).events
                violations = [e for e in events if e.type == "ViolationRecorded"]
                assert len(violations) == len(want) // 3
        finally:
            await nc.close()
