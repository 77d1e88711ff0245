"""Projections and reactions on real NATS and PostgreSQL: exactly-once effect, poison
events, versions, and a projector killed mid-batch."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from typing import NamedTuple

import asyncpg
import pytest
from faststream.nats import NatsBroker
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.db import ensure_kernel_tables
from shared.decider import CommandRunner, Decider
from shared.events import EventCatalog, Metadata
from shared.ids import derived_id, new_id
from shared.projector import ProjectionRunner, Reactor, parked_cases, release_parked
from shared.runtime import subscriber_broker
from shared.store import EventStore
from shared.streams import CaseRef
from tests.support import ledger
from tests.support.ledger import LEDGER, AccountOpened, Balances, Credited
from tests.support.wait import eventually

INTAKES = ("kernel", "faststream")
META = Metadata(actor="pk-0007", correlation_id="corr-1")


class Kit(NamedTuple):
    store: EventStore
    runner: CommandRunner
    schema: str
    intake: str
    broker: NatsBroker | None  # FastStream's, when the intake under test is FastStream


@pytest.fixture(params=INTAKES)
async def kit(request, nc, pool, topology, streams, servers):
    """Every test here runs twice: batches taken by the kernel's own puller, and by
    FastStream's batch subscriber (as reactors and notification consumers run)."""
    store = EventStore(nc, topology, EventCatalog(LEDGER))
    runner = CommandRunner(store, "ledger", Decider(ledger.Account(), ledger.decide,
                                                    ledger.evolve))
    schema = topology.schema("ledgerview")
    async with pool.acquire() as conn:
        await ensure_kernel_tables(conn, schema)
    if request.param == "kernel":
        yield Kit(store, runner, schema, "kernel", None)
        return
    broker = subscriber_broker(servers.nats_url, "test-subscribers")
    await broker.start()
    try:
        yield Kit(store, runner, schema, "faststream", broker)
    finally:
        await broker.stop()


def projector(kit_: Kit, nc, pool, topology, target=None, **kw) -> ProjectionRunner:
    kw.setdefault("retry_delays", (0.1, 0.2))
    kw.setdefault("fetch_wait", 0.2)
    runner = ProjectionRunner(target or Balances(), nc=nc, pool=pool, topology=topology,
                              schema=kit_.schema, catalog=EventCatalog(LEDGER),
                              broker=kit_.broker, **kw)
    assert runner.status.intake == kit_.intake
    return runner


@contextlib.asynccontextmanager
async def running(*runners: ProjectionRunner):
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def fold_all(store: EventStore, refs: list[CaseRef]) -> dict[str, tuple[int, int]]:
    """(balance, events) per case straight from the stream: what the projection must equal."""
    out = {}
    for ref in refs:
        loaded = await store.load("ledger", ref)
        state = Decider(ledger.Account(), ledger.decide, ledger.evolve).fold(
            [e.data for e in loaded.events])
        out[ref.client_id] = (state.balance, len(loaded.events))
    return out


async def projected(pool, schema: str) -> dict[str, tuple[int, int]]:
    async with pool.acquire() as conn:
        try:
            rows = await conn.fetch(f'SELECT client_id, balance, events FROM "{schema}".balances')
        except asyncpg.UndefinedTableError:  # the runner has not created its views yet
            return {}
    return {r["client_id"]: (r["balance"], r["events"]) for r in rows}


async def fill(runner: CommandRunner, n_cases: int, credits: int) -> list[CaseRef]:
    refs = [CaseRef("jaksel", new_id()) for _ in range(n_cases)]

    async def one(ref: CaseRef) -> None:
        await runner.run(ref, ledger.Open(ref.client_id[:8]), META)
        for i in range(credits):
            await runner.run(ref, ledger.Credit(i + 1), META)

    await asyncio.gather(*(one(r) for r in refs))
    return refs


