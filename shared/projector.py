"""Read models and reactions: durable pull consumers with exactly-once effect.

A projection consumes one or more context streams. Each fetched batch is applied in one
PostgreSQL transaction together with the projection's checkpoint (the last stream sequence
applied); the batch is acked only after the commit, with one ack for the whole batch (the
consumer acks all up to a sequence). Events at or below the checkpoint are skipped, so a
crash anywhere loses nothing and applies nothing twice.

The checkpoint in PostgreSQL is the truth; the JetStream consumer is only a cursor. Whenever
a consumer session starts (start-up, leadership, after an error) the cursor is checked
against the checkpoint and recreated at `checkpoint + 1` if it ran ahead, so messages
delivered to a process that died are delivered again at once, in order.

A poison event (one that fails while others succeed) holds its case: the event and the
case's later events are stored in `projection_held_events`, other cases flow on, and the case
is retried with growing delays. After the last retry it is parked: visible in
`projection_parked`, in /readyz and in the metrics, and released by an operator.

Projections carry a version. A new version (or a requested rebuild) builds new tables from
the beginning of the streams while the old ones keep answering, and switches the views over
when the new build has caught up. During such a rebuild handlers see `replaying = True` and
must not cause side effects.

A reactor is the same machinery with no tables: it appends its own context's events in
answer to another context's, with deterministic ids, and its checkpoint moves only after the
appends were acknowledged.

Batches come in one of two ways, with the same guarantees (the consumer is provisioned by
our own code at the checkpoint, applied batches are acked after the commit): reactors and
the notification consumers run as FastStream JetStream pull subscribers in batch mode with
manual acks; read models keep the kernel's own puller, which fetches one batch ahead and
which `bapas bench kernel` measures against FastStream's batch subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import asyncpg
import nats.errors
import nats.js.errors
import structlog
from faststream import AckPolicy as FsAckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage as FsNatsMessage
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from .db import TRANSIENT_DB_ERRORS, quote_ident
from .envelope import parse_ce_type
from .errors import EventDecodeError, KernelError, Unavailable
from .events import SEALED_MARK, Event, EventCatalog, RecordedEvent
from .metrics import KernelMetrics
from .privacy import KeyRing
from .store import decode_message
from .streams import Topology

__all__ = ["ACK_POLICY", "stream_seq", "Projection", "Reactor", "Writer", "ProjectionRunner",
           "ProjectionStatus", "parked_cases", "release_parked", "request_rebuild",
           "withdraw_rebuild"]

log = structlog.get_logger("bapas.projector")

Handler = Callable[..., Awaitable[None]]
TRANSIENT: tuple[type[BaseException], ...] = TRANSIENT_DB_ERRORS + (
    nats.errors.TimeoutError, nats.errors.ConnectionClosedError, nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError, nats.errors.ConnectionReconnectingError,
    nats.js.errors.NoStreamResponseError, nats.js.errors.ServiceUnavailableError, Unavailable,
)
_TAG = re.compile(r"^v(\d+)_(\d+)$")


class Projection:
    """A read model named for the question it answers.

    `tables` maps logical table names to DDL with `{table}` standing for the physical,
    versioned name. Handlers write through a `Writer`, naming tables as `{logical}` in SQL.
    Queries read the view `<schema>.<logical>`, which always points at the active version.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    contexts: ClassVar[tuple[str, ...]]
    tables: ClassVar[dict[str, str]] = {}
    # Read models stay on the kernel's own intake, which `bapas bench kernel` measures
    # faster than FastStream's batch subscriber; a projection with side effects may ask for
    # FastStream like the reactors.
    via_faststream: ClassVar[bool] = False
    # A batch commits without waiting for its WAL flush (`synchronous_commit = off`): a
    # crash of PostgreSQL may undo the last moments of commits, checkpoint included, and
    # the batches after the checkpoint are applied again, as after any fault. True for a
    # projection whose committed rows something outside acts on at once (a dispatcher
    # sending what the commit recorded), which must not see a commit that is then undone.
    commit_durably: ClassVar[bool] = False

    def handlers(self) -> Mapping[type[Event], Handler]:
        """Event type -> `async def handler(writer, event)`."""
        raise NotImplementedError


class Reactor:
    """Acts on another context's events by appending its own (deterministic ids)."""

    name: ClassVar[str]
    contexts: ClassVar[tuple[str, ...]]
    tables: ClassVar[dict[str, str]] = {}  # a reactor owns no tables, only its checkpoint
    via_faststream: ClassVar[bool] = True  # a FastStream subscriber, given a broker
    # On an office's leaf: read the hub's streams (every office's events, over the leaf
    # connection) rather than the leaf's own, for reactions to other offices' events.
    reads_hub: ClassVar[bool] = False
    # As for a projection: what a reactor appends has deterministic ids, so a checkpoint
    # undone by a crash of PostgreSQL makes it append nothing twice.
    commit_durably: ClassVar[bool] = False

    def handlers(self) -> Mapping[type[Event], Handler]:
        """Event type -> `async def handler(event)`."""
        raise NotImplementedError

    def writes_to(self, event: RecordedEvent) -> str | None:
        """The office whose case the reaction writes (None: it writes no case). Events whose
        reaction would write an office this deployment does not write (one with a leaf of
        its own) are that office's own services' to react to, and are passed over here."""
        return event.office


