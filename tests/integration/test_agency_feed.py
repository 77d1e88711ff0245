"""The agency feed: redacted events on `agency.<office>.<EventType>`, and the shipped accounts
example (deploy/nats-accounts.conf) that lets an agency read its own office's feed only.

The permission tests run a nats-server of their own from a copy of the shipped file (only the
store_dir line swapped), so they prove the file an operator deploys, not a look-alike. The last
test runs the registration and notification services in-process on the session's servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.notification import app as notification
from services.notification.domain import IDENTIFIER_FIELDS, DataLevel, attributes, redact
from services.notification.feed import feed_stream
from services.registration import app as registration
from shared.envelope import ce_type
from shared.local.servers import free_port, nats_server_binary
from shared.store import EventStore
from shared.streams import CaseRef, Topology, check_server_profile, stream_profile
from tests.integration.test_registration_api import SITI, body
from tests.support.service import running
from tests.support.wait import eventually

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy/nats-accounts.conf"
STORE_LINE = 'store_dir: "/var/lib/nats"'
PASSWORDS = {  # the config reads them from the environment ($NAME)
    "NATS_ADMIN_PASSWORD": "admin-test-password",
    "BAPAS_SERVICES_PASSWORD": "services-test-password",
    "AGENCY_JAKSEL_PASSWORD": "jaksel-test-password",
    "AGENCY_BANDUNG_PASSWORD": "bandung-test-password",
}
USERS = {"bapas-services": "BAPAS_SERVICES_PASSWORD", "agency-jaksel": "AGENCY_JAKSEL_PASSWORD",
         "agency-bandung": "AGENCY_BANDUNG_PASSWORD"}
FEED = feed_stream(Topology(""))  # no namespace: the real names, AGENCY_FEED and agency.>
REFUSED_WAIT = 0.5  # a refused request gets no answer; how long we wait for one

# Personal data of the sample client: none of it may reach an agency.
PERSON = {"full_name": "Siti Aminah", "nik": SITI, "address": "Jl. Kemang Raya No. 5",
          "phone": "+6281234567890"}
PERSONAL_KEYS = ("person", "full_name", "nik", "address", "phone", "family_contact")
CLIENT_REGISTERED = ce_type("ClientRegistered", 1)


# ------------------------------------------------------------------------------ the server


@dataclass
class AccountsServer:
    port: int
    monitor_port: int

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    async def connect(self, user: str) -> Connection:
        conn = Connection(user)
        conn.nc = await nats.connect(f"nats://127.0.0.1:{self.port}", user=user,
                                     password=PASSWORDS[USERS[user]], error_cb=conn.on_error,
                                     allow_reconnect=False, name=user)
        return conn


class Connection:
    """A client and the asynchronous errors the server sent it (Permissions Violation...).

    nats-py 2.16 does not raise on a refused subscription or publish: the server answers
    `-ERR 'Permissions Violation for ...'`, the connection stays open, and the client passes a
    `nats.errors.Error("nats: permissions violation for ...")` (lower-cased) to `error_cb`.
    """

    def __init__(self, user: str) -> None:
        self.user = user
        self.nc: NATS
        self.errors: list[Exception] = []

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(exc)

    async def subscribe(self, subject: str):
        """A subscription the server has when this returns. nats-py 2.16 queues the SUB for
        its flusher task but writes the PING of `flush()` to the socket at once, so a single
        flush can come back before the SUB was sent (seen here: PING, PUB, PUB, SUB); the
        second PING goes out after it."""
        sub = await self.nc.subscribe(subject)
        await self.nc.flush()
        await self.nc.flush()
        return sub

    async def violation(self, kind: str, subject: str) -> None:
        """Wait until the server has refused `kind` ("subscription" or "publish") of
        `subject` for this user."""
        wanted = f'nats: permissions violation for {kind} to "{subject}"'.lower()
        await self.nc.flush()
        await eventually(lambda: [str(e) for e in self.errors], until=lambda seen: wanted in seen,
                         timeout=5)
        assert all(type(e) is nats.errors.Error for e in self.errors), self.errors


@contextlib.contextmanager
def accounts_server(tmp_path: Path) -> Iterator[AccountsServer]:
    shipped = SHIPPED.read_text()
    assert STORE_LINE in shipped  # nats-server refuses -sd beside store_dir: swap the line
    conf = tmp_path / "nats-accounts.conf"
    conf.write_text(shipped.replace(STORE_LINE, f'store_dir: "{tmp_path / "js"}"'))
    server = AccountsServer(free_port(), free_port())
    log = tmp_path / "nats-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf), "-a", "127.0.0.1", "-p", str(server.port),
             "-m", str(server.monitor_port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **PASSWORDS})
    try:
        deadline = time.monotonic() + 20
        while not _healthy(server.monitor_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start from {SHIPPED.name}:\n"
                                   + log.read_text(errors="replace")[-3000:])
            time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _healthy(monitor_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{monitor_url}/healthz?js-enabled-only=true",
                                    timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@dataclass
class Feed:
    server: AccountsServer
    services: Connection
    jaksel: Connection
    bandung: Connection


@pytest.fixture
async def feed(tmp_path) -> AsyncIterator[Feed]:
    """The shipped accounts config, provisioned as an operator would: AGENCY_FEED (as the
    notification service creates it), the REGISTRATION event stream, and one pull consumer per
    agency filtered on its office."""
    with accounts_server(tmp_path) as server:
        async with contextlib.AsyncExitStack() as stack:
            conns = []
            for user in ("bapas-services", "agency-jaksel", "agency-bandung"):
                conn = await server.connect(user)
                stack.push_async_callback(conn.nc.close)
                conns.append(conn)
            services = conns[0]
            js = services.nc.jetstream()
            await js.add_stream(FEED)
            await js.add_stream(stream_profile(Topology(""), "registration"))
            for office in ("jaksel", "bandung"):
                await js.add_consumer(FEED.name, ConsumerConfig(
                    name=f"agency-{office}", durable_name=f"agency-{office}",
                    filter_subject=f"agency.{office}.>", deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.EXPLICIT))
            yield Feed(server, *conns)


def full_event(office: str) -> tuple[str, bytes, dict[str, str]]:
    """A ClientRegistered as stored in the event stream: (id, body, headers)."""
    event_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    data = {"client_id": client_id, "office": office,
            "register_number": f"{office.upper()}-2026-00001", "program": "PB",
            "decision": {"number": "PAS-1234.PK.01.05.06 Tahun 2026", "issued_on": "2026-01-05"},
            "origin_institution": "Lapas Kelas I Cipinang",
            "period": {"start_on": "2026-01-10", "end_on": "2027-01-10"},
            "person": {**PERSON, "birth_date": "1945-08-17", "sex": "F"},
            "family_contact": {"name": "Budi", "relation": "anak", "phone": "+6281111111111"},
            "officer_id": "pk-0007", "is_child": False,
            "registered_at": datetime.now(UTC).isoformat()}
    headers = {"ce-specversion": "1.0", "ce-id": event_id,
               "ce-source": f"/bapas/{office}/registration", "ce-type": CLIENT_REGISTERED,
               "ce-subject": client_id, "content-type": "application/json",
               "ce-time": data["registered_at"], "ce-office": office, "ce-sequence": "1",
               "ce-actor": "pk-0007", "ce-prevhash": "0" * 64, "ce-hash": "f" * 64}
    return event_id, json.dumps(data).encode(), headers


async def publish_redacted(services: Connection, office: str) -> str:
    """What the AgencyFeed reactor does for one event; returns the event id."""
    event_id, body_bytes, headers = full_event(office)
    await services.nc.jetstream().publish(
        f"agency.{office}.ClientRegistered",
        redact("ClientRegistered", body_bytes, DataLevel.IDENTIFIERS),
        headers={**attributes(headers, DataLevel.IDENTIFIERS), "Nats-Msg-Id": event_id})
    return event_id


def assert_identifiers_only(headers: dict[str, str], data: bytes) -> None:
    assert headers["ce-type"] == CLIENT_REGISTERED
    assert headers["ce-datalevel"] == DataLevel.IDENTIFIERS.value
    assert not {"ce-actor", "ce-prevhash", "ce-hash"} & set(headers)
    fields = json.loads(data)
    assert set(fields) <= set(IDENTIFIER_FIELDS["ClientRegistered"]), fields
    assert not set(PERSONAL_KEYS) & set(fields)
    text = data.decode()
    for value in (*PERSON.values(), "1945-08-17", "+6281111111111", "Budi"):
        assert value not in text


async def consumer_state(feed: Feed, name: str):
    return await feed.services.nc.jetstream().consumer_info(FEED.name, name)


# ------------------------------------------------------------------------------- the tests


async def test_an_agency_reads_its_own_office_feed_live_and_from_its_consumer(feed):
    live = await feed.jaksel.subscribe("agency.jaksel.>")
    jaksel_ids = [await publish_redacted(feed.services, "jaksel") for _ in range(2)]
    await publish_redacted(feed.services, "bandung")

    # live: a core subscription, through the account's stream import
    for event_id in jaksel_ids:
        msg = await live.next_msg(timeout=5)
        assert msg.subject == "agency.jaksel.ClientRegistered"
        assert msg.headers["ce-id"] == event_id
        assert_identifiers_only(msg.headers, msg.data)

    # JetStream: its durable pull consumer (filtered on agency.jaksel.>), fetched and acked
    # through the account's service imports
    js = feed.jaksel.nc.jetstream()
    sub = await js.pull_subscribe_bind("agency-jaksel", stream=FEED.name)
    msgs = await sub.fetch(10, timeout=5)
    while len(msgs) < len(jaksel_ids):
        msgs += await sub.fetch(10, timeout=5)
    assert [m.headers["ce-id"] for m in msgs] == jaksel_ids
    for msg in msgs:
        assert msg.subject == "agency.jaksel.ClientRegistered"
        assert_identifiers_only(msg.headers, msg.data)
        await msg.ack_sync()  # the ack crosses the import and is confirmed
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=0.5)  # nothing of bandung's, nothing more of jaksel's

    state = await consumer_state(feed, "agency-jaksel")
    assert state.num_ack_pending == 0 and state.num_pending == 0
    assert state.ack_floor.consumer_seq == len(jaksel_ids)
    assert feed.jaksel.errors == []  # reading its own feed needed nothing refused


async def test_another_office_agency_is_refused_the_feed(feed):
    bandung = feed.bandung
    # a live subscription to jaksel's subjects
    spy = await bandung.subscribe("agency.jaksel.>")
    await bandung.violation("subscription", "agency.jaksel.>")
    everything = await bandung.subscribe("agency.>")
    await bandung.violation("subscription", "agency.>")
    await publish_redacted(feed.services, "jaksel")
    for sub in (spy, everything):
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=REFUSED_WAIT)

    # a JetStream consumer filtered on jaksel's subjects, or on everything
    js = bandung.nc.jetstream(timeout=REFUSED_WAIT)
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(FEED.name, ConsumerConfig(name="spy",
                                                        filter_subject="agency.jaksel.>"))
    await bandung.violation("publish", f"$JS.API.CONSUMER.CREATE.{FEED.name}.spy.agency.jaksel.>")
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(FEED.name, ConsumerConfig(name="all"))
    await bandung.violation("publish", f"$JS.API.CONSUMER.CREATE.{FEED.name}.all")
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(FEED.name, ConsumerConfig(durable_name="legacy"))
    await bandung.violation("publish", f"$JS.API.CONSUMER.DURABLE.CREATE.{FEED.name}.legacy")

    # fetching from jaksel's consumer, or looking at the stream
    stolen = await js.pull_subscribe_bind("agency-jaksel", stream=FEED.name)
    with pytest.raises(nats.errors.TimeoutError):
        await stolen.fetch(1, timeout=REFUSED_WAIT)
    await bandung.violation("publish", f"$JS.API.CONSUMER.MSG.NEXT.{FEED.name}.agency-jaksel")
    with pytest.raises(nats.errors.TimeoutError):
        await js.stream_info(FEED.name)
    await bandung.violation("publish", f"$JS.API.STREAM.INFO.{FEED.name}")

    # publishing a feed event, or an event
    await bandung.nc.publish("agency.jaksel.ClientRegistered", b"{}")
    await bandung.violation("publish", "agency.jaksel.ClientRegistered")
    await bandung.nc.publish("agency.bandung.ClientRegistered", b"{}")
    await bandung.violation("publish", "agency.bandung.ClientRegistered")
    await bandung.nc.publish("bapas.jaksel.registration.x", b"{}")
    await bandung.violation("publish", "bapas.jaksel.registration.x")

    # nothing was created, nothing was delivered, nothing was written
    services = feed.services.nc.jetstream()
    consumers = await services.consumers_info(FEED.name)
    assert sorted(c.name for c in consumers) == ["agency-bandung", "agency-jaksel"]
    jaksel = await consumer_state(feed, "agency-jaksel")
    assert jaksel.delivered.consumer_seq == 0 and jaksel.num_pending == 1
    assert (await services.stream_info(FEED.name)).state.messages == 1
    assert (await services.stream_info("REGISTRATION")).state.messages == 0


async def test_an_agency_cannot_read_another_office_either_way(feed):
    jaksel = feed.jaksel
    await publish_redacted(feed.services, "bandung")
    spy = await jaksel.subscribe("agency.bandung.>")
    await jaksel.violation("subscription", "agency.bandung.>")
    js = jaksel.nc.jetstream(timeout=REFUSED_WAIT)
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(FEED.name, ConsumerConfig(name="spy",
                                                        filter_subject="agency.bandung.>"))
    await jaksel.violation("publish", f"$JS.API.CONSUMER.CREATE.{FEED.name}.spy.agency.bandung.>")
    stolen = await js.pull_subscribe_bind("agency-bandung", stream=FEED.name)
    with pytest.raises(nats.errors.TimeoutError):
        await stolen.fetch(1, timeout=REFUSED_WAIT)
    await jaksel.violation("publish", f"$JS.API.CONSUMER.MSG.NEXT.{FEED.name}.agency-bandung")
    with pytest.raises(nats.errors.TimeoutError):
        await spy.next_msg(timeout=REFUSED_WAIT)
    bandung = await consumer_state(feed, "agency-bandung")
    assert bandung.delivered.consumer_seq == 0 and bandung.num_pending == 1


async def test_an_agency_cannot_make_the_server_write_into_the_bapas_account(feed):
    """Inside one account a reply subject is the requester's choice and the server publishes
    its answer there: an agency with JetStream rights in BAPAS could have feed messages or
    API answers stored in REGISTRATION (seen on nats-server 2.15.1). Through the imports the
    reply subject belongs to the agency's own account."""
    jaksel = feed.jaksel
    event_id = await publish_redacted(feed.services, "jaksel")
    live = await jaksel.subscribe("agency.jaksel.>")
    next_one = f"$JS.API.CONSUMER.MSG.NEXT.{FEED.name}.agency-jaksel"
    request = json.dumps({"batch": 1, "expires": 2_000_000_000}).encode()
    # a reply on a feed subject: delivered there, but in the agency's account (where it
    # listens), not into AGENCY_FEED
    await jaksel.nc.publish(next_one, request, reply="agency.jaksel.Injected")
    msg = await live.next_msg(timeout=5)
    assert msg.reply.startswith(f"$JS.ACK.{FEED.name}.agency-jaksel.")  # from the consumer
    assert msg.headers["ce-id"] == event_id
    # a reply on an event subject: nobody can listen there in the agency's account
    await publish_redacted(feed.services, "jaksel")
    await jaksel.nc.publish(next_one, request, reply="bapas.jaksel.registration.injected")
    await jaksel.nc.flush()
    await asyncio.sleep(REFUSED_WAIT)
    js = feed.services.nc.jetstream()
    assert (await js.stream_info(FEED.name)).state.messages == 2
    assert (await js.stream_info("REGISTRATION")).state.messages == 0
    assert jaksel.errors == []  # all of it was allowed: the account is the boundary


