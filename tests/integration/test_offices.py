"""Offices on nats-servers of their own (issue 13, DESIGN §8): a hub (JetStream domain `hub`)
and two office leaves, jaksel and bandung, each with its own JetStream domain and services.
The jaksel leaf reaches the hub through a TCP proxy the test cuts; bandung's link stays up.

What the hub holds is read back by an independent reader (ordered consumers, the hash chain
computed anew), never through the services' own code paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import nats
import pytest

from services.audit.app import definition as audit
from services.guidance.app import definition as guidance
from services.notification.app import definition as notification
from services.registration.app import definition as registration
from services.supervision.app import definition as supervision
from shared.local.faults import StoredEvent, broken_chains, read_streams, registration_body
from shared.local.servers import NatsCluster, NatsHub, NatsLeaf
from shared.offices import OfficeLink, office_links
from shared.privacy import KEY_CACHE_SECONDS
from shared.office_time import office_date
from shared.settings import Settings
from shared.streams import Topology
from tests.conftest import TEST_SECRET
from tests.support.proxy import LinkProxy
from tests.support.service import Running, running
from tests.support.wait import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CASE_STREAMS = ("REGISTRATION", "GUIDANCE", "SUPERVISION")


@dataclass
class Office:
    leaf: NatsLeaf
    settings: Settings
    services: dict[str, Running] = field(default_factory=dict)


@dataclass
class World:
    topology: Topology
    hub: NatsHub
    proxy: LinkProxy  # jaksel's link to the hub
    hub_settings: Settings
    offices: dict[str, Office]
    hub_services: dict[str, Running] = field(default_factory=dict)
    dsns: dict[str, str] = field(default_factory=dict)  # each place's own database

    def stream(self, name: str) -> str:
        return f"{self.topology.namespace.upper()}_{name}"

    def headers(self, office: str, *roles: str, sub: str = "pk-0007", key: str | None = None
                ) -> dict[str, str]:
        svc = next(iter(self.hub_services.values()))
        jwt = svc.kernel.tokens.issue(sub, office, list(roles or ("pk", "supervisor", "head")))
        return {"Authorization": f"Bearer {jwt}", **({"Idempotency-Key": key} if key else {})}


async def _database(admin: asyncpg.Connection, name: str, dsn: str) -> str:
    await admin.execute(f'CREATE DATABASE "{name}"')
    return dsn.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
async def world(tmp_path, servers, namespace):
    topology = Topology(namespace)
    hub = NatsHub(tmp_path / "nats" / "hub").start()
    proxy = LinkProxy("127.0.0.1", hub.leaf_port).start()
    admin = await asyncpg.connect(servers.dsn)
    leaves, made = {}, []
    stack = contextlib.AsyncExitStack()
    try:
        for office in ("jaksel", "bandung"):
            via = proxy.port if office == "jaksel" else hub.leaf_port
            leaves[office] = NatsLeaf(
                tmp_path / "nats" / office, office=office, event_subjects=f"{topology.root}.>",
                hub_url=f"nats-leaf://leaf:{hub.leaf_password}@127.0.0.1:{via}").start()
        dsns = {}
        for name in ("hub", "jaksel", "bandung"):
            made.append(f"{namespace}_{name}")
            dsns[name] = await _database(admin, made[-1], servers.dsn)
        common = dict(env="development", namespace=namespace, jwt_secret=TEST_SECRET,
                      projection_retry_delays=(0.2, 0.4), privacy_retention_days=0)
        hub_settings = Settings(nats_url=hub.url, nats_monitor_url=hub.monitor_url,
                                database_url=dsns["hub"], leaf_offices="jaksel,bandung",
                                **common)
        offices = {o: Office(leaf, Settings(nats_url=leaf.url, nats_monitor_url=leaf.monitor_url,
                                            database_url=dsns[o], office=o, **common))
                   for o, leaf in leaves.items()}
        w = World(topology, hub, proxy, hub_settings, offices)
        for o, defs in (("jaksel", (registration, guidance, supervision)),
                        ("bandung", (registration, guidance))):
            for d in defs:
                w.offices[o].services[d.name] = await stack.enter_async_context(
                    running(d, w.offices[o].settings))
        for d in (audit, notification):
            w.hub_services[d.name] = await stack.enter_async_context(running(d, hub_settings))
        await eventually(lambda: all(leaf.link_up() for leaf in leaves.values()), timeout=20)
        w.dsns = dsns
        yield w
    finally:
        await stack.aclose()
        for leaf in leaves.values():
            leaf.stop()
        proxy.stop()
        hub.stop()
        for name in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def read(url: str, streams: tuple[str, ...], subjects: str) -> list[StoredEvent]:
    """Every message on `subjects` of each stream, in stream order (an ordered consumer)."""
    return await read_streams(url, streams, subjects)


async def office_events(w: World, office: str, where: str) -> list[StoredEvent]:
    """The office's case events as its leaf holds them (`where="leaf"`) or the hub."""
    url = w.offices[office].leaf.url if where == "leaf" else w.hub.url
    return await read(url, tuple(w.stream(s) for s in CASE_STREAMS),
                      f"{w.topology.root}.{office}.*.*")


