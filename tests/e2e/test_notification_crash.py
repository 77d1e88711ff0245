"""A SIGKILL of the notification process mid-stream and a restart lose no delivery, and any
repeat carries the same webhook-id (and the same body, validly signed)."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nats
import pytest
from standardwebhooks.webhooks import Webhook

from services.registration.events import EVENTS as REGISTRATION_EVENTS
from shared.events import EventCatalog
from shared.store import EventStore
from shared.streams import CaseRef, Topology
from shared.web.auth import TokenService
from tests.conftest import TEST_SECRET
from tests.integration.test_registration_api import body, nik
from tests.support.calls import call as json_call
from tests.support.processes import services
from tests.support.wait import eventually

pytestmark = pytest.mark.slow
CLIENTS = 40
HELD = 5  # the receiver holds the answer to this POST until the process has been killed
TOKEN = TokenService(TEST_SECRET).issue("kabapas-01", "jaksel", ["head"])


class Receiver(ThreadingHTTPServer):
    """An agency endpoint: passes the CloudEvents validation handshake and records every
    POST (lower-cased headers, body) on arrival, answering 200 after a short delay, so that
    a delivery is always in flight. The HELD-th POST is answered only after `release`."""

    daemon_threads = True

    def __init__(self, delay: float = 0.05) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.delay = delay
        self.lock = threading.Lock()
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.held = threading.Event()     # the HELD-th POST has arrived and waits
        self.release = threading.Event()  # ... until this is set

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/hook"

    def received(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return list(self.posts)


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *args) -> None:
        pass

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server
        self.send_response(200)
        self.send_header("WebHook-Allowed-Origin", self.headers.get("WebHook-Request-Origin", ""))
        self.send_header("Allow", "POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802 - http.server
        n = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(n)
        with self.server.lock:
            self.server.posts.append(({k.lower(): v for k, v in self.headers.items()}, payload))
            count = len(self.server.posts)
        if count == HELD:
            self.server.held.set()
            self.server.release.wait(60)
        else:
            time.sleep(self.server.delay)
        try:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass  # the sender was killed while we waited


call = functools.partial(json_call, token=TOKEN)


def register_all(reg: str) -> list[str]:
    cids = []
    for i in range(CLIENTS):
        status, doc = call("POST", f"{reg}/v1/clients", body(nik(200 + i), f"Klien {i}"))
        assert status == 201, doc
        cids.append(doc["client_id"])
    return cids


@pytest.fixture
def receiver():
    rx = Receiver()
    thread = threading.Thread(target=rx.serve_forever, daemon=True)
    thread.start()
    try:
        yield rx
    finally:
        rx.release.set()
        rx.shutdown()
        rx.server_close()
        thread.join(5)


async def test_a_killed_dispatcher_loses_no_delivery_and_repeats_with_the_same_id(
        servers, receiver: Receiver):
    with services(servers, ("registration", "notification"),
                  BAPAS_NOTIFICATION_LEASE_SECONDS="2",
                  BAPAS_NOTIFICATION_POLL_SECONDS="0.05") as system:
        reg, nt = system.urls["registration"], system.urls["notification"]
        status, sub = call("POST", f"{nt}/v1/subscriptions", {
            "agency": "Kejaksaan Negeri Jakarta Selatan", "agency_kind": "KEJAKSAAN",
            "event_types": ["ClientRegistered"], "data_level": "IDENTIFIERS",
            "delivery": {"kind": "WEBHOOK", "url": receiver.url}})
        assert status == 201, sub
        secret = sub["secret"]

        # register while the deliveries flow; kill the process while it waits for an answer
        # (registering may finish first on a busy machine: the deliveries still flow)
        registering = asyncio.create_task(asyncio.to_thread(register_all, reg))
        await eventually(lambda: receiver.held.is_set() or (
            registering.done() and registering.exception() is not None), timeout=60, every=0.01)
        if not receiver.held.is_set():
            await registering  # raises what went wrong
        system.kill("notification")
        at_kill = receiver.received()
        receiver.release.set()
        assert 0 < len(at_kill) < CLIENTS, "the kill did not land mid-stream"
        held_id = at_kill[HELD - 1][0]["webhook-id"]
        cids = await registering

        system.start("notification")
        nc = await nats.connect(servers.nats_url)
        try:
            store = EventStore(nc, Topology(system.namespace), EventCatalog(REGISTRATION_EVENTS))
            event_ids = {}
            for cid in cids:
                (event,) = (await store.load("registration", CaseRef("jaksel", cid))).events
                assert event.type == "ClientRegistered"
                event_ids[event.id] = cid
        finally:
            await nc.close()
        assert len(event_ids) == CLIENTS

        posts = await eventually(
            receiver.received, timeout=60,
            until=lambda ps: {h["webhook-id"] for h, _ in ps} >= set(event_ids))
        rows = await eventually(
            lambda: call("GET", f"{nt}/v1/deliveries?status=DELIVERED&limit=500")[1],
            until=lambda rows: len(rows) == CLIENTS, timeout=30)
        status, dead = call("GET", f"{nt}/v1/deliveries?status=DEAD")
        assert status == 200 and dead == []
        # (beside them, one e-mail per client to pk-0007, skipped: not in the directory)
        status, everything = call("GET", f"{nt}/v1/deliveries?limit=500")
        webhooks = [r for r in everything if r["channel"] == "WEBHOOK"]
        assert [r["status"] for r in webhooks] == ["DELIVERED"] * CLIENTS
        assert {r["status"] for r in everything if r["channel"] != "WEBHOOK"} == {"SKIPPED"}
        posts = receiver.received()

    # every event arrived, under its own id, and nothing else did
    by_id: dict[str, list[tuple[dict[str, str], bytes]]] = {}
    for headers, payload in posts:
        by_id.setdefault(headers["webhook-id"], []).append((headers, payload))
    assert set(by_id) == set(event_ids)
    hook = Webhook(secret)
    for msg_id, copies in by_id.items():
        first_headers, first_body = copies[0]
        data = json.loads(first_body)
        assert data["client_id"] == event_ids[msg_id]
        assert "person" not in data  # IDENTIFIERS: no personal data
        for headers, payload in copies:
            assert payload == first_body  # a repeat is the same message
            assert headers["ce-id"] == msg_id and headers["ce-type"] == "bapas.ClientRegistered.v1"
            assert hook.verify(payload, headers) == data
    # the delivery in flight at the kill was sent again, the same; nothing else twice
    repeated = {msg_id for msg_id, copies in by_id.items() if len(copies) > 1}
    assert repeated == {held_id}, {k: len(v) for k, v in by_id.items() if len(v) > 1}
    assert len(posts) == CLIENTS + 1
    attempts = {r["event_id"]: r["attempts"] for r in rows}
    assert set(attempts) == set(event_ids)
    assert attempts[held_id] == 2 and all(n == 1 for k, n in attempts.items() if k != held_id)
    assert {r["subscription_id"] for r in rows} == {sub["id"]}