async def test_a_projection_equals_a_fold_of_the_stream_and_survives_restarts(
        kit, nc, pool, topology):
    store, runner, schema, *_ = kit
    refs = await fill(runner, 12, 4)
    p = projector(kit, nc, pool, topology, batch_size=7)  # several batches
    async with running(p):
        await eventually(lambda: projected(pool, schema), equals=await fold_all(store, refs))
    more = await fill(runner, 3, 2)
    await runner.run(refs[0], ledger.Debit(3), META)
    # a new process (fresh runner) continues from the checkpoint: nothing twice
    async with running(projector(kit, nc, pool, topology, batch_size=5)):
        await eventually(lambda: projected(pool, schema),
                         equals=await fold_all(store, refs + more))


async def test_a_poison_event_parks_only_its_case_and_others_flow_on(kit, nc, pool, topology):
    store, runner, schema, *_ = kit
    good, bad = await fill(runner, 2, 1)
    await runner.run(bad, ledger.Credit(99, "poison"), META)
    await runner.run(bad, ledger.Credit(5), META)   # after the poison: must wait, in order
    await runner.run(good, ledger.Credit(7), META)
    p = projector(kit, nc, pool, topology)
    async with running(p):
        rows = await eventually(lambda: projected(pool, schema),
                                until=lambda r: r.get(good.client_id) == (8, 3))
        # the bad case holds at its last good event; none of its later events applied
        assert rows[bad.client_id] == (1, 2)
        async with pool.acquire() as conn:
            held = await eventually(lambda: parked_cases(conn, schema),
                                    until=lambda h: h and h[0]["status"] == "parked")
        assert [h["subject"] for h in held] == [topology.subject("ledger", bad)]
        assert "cannot be projected" in held[0]["error"] and held[0]["attempts"] == 3
        assert p.status.held_cases == 1
        # later events of other cases keep flowing while the case is parked
        await runner.run(good, ledger.Credit(2), META)
        await eventually(lambda: projected(pool, schema),
                         until=lambda r: r.get(good.client_id) == (10, 4))


async def test_a_released_case_applies_its_held_events_in_order(kit, nc, pool, topology):
    store, runner, schema, *_ = kit
    (bad,) = await fill(runner, 1, 0)
    await runner.run(bad, ledger.Credit(99, "poison"), META)
    await runner.run(bad, ledger.Credit(5), META)
    fix = {"on": False}
    original = Balances.credited

    async def credited(self, w, e):  # the "deployed fix": the poison credit now projects
        if e.data.note == "poison" and fix["on"]:
            w.execute("UPDATE {balances} SET balance = balance + $2, events = events + 1 "
                      "WHERE client_id = $1", e.client_id, e.data.amount)
            return
        await original(self, w, e)

    class Fixed(Balances):
        def handlers(self):
            return {**super().handlers(), Credited: lambda w, e: credited(self, w, e)}

    p = projector(kit, nc, pool, topology, target=Fixed())
    async with running(p):
        async with pool.acquire() as conn:
            await eventually(lambda: parked_cases(conn, schema),
                             until=lambda h: h and h[0]["status"] == "parked")
            fix["on"] = True
            assert await release_parked(conn, schema, "balances", topology.subject("ledger", bad))
        await eventually(lambda: projected(pool, schema), equals={bad.client_id: (104, 3)})
        async with pool.acquire() as conn:
            assert await parked_cases(conn, schema) == []


class WelcomeBonus(Reactor):
    """Credits 50 to every new account, through the decider, with derived event ids."""

    name = "welcome_bonus"
    contexts = ("ledger",)

    def __init__(self, runner: CommandRunner) -> None:
        self.runner = runner
        self.calls = 0

    def handlers(self):
        return {AccountOpened: self.opened}

    async def opened(self, e) -> None:
        self.calls += 1
        await self.runner.run(CaseRef(e.office, e.client_id), ledger.Credit(50, "bonus"),
                              Metadata("system:welcome_bonus", e.correlation_id or "", e.id),
                              event_id=lambda i: derived_id(e.id, self.name, i))