def ids(events: list[StoredEvent]) -> list[tuple[str, str]]:
    return [(e.stream, e.headers["ce-id"]) for e in events]


async def link(w: World, office: str, *, direct: bool = False) -> OfficeLink:
    """The office's link as the hub sees it; `direct`: with the leaf read through a
    connection of its own, as `bapas status` does (it knows what waits during a cut)."""
    nc = await nats.connect(w.hub.url, connect_timeout=5)
    own = {office: await nats.connect(w.offices[office].leaf.url)} if direct else {}
    try:
        links = await office_links(nc, w.hub_settings.topology, leaves=own)
        return next(link for link in links if link.office == office)
    finally:
        for conn in own.values():
            await conn.close()
        await nc.close()


async def expect_hub_holds(w: World, office: str, timeout: float) -> float:
    """Wait until the hub has received everything the office's leaf holds; then check that
    it holds every event of the leaf exactly once, in the leaf's order (per stream), with
    intact chains. Returns the seconds until nothing was left to receive."""
    began = time.monotonic()
    await eventually(lambda: link(w, office), until=lambda l: l.waiting == 0, timeout=timeout)
    took = time.monotonic() - began

    async def both() -> tuple[list, list]:
        return (ids(await office_events(w, office, "hub")),
                ids(await office_events(w, office, "leaf")))

    try:  # the leaf's own reactors may still add a few events
        await eventually(both, until=lambda pair: pair[0] == pair[1], timeout=30, every=0.5)
    except AssertionError:
        at_hub, at_leaf = await both()
        raise AssertionError(f"the hub holds {len(at_hub)} of the {len(at_leaf)} events of "
                             f"{office}'s leaf (in order: {at_hub == at_leaf[:len(at_hub)]})"
                             ) from None
    at_hub = await office_events(w, office, "hub")
    assert len({e.headers["ce-id"] for e in at_hub}) == len(at_hub)  # none twice
    assert broken_chains(at_hub) == []
    return took


# ---------------------------------------------------------------------------- the office day