async def test_the_shipped_accounts_config_holds_the_durability_profile(tmp_path):
    with accounts_server(tmp_path) as server:
        config = await check_server_profile(server.monitor_url, timeout=2)
    assert config["sync_always"] is True
    assert config["store_dir"].startswith(str(tmp_path / "js"))


# ------------------------------------------------------------- the reactor, in the services


async def test_the_agency_feed_carries_a_registration_without_personal_data(settings, streams):
    async with running(notification.definition, settings) as notif, \
            running(registration.definition, settings) as reg:
        r = await reg.http.post("/v1/clients", json=body(),
                                headers=reg.token("jaksel", "pk"))
        assert r.status_code == 201, r.text
        client_id = r.json()["client_id"]
        store = EventStore(reg.kernel.nc, reg.kernel.topology, reg.kernel.catalog, keys=reg.kernel.keys)
        [registered] = (await store.load("registration", CaseRef("jaksel", client_id))).events
        assert registered.type == "ClientRegistered"

        topology = notif.kernel.topology
        subject = topology.feed_subject("jaksel", "ClientRegistered")
        js = notif.kernel.nc.jetstream()

        async def last_on_subject():
            try:
                return await js.get_last_msg(topology.stream("agency_feed"), subject)
            except NotFoundError:
                return None

        msg = await eventually(last_on_subject, until=lambda m: m is not None, timeout=20)

    assert msg.subject == subject
    assert msg.headers["ce-id"] == registered.id
    assert msg.headers["ce-subject"] == client_id
    assert msg.headers["Nats-Msg-Id"] == registered.id
    assert_identifiers_only(msg.headers, msg.data)
    fields = json.loads(msg.data)
    assert fields["client_id"] == client_id and fields["office"] == "jaksel"
    assert fields["register_number"] == r.json()["register_number"]
    raw = msg.data.decode()
    sent = body()
    for value in (sent["person"]["address"], sent["person"]["phone"],
                  sent["family_contact"]["phone"]):
        assert value not in raw