async def test_a_reaction_appends_once_even_when_replayed_from_the_start(
        kit, nc, pool, topology):
    store, runner, schema, *_ = kit
    refs = await fill(runner, 5, 0)
    reactor = WelcomeBonus(runner)
    r = projector(kit, nc, pool, topology, target=reactor)
    async with running(r):
        await eventually(lambda: fold_all(store, refs),
                         equals={ref.client_id: (50, 2) for ref in refs})
    # forget the checkpoint and the consumer: every reaction runs again, nothing is appended
    async with pool.acquire() as conn:
        await conn.execute(f'UPDATE "{schema}".projection_checkpoints SET position = 0')
    reactor.calls = 0
    async with running(projector(kit, nc, pool, topology, target=reactor)):
        await eventually(lambda: reactor.calls, equals=5)
    await asyncio.sleep(0.3)
    assert await fold_all(store, refs) == {ref.client_id: (50, 2) for ref in refs}


async def test_a_new_projection_version_rebuilds_then_switches(kit, nc, pool, topology):
    store, runner, schema, *_ = kit
    refs = await fill(runner, 4, 2)
    async with running(projector(kit, nc, pool, topology)):
        await eventually(lambda: projected(pool, schema), equals=await fold_all(store, refs))

    class BalancesV2(Balances):
        version = 2
        tables = {"balances": Balances.tables["balances"].replace(
            "last_seq bigint", "doubled bigint NOT NULL DEFAULT 0, last_seq bigint")}

        async def credited(self, w, e):
            await super().credited(w, e)
            w.execute("UPDATE {balances} SET doubled = balance * 2 WHERE client_id = $1",
                      e.client_id)

    v2 = projector(kit, nc, pool, topology, target=BalancesV2())
    async with running(v2):
        async with pool.acquire() as conn:
            await eventually(lambda: conn.fetchval(
                f'SELECT active_tag FROM "{schema}".projection_versions'), equals="v2_2")
            rows = await conn.fetch(f'SELECT client_id, balance, doubled FROM "{schema}".balances')
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE "
                "'balances%'", schema)
    assert {r["client_id"]: r["balance"] for r in rows} == {
        k: v[0] for k, v in (await fold_all(store, refs)).items()}
    assert all(r["doubled"] == 2 * r["balance"] for r in rows)
    assert [t["tablename"] for t in tables] == ["balances__v2_2"]  # the old build is dropped