class Writer:
    """Buffers a projection's writes and sends them pipelined (`executemany` per run of equal
    statements, in order). Reads flush the buffer first, so a handler sees its own writes."""

    def __init__(self, conn: asyncpg.Connection, names: Mapping[str, str], replaying: bool,
                 sql_cache: dict[str, str]) -> None:
        self._conn = conn
        self._names = names
        self._cache = sql_cache
        self._ops: list[tuple[str, tuple]] = []
        self._unordered: dict[str, list[tuple]] = {}
        self.replaying = replaying
        # what a handler looked up once and may reuse for the rest of this batch (one
        # transaction); it is gone with the batch
        self.memo: dict[Any, Any] = {}

    def sql(self, template: str) -> str:
        sql = self._cache.get(template)
        if sql is None:
            sql = self._cache[template] = template.format_map(self._names)
        return sql

    def execute(self, template: str, *args: Any) -> None:
        self._ops.append((self.sql(template), args))

    def execute_unordered(self, template: str, *args: Any) -> None:
        """A write whose order against the batch's other writes does not matter (a row
        inserted once by its own id, in a table nothing else in the batch writes): all of
        them go in one `executemany` after the ordered writes, instead of breaking their
        runs one statement at a time."""
        self._unordered.setdefault(self.sql(template), []).append(args)

    async def fetch(self, template: str, *args: Any) -> list[asyncpg.Record]:
        await self.flush()
        return await self._conn.fetch(self.sql(template), *args)

    async def fetchrow(self, template: str, *args: Any) -> asyncpg.Record | None:
        await self.flush()
        return await self._conn.fetchrow(self.sql(template), *args)

    async def fetchval(self, template: str, *args: Any) -> Any:
        await self.flush()
        return await self._conn.fetchval(self.sql(template), *args)

    async def flush(self) -> None:
        ops, self._ops = self._ops, []
        unordered, self._unordered = self._unordered, {}
        i = 0
        while i < len(ops):
            sql = ops[i][0]
            j = i + 1
            while j < len(ops) and ops[j][0] is sql:
                j += 1
            if j - i == 1:
                await self._conn.execute(sql, *ops[i][1])
            else:
                await self._conn.executemany(sql, [args for _, args in ops[i:j]])
            i = j
        for sql, rows in unordered.items():
            await self._conn.executemany(sql, rows)


class _Puller:
    """Pulls batches from a durable consumer with one request per batch, collecting the
    messages in a subscription callback.

    nats-py's `fetch` waits for each message through a task and `wait_for` of its own,
    which made consuming several times slower than the server delivers. First a `no_wait`
    request takes what is there; when nothing is, a long poll waits for one message, then
    what came with it is taken without waiting.
    """

    def __init__(self, nc: NATS, stream: str, durable: str, api_prefix: str = "$JS.API") -> None:
        self._nc = nc
        self._api = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub = None
        self._batch: list[Msg] = []
        self._want = 0
        self._done: asyncio.Future | None = None
        self._gone = False

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg,
                                             pending_msgs_limit=1_000_000,
                                             pending_bytes_limit=1 << 30)

    async def stop(self) -> None:
        if self._sub is not None:
            await _quietly(self._sub.unsubscribe())

    async def _on_msg(self, msg: Msg) -> None:
        done = self._done
        if msg.headers and "Status" in msg.headers and not msg.data:
            if msg.headers["Status"] == "503":
                self._gone = True  # no responders: the consumer does not exist
            if msg.headers["Status"] != "100" and done is not None and not done.done():
                done.set_result(None)  # 404/408: no (more) messages for this request
            return
        self._batch.append(msg)
        if len(self._batch) >= self._want and done is not None and not done.done():
            done.set_result(None)

    async def _request(self, body: dict, want: int, timeout: float) -> list[Msg]:
        # Messages that arrived since the last request (late answers to it) are kept and
        # come first: a delivered message must never be dropped, or the checkpoint would
        # pass it and its redelivery be skipped.
        self._want = len(self._batch) + want
        self._done = asyncio.get_running_loop().create_future()
        await self._nc.publish(self._api, json.dumps(body).encode(), reply=self._inbox)
        try:
            async with asyncio.timeout(timeout):
                await self._done
        except TimeoutError:
            pass
        batch, self._batch, self._done = self._batch, [], None
        if self._gone and not batch:
            raise ConsumerLost(f"no consumer answers on {self._api}")
        return batch

    async def fetch(self, n: int, wait: float) -> list[Msg]:
        msgs = await self.take(n)
        if msgs:
            return msgs
        first = await self._request({"batch": 1, "expires": int(wait * 1e9)}, 1, wait + 5.0)
        if not first or n == 1:
            return first
        return first + await self.take(n - 1)

    async def take(self, n: int) -> list[Msg]:
        """Up to n messages that are there now, without waiting for more."""
        return await self._request({"batch": n, "no_wait": True}, n, 5.0)


@dataclass(slots=True)
class _Item:
    stream: str
    seq: int
    subject: str
    headers: dict[str, str]
    body: bytes


# One ack settles a whole batch: the consumer acks everything up to the sequence acked. The
# checkpoint, not the consumer, says what was applied, so nothing finer is needed.
ACK_POLICY = AckPolicy.ALL

# How long a partial batch gathers what follows it before it is applied, in both intakes:
# what an event waits at most on a quiet stream, and what lets batches grow under load (a
# transaction, a checkpoint and an ack per batch instead of per few events).
GATHER_WAIT = 0.1


def stream_seq(msg: Msg) -> int:
    """A delivered message's stream sequence, read from its ack subject
    (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`)
    without nats-py building its whole metadata (two dataclasses and a datetime) for every
    message. Other forms (with a domain and account) take nats-py's way."""
    tokens = msg.reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5])
    return msg.metadata.sequence.stream


def consumer_seq(msg: Msg) -> int:
    """A delivered message's consumer sequence, read from its ack subject as `stream_seq`."""
    tokens = msg.reply.split(".")
    if len(tokens) == 9:
        return int(tokens[6])
    return msg.metadata.sequence.consumer


class DeliveryGap(Exception):
    """A batch did not follow the last one delivered: deliveries were lost on the way."""


class ConsumerLost(Exception):
    """The session's consumer is gone or may be: NATS was reconnected (a restarted server
    keeps no consumer, whose state lives in memory) or no consumer answers a pull."""


class _SlowPath(Exception):
    """The fast path met a held case or a failing event: redo the batch event by event."""


@dataclass
class ProjectionStatus:
    name: str
    kind: str
    intake: str = "kernel"
    role: str = "starting"
    active_tag: str | None = None
    building_tag: str | None = None
    lag: dict[str, int | None] = field(default_factory=dict)
    held_cases: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "intake": self.intake, "role": self.role,
                "active": self.active_tag, "building": self.building_tag,
                "lag": self.lag, "held_cases": self.held_cases, "last_error": self.last_error}


