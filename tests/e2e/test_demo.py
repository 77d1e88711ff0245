"""`bapas demo` against a running `bapas up`: a living office a minute after start-up.

The platform runs exactly as in test_platform.py (its own session, data folder and service
ports; everything it started is killed at the end, whatever happens), with the missed-report
sweeper set to run every second. The demo is driven as a newcomer would run it; what it left
behind is then read back through the public APIs and `bapas history`.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from shared.web.auth import TokenService
from tests.e2e.test_platform import (
    SERVICES,
    START_TIMEOUT,
    Platform,
    describe,
    environment,
    free_ports,
    run_cli,
    survivors,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

CLIENTS = 30
DEMO_TIMEOUT = 150.0


class Reader:
    """GETs with development tokens minted from the platform's secret."""

    def __init__(self, data: Path, urls: dict[str, str]) -> None:
        self.tokens = TokenService((data / "secret").read_text().strip())
        self.urls = urls

    def get(self, service: str, path: str, office: str = "jaksel",
            roles: tuple[str, ...] = ("head", "supervisor"), **query: Any) -> tuple[int, Any]:
        token = self.tokens.issue("test-reader", office, list(roles))
        url = self.urls[service] + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def ok(self, service: str, path: str, **kw: Any) -> Any:
        status, doc = self.get(service, path, **kw)
        assert status == 200, (path, status, doc)
        return doc

    def clients(self) -> list[dict[str, Any]]:
        items, cursor = [], None
        while True:
            page = self.ok("registration", "/v1/clients", limit=100,
                           **({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


def test_bapas_demo_fills_a_running_system_with_a_living_office(tmp_path):
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    data = tmp_path / "data"
    up = Platform(data, ports)
    up.env["BAPAS_SUPERVISION_SWEEP_SECONDS"] = "1"  # the real clock, swept often
    try:
        up.start()
        up.read_until(lambda line: line.startswith("token"), START_TIMEOUT)
        up.remember_descendants()
        urls = json.loads((data / "run.json").read_text())["services"]
        assert {n: u for n, u in urls.items() if n in ports} == {
            name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        env = environment({})  # the demo finds the services in <data>/run.json

        # ------------------------------------------------------------------ the demo runs
        started = time.monotonic()
        try:
            demo = run_cli("demo", "--clients", str(CLIENTS), "--seed", "7", "--data", str(data),
                           env=env, timeout=DEMO_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"bapas demo did not finish in {DEMO_TIMEOUT:.0f}s: {exc.stdout}\n"
                        f"{exc.stderr}\n{up.report()}")
        took = time.monotonic() - started
        up.remember_descendants()
        assert demo.returncode == 0, demo.stdout + demo.stderr + up.report()
        out = demo.stdout
        assert f"{CLIENTS} clients" in out and "closures:" in out and "missed reports:" in out
        assert "bapas history" in out and "/v1/compliance" in out and "/worklist" in out, out
        print(out, f"(demo took {took:.1f}s)")

        reader = Reader(data, urls)
        clients = reader.clients()
        assert len(clients) == CLIENTS, clients
        assert {c["program"] for c in clients} == {
            "PB", "CB", "CMB", "ASIMILASI", "PIDANA_BERSYARAT", "DIVERSI", "PIDANA_PENGAWASAN"}
        assert any(c["is_child"] for c in clients)

        # ------------------------------------------- every stage, and a completed closure
        cases = {c["client_id"]: reader.ok("guidance", f"/v1/cases/{c['client_id']}")
                 for c in clients}
        assert {case["stage"] for case in cases.values() if case["status"] == "OPEN"} == {
            "AWAL", "LANJUTAN", "AKHIR"}
        closures = [case["closure"] for case in cases.values() if case["closure"]]
        completed = [c for c in closures if c["reason"] == "COMPLETED"]
        assert completed and all(c["stage"] == "AKHIR" and c["letter_number"]
                                 for c in completed), closures
        for cid, case in cases.items():
            if case["closure"] and case["closure"]["reason"] == "COMPLETED":
                assert case["closure"]["closed_on"] >= case["period"]["end_on"], case
        assert {"TRANSFERRED", "REVOKED", "DECEASED"} <= {c["reason"] for c in closures}
        assert any(case["litmas"]["submitted"] for case in cases.values())
        assert any(d["outcome"] != "APPROVED" for case in cases.values()
                   for d in case["decisions"]), "some TPP decisions refuse or defer"
        assert any(s.get("group_id") for case in cases.values() for s in case["sessions"])

        # ------------------------- three missed reports: a KHUSUS violation and a review
        def khusus_from_misses() -> list[str]:
            found = []
            for c in clients:
                view = reader.ok("supervision", f"/v1/supervision/{c['client_id']}")
                if any(v["category"] == "KHUSUS" and v["source"] == "MISSED_REPORTS"
                       for v in view["violations"]) and view["tpp_reviews"]:
                    found.append(c["client_id"])
            return found

        missed = wait_for("a KHUSUS violation from three missed reports", khusus_from_misses,
                          60, every=1.0)
        view = reader.ok("supervision", f"/v1/supervision/{missed[0]}")
        assert [m["consecutive"] for m in view["missed_reports"]][:3] == [1, 2, 3], view
        board = reader.ok("supervision", "/v1/compliance")
        assert any(i["kind"] == "VIOLATION_AWAITING_TPP" for e in board["entries"]
                   for i in e["items"]), board
        views = {c["client_id"]: reader.ok("supervision", f"/v1/supervision/{c['client_id']}")
                 for c in clients}
        contacts = [x for v in views.values() for x in v["contacts"]]
        assert any(x["kind"] == "LAPOR_DIRI" and x["covers_due_on"] for x in contacts)
        assert any(x["kind"] == "KUNJUNGAN_RUMAH" for x in contacts)

        # -------------------------------------- the transferred client at the other office
        moved = [c for c in clients if c["status"] == "TRANSFERRED"]
        assert moved, clients
        record = reader.ok("registration", f"/v1/clients/{moved[0]['client_id']}")
        there = record["transferred_to"]
        assert there and there["office"] != "jaksel"
        status, _ = reader.get("registration", f"/v1/clients/{there['client_id']}")
        assert status == 404  # not ours any more: the other office holds it
        arrived = reader.ok("registration", f"/v1/clients/{there['client_id']}",
                            office=there["office"])
        assert arrived["transferred_from"] == {"office": "jaksel",
                                               "client_id": moved[0]["client_id"]}
        assert arrived["person"]["nik"] == record["person"]["nik"]
        opened = reader.ok("guidance", f"/v1/cases/{there['client_id']}", office=there["office"])
        assert opened["status"] == "OPEN" and opened["stage"] == "AWAL"

        # ------------------------------------------------------- bapas history of a client
        sample = next(cid for cid, v in views.items()
                      if v["contacts"] and cases[cid]["sessions"] and cases[cid]["stages"])
        history = run_cli("history", sample, "--data", str(data), env=env)
        assert history.returncode == 0, history.stdout + history.stderr
        lines = history.stdout.splitlines()
        events = [line.split() for line in lines if re.match(r"\d{4}-\d\d-\d\d ", line)]
        assert events and all(e[2] == "ok" for e in events), history.stdout
        contexts = {e[3] for e in events}
        assert {"registration", "guidance", "supervision"} <= contexts, history.stdout
        for kind in ("ClientRegistered", "GuidanceOpened", "LitmasSubmitted", "StageAdvanced",
                     "SupervisionStarted", "VisitLogged"):
            assert kind in history.stdout, history.stdout
        assert lines[-1] == f"{len(events)} events; chain intact", history.stdout
    finally:
        up.kill()
    left = survivors(up.seen)
    assert not left, describe(left)