async def test_a_projector_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
        kit, nc, pool, topology, servers):
    store, runner, schema, *_ = kit
    refs = await fill(runner, 30, 9)  # 300 events
    env = dict(os.environ, NS=topology.namespace, NATS_URL=servers.nats_url, DSN=servers.dsn,
               SCHEMA=schema, INTAKE=kit.intake)
    cmd = [sys.executable, "-m", "tests.support.projector_proc"]

    async def checkpoint() -> int:
        async with pool.acquire() as conn:
            return await conn.fetchval(
                f'SELECT coalesce(max(position), 0) FROM "{schema}".projection_checkpoints') or 0

    proc = subprocess.Popen(cmd, env=env)
    try:
        # the child applies slowly (10 events a batch, a pause per event): kill it mid-way
        await eventually(checkpoint, until=lambda p: p >= 60, timeout=60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = await checkpoint()
        last = (await store.load("ledger", refs[-1])).version.stream_seq
        assert killed_at < 300
        proc = subprocess.Popen(cmd, env=env)
        await eventually(checkpoint, until=lambda p: p >= 300, timeout=120)
        assert last <= 300
    finally:
        proc.kill()
        proc.wait(10)
    assert await projected(pool, schema) == await fold_all(store, refs)


async def test_runners_of_two_replicas_share_one_leader(kit, nc, pool, topology):
    store, runner, schema, *_ = kit
    refs = await fill(runner, 6, 3)
    a, b = (projector(kit, nc, pool, topology, standby_poll=0.2) for _ in range(2))
    async with running(a, b):
        await eventually(lambda: projected(pool, schema), equals=await fold_all(store, refs))
        assert sorted([a.status.role, b.status.role]) == ["leader", "standby"]


async def test_unhandled_event_types_only_move_the_checkpoint(kit, nc, pool, topology):
    store, runner, schema, *_ = kit

    class OpenedOnly(Balances):
        def handlers(self):
            return {AccountOpened: self.opened}

    refs = await fill(runner, 3, 2)
    async with running(projector(kit, nc, pool, topology, target=OpenedOnly())):
        await eventually(lambda: projected(pool, schema),
                         equals={r.client_id: (0, 1) for r in refs})



@pytest.mark.parametrize("durably", [False, True])
async def test_a_batch_commits_durably_only_where_the_projection_asks(
        kit, nc, pool, topology, durably):
    """A read model's batch does not wait for its WAL flush: after a crash of PostgreSQL
    it is applied again from the checkpoint. One that something sends from at once waits."""
    store, runner, schema, *_ = kit
    seen: list[str] = []

    class Watched(Balances):
        commit_durably = durably

        async def opened(self, w, e) -> None:
            seen.append(await w.fetchval("SELECT current_setting('synchronous_commit')"))
            await super().opened(w, e)

    refs = await fill(runner, 3, 1)
    async with running(projector(kit, nc, pool, topology, target=Watched())):
        await eventually(lambda: projected(pool, schema), equals=await fold_all(store, refs))
    assert set(seen) == {"on" if durably else "off"}
    async with pool.acquire() as conn:  # the setting was the transaction's, not the pool's
        assert await conn.fetchval("SHOW synchronous_commit") == "on"


async def test_one_ack_per_batch_and_an_older_explicit_ack_consumer_is_replaced(
        kit, nc, pool, topology):
    """The consumer acks all up to a sequence, so one ack settles a batch. A consumer left
    by a version that acked each message is recreated at the checkpoint, nothing lost."""
    store, runner, schema, *_ = kit
    js, stream = nc.jetstream(), topology.stream("ledger")

    async def consumer() -> tuple[AckPolicy, int, int]:
        [info] = await js.consumers_info(stream)
        return info.config.ack_policy, info.num_ack_pending, info.num_pending

    refs = await fill(runner, 8, 3)
    async with running(projector(kit, nc, pool, topology, batch_size=5)):
        await eventually(lambda: projected(pool, schema), equals=await fold_all(store, refs))
        await eventually(consumer, equals=(AckPolicy.ALL, 0, 0))

    [info] = await js.consumers_info(stream)
    await js.delete_consumer(stream, info.name)
    await js.add_consumer(stream, ConsumerConfig(
        durable_name=info.name, filter_subject=info.config.filter_subject,
        ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=info.delivered.stream_seq + 1))
    more = await fill(runner, 4, 2)
    async with running(projector(kit, nc, pool, topology, batch_size=5)):
        await eventually(lambda: projected(pool, schema),
                         equals=await fold_all(store, refs + more))
        await eventually(consumer, equals=(AckPolicy.ALL, 0, 0))


async def test_a_writer_sends_unordered_writes_together_and_before_any_read(pool, namespace):
    from shared.projector import Writer

    names = {"seen": f'"wr_{namespace}_seen"', "log": f'"wr_{namespace}_log"'}
    async with pool.acquire() as conn:
        for t in names.values():
            await conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v int)")
        try:
            async with conn.transaction():
                w = Writer(conn, names, False, {})
                for i in range(5):  # ordered: the second write of a row comes after the first
                    w.execute("INSERT INTO {seen} (id, v) VALUES ($1, 0)", i)
                    w.execute_unordered("INSERT INTO {log} (id, v) VALUES ($1, $2)", i, i * 10)
                    w.execute("UPDATE {seen} SET v = v + 1 WHERE id = $1", i)
                # a read sends what is buffered first, the unordered rows included
                assert await w.fetchval("SELECT count(*) FROM {log}") == 5
                w.execute_unordered("INSERT INTO {log} (id, v) VALUES ($1, $2)", 9, 90)
                await w.flush()
            assert await conn.fetchval(f"SELECT sum(v) FROM {names['seen']}") == 5
            assert await conn.fetchval(f"SELECT sum(v) FROM {names['log']}") == 190
        finally:
            for t in names.values():
                await conn.execute(f"DROP TABLE {t}")