class ProjectionRunner:
    """Runs one projection or reactor for a service: leadership, versions, loops."""

    def __init__(self, target: Projection | Reactor, *, nc: NATS, pool: asyncpg.Pool,
                 topology: Topology, schema: str, catalog: EventCatalog,
                 metrics: KernelMetrics | None = None, batch_size: int = 256,
                 fetch_wait: float = 0.5, gather_wait: float = GATHER_WAIT,
                 retry_delays: Sequence[float] = (1.0, 5.0, 30.0),
                 ack_wait: float = 30.0, standby_poll: float = 2.0,
                 broker: NatsBroker | None = None, hub_domain: str = "hub",
                 keys: KeyRing | None = None) -> None:
        self.target = target
        self.keys = keys  # opens the personal values sealed in events (shared.privacy)
        self.kind = "projection" if isinstance(target, Projection) else "reactor"
        self.name = target.name
        self.nc = nc
        # a leaf's reactor to other offices' events consumes at the hub, over the leaf link
        self.domain = (hub_domain if topology.office and getattr(target, "reads_hub", False)
                       else None)
        self.api_prefix = f"$JS.{self.domain}.API" if self.domain else "$JS.API"
        self.js = nc.jetstream(domain=self.domain)
        if self.domain:
            broker = None  # FastStream's subscribers know no JetStream domain
        self.pool = pool
        self.topology = topology
        self.schema = schema
        self.s = quote_ident(schema)
        self.catalog = catalog
        self.metrics = metrics or KernelMetrics()
        self.batch_size = batch_size
        self.fetch_wait = fetch_wait
        self.gather_wait = gather_wait
        self.retry_delays = tuple(retry_delays)
        self.ack_wait = ack_wait
        self.standby_poll = standby_poll
        self.handlers = {cls.event_type: fn for cls, fn in target.handlers().items()}
        self.streams = {topology.stream(c): c for c in target.contexts}
        # FastStream subscribers take the batches when given a connected broker (the
        # service gives one to targets that are `via_faststream`); else the kernel's puller
        self.broker = broker
        self.status = ProjectionStatus(self.name, self.kind,
                                       "faststream" if self.broker is not None else "kernel")
        self._caught_up: dict[str, asyncio.Event] = {}
        self._loops: dict[str, asyncio.Task] = {}
        self._replaying: dict[str, bool] = {}
        self._fetched: dict[str, int] = {}  # "tag:stream" -> last stream sequence fetched
        self._applied: dict[str, int] = {}  # ... and applied

    # ------------------------------------------------------------------ leadership & versions

    async def run(self) -> None:
        """Run until cancelled. Only one process runs a projection at a time: the holder of a
        PostgreSQL advisory lock; other replicas wait as standbys."""
        backoff = 0.5
        while True:
            try:
                async with self.pool.acquire() as lock_conn:
                    if hasattr(lock_conn, "holds_session_state"):  # a kernel pool's connection
                        lock_conn.holds_session_state()  # the lock goes with a release
                    got = await lock_conn.fetchval(
                        "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))",
                        self.schema, self.name)
                    if not got:
                        self.status.role = "standby"
                        await asyncio.sleep(self.standby_poll)
                        continue
                    try:
                        self.status.role = "leader"
                        await self._lead(lock_conn)
                    finally:
                        await _quietly(lock_conn.execute(
                            "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))",
                            self.schema, self.name))
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must survive anything
                if _stopping():
                    raise asyncio.CancelledError from exc
                self.status.role = "recovering"
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                # not known again until the next session has fetched: never a stale 0
                self.status.lag = dict.fromkeys(self.status.lag)
                log.warning("projection loop failed; restarting", projection=self.name,
                            error=self.status.last_error, retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 15.0)

    async def _lead(self, lock_conn: asyncpg.Connection) -> None:
        if self.kind == "reactor":
            self.status.active_tag = "live"
            await self._loop("live", replaying=False)
            return
        try:
            while True:
                active, building = await self._prepare_versions()
                self.status.active_tag, self.status.building_tag = active, building
                if active and _version(active) == self.target.version:
                    self._start_loop(active, replaying=False)
                if building:
                    self._start_loop(building, replaying=True)
                    self._caught_up.setdefault(building, asyncio.Event())
                # wait for a build to catch up, a loop to fail, or a rebuild request
                waiters = [asyncio.ensure_future(self._caught_up[building].wait())] if building else []
                done, _ = await asyncio.wait(
                    [*self._loops.values(), *waiters], timeout=self.standby_poll,
                    return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
                for tag, task in list(self._loops.items()):
                    if task.done():
                        del self._loops[tag]
                        task.result()  # re-raise the loop's error
                if building and self._caught_up[building].is_set():
                    await self._switch(active, building)
                await lock_conn.execute("SELECT 1")  # the lock lives as long as this session
        finally:
            for task in self._loops.values():
                task.cancel()
            await asyncio.gather(*self._loops.values(), return_exceptions=True)
            self._loops.clear()

    def _start_loop(self, tag: str, replaying: bool) -> None:
        if tag not in self._loops:
            self._loops[tag] = asyncio.create_task(self._loop(tag, replaying),
                                                   name=f"{self.name}:{tag}")

    def _names(self, tag: str) -> dict[str, str]:
        return {t: f'{self.s}."{t}__{tag}"' for t in self.target.tables}

    async def _prepare_versions(self) -> tuple[str | None, str | None]:
        v = self.target.version
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT active_tag, building_tag, generation FROM {self.s}.projection_versions "
                "WHERE projection = $1 FOR UPDATE", self.name)
            if row is None:
                tag = f"v{v}_1"
                await self._create_tables(conn, tag)
                await self._point_views(conn, tag)
                await conn.execute(
                    f"INSERT INTO {self.s}.projection_versions "
                    "(projection, active_tag, generation, switched_at) VALUES ($1, $2, 1, now())",
                    self.name, tag)
                log.info("projection created", projection=self.name, tag=tag)
                return tag, None
            active, building, gen = row["active_tag"], row["building_tag"], row["generation"]
            if building and _version(building) != v:
                await self._drop_tag(conn, building)
                building = None
            if _version(active) != v and building is None:
                gen += 1
                building = f"v{v}_{gen}"
                await self._create_tables(conn, building)
                log.info("projection version changed; rebuilding", projection=self.name,
                         active=active, building=building)
            await conn.execute(
                f"UPDATE {self.s}.projection_versions SET building_tag = $2, generation = $3 "
                "WHERE projection = $1", self.name, building, gen)
            return active, building

    async def _create_tables(self, conn: asyncpg.Connection, tag: str) -> None:
        for logical, ddl in self.target.tables.items():
            await conn.execute(ddl.format(table=self._names(tag)[logical]))

    async def _claim_build(self, conn: asyncpg.Connection, tag: str) -> bool:
        """At the start of a build's loop, under the versions row's lock: is the build still
        wanted (active or building)? If so, create any of its tables that are missing. A
        rebuild requested from outside the service (`bapas rebuild`, which does not know the
        DDL) names only the tag; its tables come into being here, in the same transaction as
        its checkpoints, so a build that has no checkpoints has no tables either."""
        row = await conn.fetchrow(
            f"SELECT active_tag, building_tag FROM {self.s}.projection_versions "
            "WHERE projection = $1 FOR UPDATE", self.name)
        if row is None or tag not in (row["active_tag"], row["building_tag"]):
            return False
        for logical, ddl in self.target.tables.items():
            physical = self._names(tag)[logical]
            if await conn.fetchval("SELECT to_regclass($1)", physical) is None:
                await conn.execute(ddl.format(table=physical))
        return True

    async def _point_views(self, conn: asyncpg.Connection, tag: str) -> None:
        for logical in self.target.tables:
            view = f'{self.s}."{logical}"'
            await conn.execute(f"DROP VIEW IF EXISTS {view}")
            await conn.execute(f"CREATE VIEW {view} AS SELECT * FROM {self._names(tag)[logical]}")

    async def _drop_tag(self, conn: asyncpg.Connection, tag: str) -> None:
        for physical in self._names(tag).values():
            await conn.execute(f"DROP TABLE IF EXISTS {physical}")
        for table in ("projection_checkpoints", "projection_parked", "projection_held_events"):
            await conn.execute(f"DELETE FROM {self.s}.{table} WHERE projection = $1 AND tag = $2",
                               self.name, tag)

    async def _switch(self, old: str | None, new: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._point_views(conn, new)
            if old:
                await self._drop_tag(conn, old)
            await conn.execute(
                f"UPDATE {self.s}.projection_versions SET active_tag = $2, building_tag = NULL, "
                "switched_at = now() WHERE projection = $1", self.name, new)
        if old and old in self._loops:
            self._loops.pop(old).cancel()
        # the build is live from now on: its handlers may cause side effects again
        self._replaying[new] = False
        self._caught_up.pop(new, None)
        if old:
            for stream in self.streams:
                await _quietly(self.js.delete_consumer(stream, self._durable(old, stream)))
                for progress in (self.status.lag, self._fetched, self._applied):
                    progress.pop(f"{old}:{stream}", None)  # the old build is gone
        log.info("projection switched to a new build", projection=self.name, old=old, new=new)

    async def ensure_created(self) -> None:
        """Create the projection's first build (tables and views) if it has none, so that
        queries find their views from the first request on; building is left to the leader."""
        if self.kind == "projection":
            async with self.pool.acquire() as conn:
                exists = await conn.fetchval(
                    f"SELECT 1 FROM {self.s}.projection_versions WHERE projection = $1", self.name)
            if not exists:
                await self._prepare_versions()

    async def request_rebuild(self) -> str:
        """Start building a fresh copy of this projection (same version) from the streams."""
        async with self.pool.acquire() as conn, conn.transaction():
            tag, new = await request_rebuild(conn, self.schema, self.name, self.target.version)
            if new:
                await self._create_tables(conn, tag)
            return tag

    # ------------------------------------------------------------------------- the loop

    def _durable(self, tag: str, stream: str) -> str:
        parts = (self.schema, self.name, tag, self.streams[stream])
        if self.domain:  # at the hub, beside the hub's and other offices' consumers
            parts = (*parts, self.topology.office)
        return self.topology.durable(*parts)

    async def _loop(self, tag: str, replaying: bool) -> None:
        """Consume every source stream for one build (`tag`) of the projection."""
        self._replaying[tag] = replaying
        names = self._names(tag)
        cache: dict[str, str] = {}
        async with self.pool.acquire() as conn, conn.transaction():
            if self.kind == "projection" and not await self._claim_build(conn, tag):
                log.info("build no longer wanted; not starting it", projection=self.name,
                         tag=tag)
                return
            for stream in self.streams:
                await conn.execute(
                    f"INSERT INTO {self.s}.projection_checkpoints (projection, tag, stream) "
                    "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", self.name, tag, stream)
            held = {r["subject"] for r in await conn.fetch(
                f"SELECT subject FROM {self.s}.projection_parked WHERE projection = $1 "
                "AND tag = $2", self.name, tag)}
        state = _LoopState(tag=tag, names=names, sql_cache=cache, held=held,
                           reconnects=self.nc.stats["reconnects"])
        self.status.held_cases = len(held)
        self.metrics.parked.labels(self.name).set(len(held))
        if self.broker is not None:
            await self._consume_with_faststream(state)
        else:
            await self._consume_with_puller(state)

    def _check_connection(self, state: _LoopState) -> None:
        """End the session if NATS was reconnected since it made its consumers: their state
        lives in the server's memory (`_sync_consumer`), so a restarted server has none,
        and a consumer on a server that stayed up is made afresh at no loss."""
        if self.nc.stats["reconnects"] != state.reconnects:
            raise ConsumerLost("NATS was reconnected; the consumers are made afresh")

    async def _settle(self, state: _LoopState, stream: str, msgs: list[Msg]) -> None:
        """Apply one fetched batch and ack it (after the commit, one ack for all)."""
        self._check_connection(state)
        await self._apply(state, stream, msgs)
        await msgs[-1].ack()  # acks the whole batch (ACK_POLICY)
        self._applied[f"{state.tag}:{stream}"] = stream_seq(msgs[-1])
        self._check_caught_up(state.tag)

    def _fetched_batch(self, tag: str, stream: str, msgs: list[Msg]) -> None:
        key = f"{tag}:{stream}"
        pending = msgs[-1].metadata.num_pending
        self._fetched[key] = stream_seq(msgs[-1])
        self.status.lag[key] = pending
        self.metrics.lag.labels(self.name, stream).set(pending)

    def _no_lag(self, tag: str, stream: str) -> None:
        self.status.lag[f"{tag}:{stream}"] = 0
        self.metrics.lag.labels(self.name, stream).set(0)

    async def _consume_with_puller(self, state: _LoopState) -> None:
        """The kernel's own intake: a fetcher per stream runs one batch ahead of the apply."""
        tag = state.tag
        queue: asyncio.Queue[tuple[str, list[Msg]]] = asyncio.Queue(maxsize=len(self.streams))
        fetchers = []
        next_delivery: dict[str, int] = {}
        try:
            for stream in self.streams:
                durable, delivered = await self._sync_consumer(tag, stream)
                next_delivery[stream] = delivered + 1
                puller = _Puller(self.nc, stream, durable, self.api_prefix)
                await puller.start()
                fetchers.append(asyncio.create_task(self._fetch(stream, puller, queue, tag)))
            while True:
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                    # cancellation that arrives as the queue hands over an item, and the
                    # loop would then outlive its runner
                    async with asyncio.timeout(self.fetch_wait):
                        stream, msgs = await queue.get()
                except TimeoutError:
                    self._check_connection(state)
                    for f in fetchers:
                        if f.done():
                            f.result()  # a fetcher's error (ConsumerLost) ends the session
                    await self._retry_due(state)
                    self._check_caught_up(tag)
                    continue
                for f in fetchers:
                    if f.done():
                        f.result()
                next_delivery[stream] = self._follows(stream, msgs, next_delivery[stream])
                await self._settle(state, stream, msgs)
                await self._retry_due(state)
        finally:
            for f in fetchers:
                f.cancel()
            await asyncio.gather(*fetchers, return_exceptions=True)

    async def _consume_with_faststream(self, state: _LoopState) -> None:
        """FastStream's intake: a JetStream pull subscriber per stream in FastStream's batch
        mode (up to a batch per handler call, manual acks), bound to the durable consumer our
        own code provisioned at the checkpoint, with `declare=False`.

        Its handler only hands each fetched batch to this loop and waits until it is applied
        and acked, so the subscriber fetches again only then, as the kernel's loop would.
        The loop applies what arrived in consumer-sequence order and between batches retries
        held cases. A batch is handed over when it is full or GATHER_WAIT has passed since
        its fetch began, so a quiet stream's event waits at most that long; one handler call
        per batch costs about half of one per message (FastStream's middlewares, context and
        task per call). nats-py's bare `asyncio.TimeoutError`, which made FastStream drop a
        partial batch, is raised as nats' own (`natsfast`); a batch that went astray anyway
        shows as a hole in the consumer sequences and restarts the session at the
        checkpoint."""
        assert self.broker is not None
        tag = state.tag
        waiting: dict[str, list[tuple[Msg, asyncio.Future[None]]]] = {s: [] for s in self.streams}
        arrived = asyncio.Event()
        # The consumer sequence the next message of each stream must carry: every delivery,
        # redeliveries included, takes the next one, so a hole means a delivery went astray.
        next_delivery: dict[str, int] = {}
        gap_since: dict[str, float] = {}
        subscribers = []
        ended = asyncio.Event()

        context = self.broker.context

        def handler(stream: str) -> Callable[..., Awaitable[None]]:
            # The message comes from FastStream's context, not as an argument: an argument
            # taken from the context is resolved in a worker thread, a hop per message that
            # cost this intake most of its time.
            async def hand_over() -> None:
                message: FsNatsMessage = context.get_local("message")
                if ended.is_set():
                    return  # unacked: the next session's consumer delivers it again
                done = asyncio.get_running_loop().create_future()
                waiting[stream].extend((msg, done) for msg in message.raw_message)
                arrived.set()
                await done  # applied and acked, or the session ended
            return hand_over

        def release(items: list[tuple[Msg, asyncio.Future[None]]]) -> None:
            for _, done in items:
                if not done.done():
                    done.set_result(None)

        try:
            for stream in self.streams:
                durable, delivered = await self._sync_consumer(tag, stream)
                next_delivery[stream] = delivered + 1
                sub = self.broker.subscriber(
                    self.topology.context_filter(self.streams[stream]),
                    stream=JStream(stream, declare=False), durable=durable,
                    pull_sub=PullSub(batch_size=self.batch_size, timeout=self.gather_wait or 0.001,
                                     batch=True),
                    ack_policy=FsAckPolicy.MANUAL, persistent=False, include_in_schema=False,
                    decoder=_undecoded)
                sub(handler(stream))
                await sub.start()
                subscribers.append(sub)
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.fetch_wait):
                        await arrived.wait()
                arrived.clear()
                await asyncio.sleep(0)  # let the handlers of one fetch all hand over
                for stream, items in waiting.items():
                    if not items:  # a consumer gone with a restarted server: NotFound here
                        await self._lag_from_server(tag, stream)
                        continue
                    batch = self._contiguous(stream, items, next_delivery[stream])
                    if not batch:
                        # the handlers of one fetch run as tasks; a hole that lasts is a loss
                        since = gap_since.setdefault(stream, time.monotonic())
                        if time.monotonic() - since > 2 * self.fetch_wait:
                            raise DeliveryGap(f"{stream}: delivery {next_delivery[stream]} "
                                              f"never came; got {consumer_seq(items[0][0])}")
                        continue
                    gap_since.pop(stream, None)
                    del items[:len(batch)]
                    msgs = [m for m, _ in batch]
                    next_delivery[stream] += len(msgs)
                    self._fetched_batch(tag, stream, msgs)
                    try:
                        await self._settle(state, stream, msgs)
                    finally:
                        release(batch)
                await self._retry_due(state)
                self._check_caught_up(tag)
        finally:
            ended.set()
            for items in waiting.values():
                release(items)
            for sub in subscribers:
                await _quietly(sub.stop())

    @staticmethod
    def _follows(stream: str, msgs: list[Msg], first: int) -> int:
        """Check that a batch continues the deliveries without a hole; the next expected.

        A new consumer leader (its node was killed or frozen) may count as delivered what
        never reached us and go on with later messages; applying those and acking them
        (ACK_POLICY acks everything before) would skip the missing ones for good. The loop
        restarts instead, and the consumer is recreated at the checkpoint."""
        for i, msg in enumerate(msgs):
            if consumer_seq(msg) != first + i:
                raise DeliveryGap(f"{stream}: delivery {first + i} never came; got "
                                  f"{consumer_seq(msg)}")
        return first + len(msgs)

    @staticmethod
    def _contiguous(stream: str, items: list[tuple[Msg, asyncio.Future[None]]], first: int
                    ) -> list[tuple[Msg, asyncio.Future[None]]]:
        """The waiting messages that follow the last applied delivery without a hole, in
        delivery order (sorted in place)."""
        items.sort(key=lambda item: consumer_seq(item[0]))
        batch = []
        for item in items:
            if consumer_seq(item[0]) != first + len(batch):
                break
            batch.append(item)
        return batch

    async def _lag_from_server(self, tag: str, stream: str) -> None:
        """What the consumer has yet to deliver or to see acked: 0 once all is applied."""
        info = await self.js.consumer_info(stream, self._durable(tag, stream))
        lag = info.num_pending + info.num_ack_pending
        self.status.lag[f"{tag}:{stream}"] = lag
        self.metrics.lag.labels(self.name, stream).set(lag)

    def _check_caught_up(self, tag: str) -> None:
        """Caught up: nothing left in the streams, and everything fetched applied (the
        fetcher runs ahead: a batch can wait in the queue while the lag already says 0)."""
        waiter = self._caught_up.get(tag)
        keys = [f"{tag}:{s}" for s in self.streams]
        if waiter is not None and all(
                self.status.lag.get(k) == 0
                and self._applied.get(k, 0) >= self._fetched.get(k, 0) for k in keys):
            waiter.set()

    async def _sync_consumer(self, tag: str, stream: str) -> tuple[str, int]:
        """Create the durable consumer afresh at the checkpoint; returns its name and the
        last consumer sequence it delivered (0: it starts counting from 1).

        Every session starts with a new consumer, even one that looks in step: after a
        fault the old one may hold deliveries made into a dead session's pull requests, and
        a late ack from that session (one ack settles everything before it) can make those
        look applied. A consumer made at the checkpoint owes nothing and is owed nothing."""
        durable = self._durable(tag, stream)
        async with self.pool.acquire() as conn:
            position = await conn.fetchval(
                f"SELECT position FROM {self.s}.projection_checkpoints "
                "WHERE projection = $1 AND tag = $2 AND stream = $3", self.name, tag, stream)
        context = self.streams[stream]
        try:
            info = await self.js.consumer_info(stream, durable)
            if info.num_ack_pending or info.delivered.stream_seq != position:
                log.info("consumer differs from checkpoint; recreating it", consumer=durable,
                         delivered=info.delivered.stream_seq, checkpoint=position,
                         pending_acks=info.num_ack_pending)
            await self.js.delete_consumer(stream, durable)
        except NotFoundError:
            pass
        config = ConsumerConfig(
            durable_name=durable,
            filter_subject=self.topology.context_filter(context),
            ack_policy=ACK_POLICY,
            ack_wait=self.ack_wait,
            max_deliver=10,
            max_ack_pending=self.batch_size * 4,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if position else DeliverPolicy.ALL,
            opt_start_seq=position + 1 if position else None,
            # its state in memory: the checkpoint is ours, in the database, and a new
            # session makes the consumer afresh from it. On disk, with `sync_interval:
            # always`, every ack rewrote and fsynced a state file: over a quarter of
            # nats-server's CPU under load.
            mem_storage=True,
        )
        await self.js.add_consumer(stream, config)
        return durable, 0

    async def _fetch(self, stream: str, puller: _Puller, queue: asyncio.Queue, tag: str) -> None:
        try:
            while True:
                msgs = await puller.fetch(self.batch_size, self.fetch_wait)
                if not msgs:
                    self._no_lag(tag, stream)
                    continue
                if len(msgs) < self.batch_size and self.gather_wait:
                    # a partial batch waits a moment for what follows it: under load the
                    # batches grow, and with them what a transaction and an ack carry
                    await asyncio.sleep(self.gather_wait)
                    msgs += await puller.take(self.batch_size - len(msgs))
                self._fetched_batch(tag, stream, msgs)
                await queue.put((stream, msgs))
        finally:
            await puller.stop()

    # ------------------------------------------------------------------------ applying

    def _handles(self, headers: dict[str, str]) -> bool:
        try:
            return parse_ce_type(headers.get("ce-type", ""))[0] in self.handlers
        except ValueError:
            return False

    def _decode(self, item: _Item) -> RecordedEvent | EventDecodeError | None:
        """The event, None if this projection does not handle its type, or why it is poison."""
        try:
            name, _ = parse_ce_type(item.headers.get("ce-type", ""))
        except ValueError as exc:
            return EventDecodeError(item.subject, item.seq, str(exc))
        if name not in self.handlers:
            return None
        try:
            event = decode_message(self.catalog, self.topology, item.stream, item.subject,
                                   item.seq, item.headers, item.body, self.keys)
        except EventDecodeError as exc:
            return exc
        if self.kind == "reactor":
            office = self.target.writes_to(event)
            if office is not None and not self.topology.writes(office):
                return None
        return event

    async def _open_keys(self, items: Sequence[_Item]) -> None:
        """The keys of the sealed events among `items` that this projection handles."""
        if self.keys is not None:
            subjects = [it.headers.get("ce-subject", "") for it in items
                        if SEALED_MARK in it.body and self._handles(it.headers)]
            if subjects:
                await self.keys.prepare(subjects)

    async def _apply(self, state: _LoopState, stream: str, msgs: list[Msg]) -> None:
        items = [_Item(stream, stream_seq(m), m.subject, m.headers or {}, m.data)
                 for m in msgs]
        await self._open_keys(items)
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    position = await self._lock_position(conn, state.tag, stream)
                    todo = [(it, self._decode(it)) for it in items if it.seq > position]
                    if any(it.subject in state.held or isinstance(ev, EventDecodeError)
                           for it, ev in todo):
                        raise _SlowPath
                    events = [ev for _, ev in todo if ev is not None]
                    await self._apply_fast(conn, state, events)
                    await self._save_position(conn, state.tag, stream, items[-1].seq)
                applied = len(events)
            except TRANSIENT:
                raise
            except Exception as exc:  # noqa: BLE001 - any handler failure: find the culprit
                if not isinstance(exc, _SlowPath):
                    log.info("batch failed; applying event by event", projection=self.name,
                             error=repr(exc))
                applied = await self._apply_slow(conn, state, stream, items)
        self.metrics.projected.labels(self.name, stream).inc(applied)

    async def _apply_fast(self, conn: asyncpg.Connection, state: _LoopState,
                          events: list[RecordedEvent]) -> None:
        replaying = self._replaying.get(state.tag, False)
        if self.kind == "projection":
            w = Writer(conn, state.names, replaying, state.sql_cache)
            for ev in events:
                await self.handlers[ev.type](w, ev)
            await w.flush()
            return
        # reactors: cases are independent, a case's events stay in order
        by_case: dict[str, list[RecordedEvent]] = {}
        for ev in events:
            by_case.setdefault(ev.subject, []).append(ev)

        async def react(case_events: list[RecordedEvent]) -> None:
            for ev in case_events:
                await self.handlers[ev.type](ev)

        results = await asyncio.gather(*(react(evs) for evs in by_case.values()),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def _apply_one(self, conn: asyncpg.Connection, state: _LoopState,
                         ev: RecordedEvent) -> None:
        if self.kind == "projection":
            async with conn.transaction():  # a savepoint: a failure undoes this event only
                w = Writer(conn, state.names, self._replaying.get(state.tag, False),
                           state.sql_cache)
                await self.handlers[ev.type](w, ev)
                await w.flush()
        else:
            await self.handlers[ev.type](ev)

    async def _apply_slow(self, conn: asyncpg.Connection, state: _LoopState, stream: str,
                          items: list[_Item]) -> int:
        applied = 0
        held = set(state.held)
        async with conn.transaction():
            position = await self._lock_position(conn, state.tag, stream)
            for it in items:
                if it.seq <= position:
                    continue
                if it.subject in held:
                    await self._store_held(conn, state.tag, it)
                    continue
                ev = self._decode(it)
                if ev is None:
                    continue
                error: BaseException | None = ev if isinstance(ev, EventDecodeError) else None
                if error is None:
                    try:
                        await self._apply_one(conn, state, ev)
                        applied += 1
                        continue
                    except TRANSIENT:
                        raise
                    except Exception as exc:  # noqa: BLE001
                        error = exc
                await self._hold(conn, state.tag, it, error)
                held.add(it.subject)
            await self._save_position(conn, state.tag, stream, items[-1].seq)
        state.held = held
        self._count_held(state)
        return applied

    async def _lock_position(self, conn: asyncpg.Connection, tag: str, stream: str) -> int:
        """The checkpoint, locked for the batch's transaction, which it also sets to commit
        durably or not (`commit_durably`) in the same round trip."""
        return await conn.fetchval(
            f"SELECT position, set_config('synchronous_commit', $4, true) "
            f"FROM {self.s}.projection_checkpoints WHERE projection = $1 "
            "AND tag = $2 AND stream = $3 FOR UPDATE", self.name, tag, stream,
            "on" if self.target.commit_durably else "off")

    async def _save_position(self, conn: asyncpg.Connection, tag: str, stream: str,
                             seq: int) -> None:
        # monotonic: a checkpoint never moves back
        await conn.execute(
            f"UPDATE {self.s}.projection_checkpoints SET position = $4, updated_at = now() "
            "WHERE projection = $1 AND tag = $2 AND stream = $3 AND position < $4",
            self.name, tag, stream, seq)

    async def _store_held(self, conn: asyncpg.Connection, tag: str, it: _Item) -> None:
        await conn.execute(
            f"INSERT INTO {self.s}.projection_held_events "
            "(projection, tag, stream, seq, subject, headers, body) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7) ON CONFLICT DO NOTHING",
            self.name, tag, it.stream, it.seq, it.subject, json.dumps(it.headers), it.body)

    async def _hold(self, conn: asyncpg.Connection, tag: str, it: _Item,
                    error: BaseException) -> None:
        reason = _describe(error)
        delay = self.retry_delays[0] if self.retry_delays else None
        status = "retrying" if delay is not None else "parked"
        await self._store_held(conn, tag, it)
        await conn.execute(
            f"INSERT INTO {self.s}.projection_parked (projection, tag, subject, status, attempts,"
            " next_attempt_at, first_stream, first_seq, last_error) "
            "VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            self.name, tag, it.subject, status,
            datetime.now(UTC) + timedelta(seconds=delay) if delay is not None else None,
            it.stream, it.seq, reason)
        log.warning("event failed; holding its case back", projection=self.name,
                    subject=it.subject, stream_seq=it.seq, error=reason,
                    client_id=it.subject.rsplit(".", 1)[-1])

    def _count_held(self, state: _LoopState) -> None:
        self.status.held_cases = len(state.held)
        self.metrics.parked.labels(self.name).set(len(state.held))

    async def _retry_due(self, state: _LoopState) -> None:
        if not state.held:
            return
        now = datetime.now(UTC)
        if state.next_retry_check and now < state.next_retry_check:
            return
        state.next_retry_check = now + timedelta(seconds=0.2)
        async with self.pool.acquire() as conn:
            due = await conn.fetch(
                f"SELECT subject, attempts FROM {self.s}.projection_parked WHERE projection = $1"
                " AND tag = $2 AND status = 'retrying' AND next_attempt_at <= now()",
                self.name, state.tag)
            for row in due:
                await self._retry_case(conn, state, row["subject"], row["attempts"])
        self._count_held(state)

    async def _retry_case(self, conn: asyncpg.Connection, state: _LoopState, subject: str,
                          attempts: int) -> None:
        rows = await conn.fetch(
            f"SELECT stream, seq, subject, headers, body FROM {self.s}.projection_held_events "
            "WHERE projection = $1 AND tag = $2 AND subject = $3 ORDER BY stream, seq",
            self.name, state.tag, subject)
        await self._open_keys([_Item(r["stream"], r["seq"], r["subject"],
                                     json.loads(r["headers"]), bytes(r["body"])) for r in rows])
        try:
            async with conn.transaction():
                for r in rows:
                    it = _Item(r["stream"], r["seq"], r["subject"], json.loads(r["headers"]),
                               bytes(r["body"]))
                    ev = self._decode(it)
                    if isinstance(ev, EventDecodeError):
                        raise ev
                    if ev is not None:
                        await self._apply_one(conn, state, ev)
                await conn.execute(
                    f"DELETE FROM {self.s}.projection_held_events WHERE projection = $1 "
                    "AND tag = $2 AND subject = $3", self.name, state.tag, subject)
                await conn.execute(
                    f"DELETE FROM {self.s}.projection_parked WHERE projection = $1 AND tag = $2"
                    " AND subject = $3", self.name, state.tag, subject)
            state.held.discard(subject)
            log.info("held case applied on retry", projection=self.name, subject=subject,
                     attempts=attempts + 1)
        except TRANSIENT:
            raise
        except Exception as exc:  # noqa: BLE001
            attempts += 1
            parked = attempts > len(self.retry_delays)
            delay = None if parked else self.retry_delays[attempts - 1]
            await conn.execute(
                f"UPDATE {self.s}.projection_parked SET attempts = $4, status = $5, "
                "next_attempt_at = $6, last_error = $7, updated_at = now() "
                "WHERE projection = $1 AND tag = $2 AND subject = $3",
                self.name, state.tag, subject, attempts, "parked" if parked else "retrying",
                None if parked else datetime.now(UTC) + timedelta(seconds=delay),
                _describe(exc))
            if parked:
                log.error("case parked: its events keep failing; an operator must look",
                          projection=self.name, subject=subject, attempts=attempts,
                          error=_describe(exc), client_id=subject.rsplit(".", 1)[-1])


@dataclass
class _LoopState:
    tag: str
    names: dict[str, str]
    sql_cache: dict[str, str]
    held: set[str]
    reconnects: int = 0  # the connection's count when the session made its consumers
    next_retry_check: datetime | None = None


def _stopping() -> bool:
    """A cancellation is under way, even if a library turned it into another error (asyncpg
    does, when a query is interrupted): the task must stop, not recover."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _version(tag: str | None) -> int | None:
    m = _TAG.match(tag or "")
    return int(m.group(1)) if m else None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:2000]


async def _undecoded(message: Any) -> None:
    """FastStream's decoder for the projector's subscribers: none. The handler takes the
    raw messages from the context, and the loop decodes only the types it handles, so
    FastStream's own decoder (a JSON parse and a message object, with a fresh UUID, per
    message of every batch) was work thrown away: about a sixth of a notification
    consumer's time."""


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except Exception:  # noqa: BLE001 - best effort cleanup
        pass