async def register(svc: Running, headers: dict[str, str], n: int, label: str) -> str:
    r = await svc.http.post("/v1/clients", json=registration_body(n, label), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["client_id"]


async def register_retrying(svc: Running, headers: dict[str, str], n: int, label: str) -> str:
    """As a careful client does: a 503 (the service reconnecting) is retried with the same
    Idempotency-Key until it is answered."""
    r = await eventually(lambda: svc.http.post("/v1/clients", json=registration_body(n, label),
                                               headers=headers),
                         until=lambda r: r.status_code != 503, timeout=30, every=0.25)
    assert r.status_code == 201, r.text
    return r.json()["client_id"]


async def ready_to_advance(w: World, office: str, cid: str, key: str) -> str:
    """Litmas, program and an approved TPP decision; returns the decision id."""
    g = w.offices[office].services["guidance"]
    pk = w.headers(office)
    await eventually(lambda: g.http.get(f"/v1/cases/{cid}", headers=pk),
                     until=lambda r: r.status_code == 200)
    for path, body in (
            ("litmas", {"purpose": "REINTEGRASI", "risk_level": "SEDANG", "needs": ["pekerjaan"],
                        "recommendation": "bimbingan kemandirian", "summary": "kooperatif"}),
            ("programs", {"stage": "AWAL", "activities": [
                {"kind": "KEMANDIRIAN", "approach": "INDIVIDU", "frequency": "MONTHLY",
                 "description": "pelatihan las"}]})):
        r = await g.http.post(f"/v1/cases/{cid}/{path}", json=body,
                              headers=w.headers(office, key=f"{key}-{path}"))
        assert r.status_code in (200, 201), r.text
    r = await g.http.post(f"/v1/cases/{cid}/tpp-decisions", json={
        "subject": "STAGE", "outcome": "APPROVED",
        "met_on": office_date(datetime.now(UTC)).isoformat(), "members": ["Kasi BK", "PK Madya"]},
        headers=w.headers(office, "tpp", sub="tpp-ketua", key=f"{key}-tpp"))
    assert r.status_code in (200, 201), r.text
    return r.json()["decision_id"]


async def office_day(w: World, office: str, start: int, clients: int) -> list[str]:
    """Registrations, a report each and a stage advance each, all answered 2xx."""
    reg = w.offices[office].services["registration"]
    sup = w.offices[office].services["supervision"]
    g = w.offices[office].services["guidance"]
    pk = w.headers(office)
    cids = [await register(reg, pk, start + i, "Putus") for i in range(clients)]
    for i, cid in enumerate(cids):
        await eventually(lambda cid=cid: sup.http.get(f"/v1/supervision/{cid}", headers=pk),
                         until=lambda r: r.status_code == 200)
        r = await sup.http.post(f"/v1/supervision/{cid}/visits", json={
            "kind": "LAPOR_DIRI", "occurred_at": (datetime.now(UTC) - timedelta(minutes=1))
            .isoformat(), "outcome": "MET_COMPLIED", "notes": f"lapor {start + i}"}, headers=pk)
        assert r.status_code in (200, 201), r.text
        decision = await ready_to_advance(w, office, cid, f"adv-{start + i}")
        r = await g.http.post(f"/v1/cases/{cid}/stage", json={
            "to_stage": "LANJUTAN", "tpp_decision_id": decision}, headers=pk)
        assert r.status_code in (200, 201), r.text
    return cids


# ------------------------------------------------------------------------------------ tests

async def test_a_cut_office_keeps_working_and_the_hub_catches_up_once(world: World):
    w = world
    jaksel, bandung = w.offices["jaksel"], w.offices["bandung"]
    w.proxy.cut()
    await eventually(lambda: not jaksel.leaf.link_up(), timeout=10)
    cut_at = time.monotonic()
    # jaksel works on its own; bandung, whose link stands, too
    cids = await office_day(w, "jaksel", 100, 12)
    head = w.headers("jaksel", key="transfer-1")
    moved = await jaksel.services["registration"].http.post(
        f"/v1/clients/{cids[0]}/transfer", headers=head,
        json={"to_office": "bandung", "tpp_decision_id": "tpp-9", "approved_by": "pk-0007"})
    assert moved.status_code == 200, moved.text
    new_id = moved.json()["new_client_id"]
    b = await register(bandung.services["registration"], w.headers("bandung"), 900, "Bandung")
    await eventually(lambda: w.hub_services["audit"].http.get(
        f"/v1/audit/clients/{b}/history", headers=w.headers("bandung", "auditor")),
        until=lambda r: r.status_code == 200)
    n = 100 + len(cids)
    while time.monotonic() - cut_at < 60:  # the rest of the minute: registrations
        await register(jaksel.services["registration"], w.headers("jaksel"), n, "Putus")
        n += 1
        await asyncio.sleep(0.05)
    at_leaf = await office_events(w, "jaksel", "leaf")
    assert len(at_leaf) >= 1000, len(at_leaf)
    hub_before = await office_events(w, "jaksel", "hub")
    assert len(hub_before) < len(at_leaf)  # the cut held: the hub has not seen them
    during = await link(w, "jaksel", direct=True)  # as `bapas status` shows the cut
    assert not during.reachable and during.waiting >= len(at_leaf) - len(hub_before)
    assert (await link(w, "jaksel")).waiting is None  # through the hub alone: unknown
    w.proxy.restore()
    took = await expect_hub_holds(w, "jaksel", timeout=10)
    print(f"hub caught up with {len(at_leaf)} jaksel events in {took:.1f}s")
    # the national readers at the hub show them
    auditor = w.headers("jaksel", "auditor", sub="auditor-01")
    r = await eventually(lambda: w.hub_services["audit"].http.get(
        f"/v1/audit/clients/{cids[-1]}/history", headers=auditor),
        until=lambda r: r.status_code == 200)
    types = [e["type"].split(".")[1] for e in r.json()["events"]]  # bapas.<Type>.v<N>
    assert types.count("ClientRegistered") == 1 and "StageAdvanced" in types, types
    registered = {e.headers["ce-id"] for e in at_leaf if e.type == "ClientRegistered"}
    feed = f"{w.topology.feed_root}.jaksel.ClientRegistered"

    async def fed() -> list[str]:
        msgs = await read(w.hub.url, (w.stream("AGENCY_FEED"),), feed)
        return [m.headers.get("Nats-Msg-Id") for m in msgs]

    await eventually(lambda: fed(), until=lambda got: registered <= set(got), timeout=30)
    assert sorted(await fed()) == sorted(set(await fed()))
    # the transfer made during the cut arrived at bandung, once
    bdg = w.headers("bandung", "supervisor", sub="kasubsi-bdg")
    arrived = await eventually(lambda: bandung.services["registration"].http.get(
        f"/v1/clients/{new_id}", headers=bdg), until=lambda r: r.status_code == 200, timeout=30)
    assert arrived.json()["transferred_from"] == {"office": "jaksel", "client_id": cids[0]}
    at_bandung = await office_events(w, "bandung", "leaf")
    assert [e.subject.rsplit(".", 1)[1] for e in at_bandung
            if e.type == "ClientRegistered"].count(new_id) == 1
    # the link flaps five times, with work in between: nothing is sourced twice
    for flap in range(5):
        w.proxy.cut()
        await register(jaksel.services["registration"], w.headers("jaksel"), 2000 + flap, "Flap")
        await asyncio.sleep(0.5)
        w.proxy.restore()
        await asyncio.sleep(0.5)
    await expect_hub_holds(w, "jaksel", timeout=30)
    await expect_hub_holds(w, "bandung", timeout=30)


async def test_a_leaf_killed_during_the_cut_loses_nothing(world: World):
    w = world
    jaksel = w.offices["jaksel"]
    reg = jaksel.services["registration"]
    w.proxy.cut()
    before = [await register(reg, w.headers("jaksel"), 300 + i, "Sebelum") for i in range(10)]
    jaksel.leaf.kill()
    jaksel.leaf.start()
    after = [await register_retrying(reg, w.headers("jaksel", key=f"after-{i}"), 400 + i,
                                     "Sesudah") for i in range(10)]
    at_leaf = await office_events(w, "jaksel", "leaf")
    registered = {e.subject.rsplit(".", 1)[1] for e in at_leaf if e.type == "ClientRegistered"}
    assert set(before + after) <= registered
    w.proxy.restore()
    await expect_hub_holds(w, "jaksel", timeout=30)


async def key_rows(w: World, place: str, *client_ids: str) -> dict[str, bytes | None]:
    """The persons' keys (wrapped; None once destroyed) in one place's own database."""
    conn = await asyncpg.connect(w.dsns[place])
    try:
        rows = await conn.fetch(
            f'SELECT subject, wrapped FROM "{w.topology.schema("privacy")}".subject_keys '
            "WHERE subject = ANY($1::text[])", list(client_ids))
    finally:
        await conn.close()
    return {r["subject"]: None if r["wrapped"] is None else bytes(r["wrapped"]) for r in rows}


async def shared_keys(url: str, w: World, *client_ids: str) -> dict[str, list[dict]]:
    """Every message the KEYS stream at `url` holds of these persons, raw."""
    msgs = await read(url, (w.stream("KEYS"),), f"{w.topology.root}.*.keys.*")
    out: dict[str, list[dict]] = {c: [] for c in client_ids}
    for m in msgs:
        subject = m.subject.rsplit(".", 1)[1]
        if subject in out:
            out[subject].append(json.loads(m.body))
    return out


async def test_personal_data_is_sealed_at_every_office_and_an_erasure_reaches_them_all(
        world: World):
    """Issue 16 where offices keep databases of their own: a person's key is made in the
    office's database and shared, wrapped, through the KEYS streams, so the hub's readers
    and the office a client is transferred to open the data; the erasure at the office
    holding the latest case destroys the keys at every office and in every KEYS stream."""
    w = world
    jaksel, bandung = w.offices["jaksel"], w.offices["bandung"]
    label = "Rahasia"
    cid = await register(jaksel.services["registration"], w.headers("jaksel"), 7100, label)
    name = registration_body(7100, label)["person"]["full_name"]
    nik = registration_body(7100, label)["person"]["nik"]
    # sealed in the office's stream and at the hub: no name, no NIK in the stored bytes
    await expect_hub_holds(w, "jaksel", timeout=30)
    for where in ("leaf", "hub"):
        stored = [e for e in await office_events(w, "jaksel", where) if cid in e.subject]
        assert stored and not any(name.encode() in e.body or nik.encode() in e.body
                                  for e in stored), where
    # the hub's audit opens it with the key shared through KEYS
    auditor = w.headers("jaksel", "auditor", sub="auditor-01")
    history = await eventually(lambda: w.hub_services["audit"].http.get(
        f"/v1/audit/clients/{cid}/history", headers=auditor),
        until=lambda r: r.status_code == 200 and name in r.text, timeout=30)
    assert nik in history.text
    # transferred to bandung: its intake reads jaksel's case (and key) through the hub and
    # seals the new case with a key of bandung's own
    moved = await jaksel.services["registration"].http.post(
        f"/v1/clients/{cid}/transfer", headers=w.headers("jaksel", key="transfer-pdp"),
        json={"to_office": "bandung", "tpp_decision_id": "tpp-pdp", "approved_by": "pk-0007"})
    assert moved.status_code == 200, moved.text
    new_id = moved.json()["new_client_id"]
    bdg = w.headers("bandung")
    arrived = await eventually(lambda: bandung.services["registration"].http.get(
        f"/v1/clients/{new_id}", headers=bdg), until=lambda r: r.status_code == 200, timeout=30)
    assert arrived.json()["person"]["full_name"] == name
    assert set(await key_rows(w, "jaksel", cid, new_id)) == {cid}
    assert set(await key_rows(w, "bandung", cid, new_id)) == {new_id}
    assert await key_rows(w, "hub", cid, new_id) == {}  # the hub holds none in its database
    # only the office holding the latest case erases; bandung closes the case first
    g = bandung.services["guidance"]
    await eventually(lambda: g.http.get(f"/v1/cases/{new_id}", headers=bdg),
                     until=lambda r: r.status_code == 200)
    closed = await g.http.post(f"/v1/cases/{new_id}/close", headers=bdg, json={
        "reason": "DECEASED", "closed_on": office_date(datetime.now(UTC)).isoformat()})
    assert closed.status_code == 200, closed.text
    await eventually(lambda: bandung.services["registration"].http.get(
        f"/v1/clients/{new_id}", headers=bdg), until=lambda r: r.json()["status"] == "CLOSED")
    kabapas = w.headers("bandung", "head", sub="kabapas-bdg")
    erased = await bandung.services["registration"].http.post(
        "/v1/privacy/erasures", headers=kabapas,
        json={"client_id": new_id, "legal_basis": "UU 27/2022 Pasal 8"})
    assert erased.status_code == 200, erased.text
    assert sorted(c["office"] for c in erased.json()["erased_cases"]) == ["bandung", "jaksel"]
    # every office's database, every KEYS stream: destroyed, no wrapped key left
    assert await key_rows(w, "bandung", new_id) == {new_id: None}
    await eventually(lambda: key_rows(w, "jaksel", cid), until=lambda k: k == {cid: None},
                     timeout=30)
    urls = {"hub": w.hub.url, **{o: w.offices[o].leaf.url for o in ("jaksel", "bandung")}}
    for place, url in urls.items():
        got = await eventually(lambda url=url: shared_keys(url, w, cid, new_id),
                               until=lambda got: all(
                                   msgs and all(m["wrapped"] is None for m in msgs)
                                   for c, msgs in got.items()
                                   if place == "hub" or c == {"jaksel": cid,
                                                              "bandung": new_id}[place]),
                               timeout=30)
        assert got, place
    # the hub's audit shows the person erased, the history whole
    await eventually(lambda: w.hub_services["audit"].http.get(
        f"/v1/audit/clients/{cid}/history", headers=auditor),
        until=lambda r: r.status_code == 200 and name not in r.text and nik not in r.text,
        timeout=KEY_CACHE_SECONDS + 10)
    assert broken_chains(await office_events(w, "jaksel", "hub")) == []
    assert broken_chains(await office_events(w, "bandung", "hub")) == []


async def test_the_hub_refuses_to_write_an_office_that_has_its_own_leaf(world: World):
    """A case is written only in its home office's stream: the hub's services pass over a
    leaf office's commands with a clear problem, never storing them at the hub."""
    from services.registration.app import definition as reg_def

    async with running(reg_def, world.hub_settings) as hub_registration:
        r = await hub_registration.http.post("/v1/clients", json=registration_body(1, "Salah"),
                                             headers=world.headers("jaksel"))
        assert r.status_code == 421, r.text
        assert r.json()["rule"] == "office_served_elsewhere" and r.json()["field"] == "office"
    at_hub = await read(world.hub.url, (world.stream("REGISTRATION"),),
                        f"{world.topology.root}.jaksel.*.*")
    assert at_hub == []


async def test_a_cluster_hub_takes_an_office_in_and_keeps_it_with_a_node_down(
        tmp_path, servers, namespace):
    """The hub may be the 3-node cluster (deploy/cluster/node.conf, domain hub): its streams
    of three replicas source the office's leaf; with the node the leaf is connected to
    killed, the leaf moves to another node and the hub still takes every event in, once."""
    topology = Topology(namespace)
    admin = await asyncpg.connect(servers.dsn)
    made = [f"{namespace}_hub", f"{namespace}_jaksel"]
    dsns = [await _database(admin, name, servers.dsn) for name in made]
    common = dict(env="development", namespace=namespace, jwt_secret=TEST_SECRET,
                  projection_retry_delays=(0.2, 0.4))
    try:
        with NatsCluster(tmp_path / "hub") as hub, NatsLeaf(
                tmp_path / "jaksel", office="jaksel", hub_url=hub.leaf_url,
                event_subjects=f"{topology.root}.>") as leaf:
            hub_settings = Settings(nats_url=hub.url, nats_monitor_url=hub.monitor_url,
                                    database_url=dsns[0], leaf_offices="jaksel",
                                    stream_replicas=3, **common)
            office = Settings(nats_url=leaf.url, nats_monitor_url=leaf.monitor_url,
                              database_url=dsns[1], office="jaksel", **common)
            async with running(audit, hub_settings) as at_hub, \
                    running(registration, office) as reg:
                pk = {"Authorization": "Bearer " + reg.kernel.tokens.issue(
                    "pk-0007", "jaksel", ["pk"])}
                first = [await register(reg, pk, 500 + i, "Klaster") for i in range(5)]
                hub.nodes[0].kill()  # the node the leaf connected to
                then = [await register(reg, pk, 600 + i, "Klaster") for i in range(5)]
                subjects = f"{topology.root}.jaksel.*.*"
                stream = f"{namespace.upper()}_REGISTRATION"

                async def registered() -> list[str]:
                    try:  # the cluster may still be electing the stream's new leader
                        events = await read(",".join(n.url for n in hub.nodes[1:]),
                                            (stream,), subjects)
                    except (nats.errors.Error, TimeoutError):
                        return []
                    return sorted(e.subject.rsplit(".", 1)[1] for e in events
                                  if e.type == "ClientRegistered")

                got = await eventually(registered, until=lambda ids: len(ids) >= 10,
                                       timeout=90, every=0.5)
                assert got == sorted(first + then)  # each once
                info = await at_hub.kernel.nc.jetstream().stream_info(stream)
                assert info.config.num_replicas == 3
                hub.nodes[0].start()
    finally:
        for name in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_new_office_leaf_is_added_to_the_hubs_existing_streams(nc, topology):
    """Adding an office is naming it in BAPAS_LEAF_OFFICES: the next start adds its source
    to streams that hold events, and rewrites nothing else."""
    from shared.streams import ensure_streams

    js = nc.jetstream()
    one = Topology(topology.namespace, leaves=("jaksel",))
    two = Topology(topology.namespace, leaves=("jaksel", "bandung"))
    try:
        assert await ensure_streams(js, one, contexts=("registration",))
        await js.publish(f"{one.root}.jaktim.registration.c1", b"{}")
        assert await ensure_streams(js, two, contexts=("registration",)) == []
        info = await js.stream_info(two.stream("registration"))
        assert [s.external.api for s in info.config.sources] == ["$JS.jaksel.API",
                                                                  "$JS.bandung.API"]
        assert info.state.messages == 1
    finally:
        await js.delete_stream(one.stream("registration"))