async def request_rebuild(conn: asyncpg.Connection, schema: str, projection: str,
                          version: int | None = None) -> tuple[str, bool]:
    """Ask for a fresh build of a projection from the streams; call inside a transaction.

    Only the versions row is written: its `building_tag` becomes `v<version>_<generation+1>`
    (`version`: the code's, or else the active build's). The leader of the projection (in the
    running service) creates the build's tables, replays into them with side effects off and
    switches the views over when it has caught up. Returns `(tag, new)`; when a build is under
    way already, that build's tag and `new=False`.
    """
    s = quote_ident(schema)
    row = await conn.fetchrow(
        f"SELECT active_tag, building_tag, generation FROM {s}.projection_versions "
        "WHERE projection = $1 FOR UPDATE", projection)
    if row is None:
        raise KernelError(f"projection {projection} has not been built yet")
    if row["building_tag"]:
        return row["building_tag"], False
    if version is None:
        version = _version(row["active_tag"])
        if version is None:
            raise KernelError(f"projection {projection} has no active build to take the "
                              f"version from (active tag {row['active_tag']!r})")
    generation = row["generation"] + 1
    tag = f"v{version}_{generation}"
    await conn.execute(
        f"UPDATE {s}.projection_versions SET building_tag = $2, generation = $3 "
        "WHERE projection = $1", projection, tag, generation)
    return tag, True


async def withdraw_rebuild(conn: asyncpg.Connection, schema: str, projection: str,
                           tag: str) -> bool:
    """Take back a requested build that no leader has started (it has no checkpoints, hence
    no tables: see `ProjectionRunner._claim_build`). False if it was started or is no longer
    the one requested; then it is left alone. Call inside a transaction."""
    s = quote_ident(schema)
    building = await conn.fetchval(
        f"SELECT building_tag FROM {s}.projection_versions WHERE projection = $1 FOR UPDATE",
        projection)
    if building != tag:
        return False
    started = await conn.fetchval(
        f"SELECT 1 FROM {s}.projection_checkpoints WHERE projection = $1 AND tag = $2 LIMIT 1",
        projection, tag)
    if started:
        return False
    await conn.execute(f"UPDATE {s}.projection_versions SET building_tag = NULL "
                       "WHERE projection = $1", projection)
    return True


async def parked_cases(conn: asyncpg.Connection, schema: str) -> list[dict[str, Any]]:
    """Cases held back by any projection of a schema, for /readyz and operators."""
    rows = await conn.fetch(
        f"SELECT projection, tag, subject, status, attempts, first_seq, last_error, held_since "
        f"FROM {quote_ident(schema)}.projection_parked ORDER BY held_since")
    return [{"projection": r["projection"], "subject": r["subject"], "status": r["status"],
             "attempts": r["attempts"], "first_seq": r["first_seq"], "error": r["last_error"],
             "since": r["held_since"].isoformat()} for r in rows]


async def release_parked(conn: asyncpg.Connection, schema: str, projection: str,
                         subject: str) -> bool:
    """Operator action: try a parked case again now (after fixing its cause)."""
    result = await conn.execute(
        f"UPDATE {quote_ident(schema)}.projection_parked SET status = 'retrying', attempts = 0, "
        "next_attempt_at = now(), updated_at = now() WHERE projection = $1 AND subject = $2",
        projection, subject)
    return result.endswith(" 1")
