"""The record of processing (UU 27/2022): who read which client's data, when.

Every read of a client by a person is published to the ACCESS stream on the client's subject
(`bapas.<office>.access.<client_id>`). The record lives with the events, in the store no
service can rewrite, and the audit service reads it from there.

A read does not wait for its record to be stored: the record is queued and a writer
publishes what is queued at once, all of it in flight together, so the reads of a busy
moment share the server's writes and none waits on a disk. What the server does not take
(no answer in time) goes into the service's own `access_outbox` table in PostgreSQL; what
neither takes stays queued and is tried again. Stopping a service stores what is queued
before it closes its connections. Only a service killed outright loses the records of the
moment before, those not yet answered by the server (about one round trip's worth).

While NATS is disconnected the record goes, before the answer, into the outbox, and a
background job publishes what waits there once NATS is back (the event id is its
`Nats-Msg-Id`, so a record published twice is stored once). So reads that need only
PostgreSQL (searches, boards) keep working through a NATS outage, and no read goes
unrecorded: with both stores down the read is refused (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import asyncpg
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS

from .envelope import GENESIS_HASH, Envelope, ce_type, format_time
from .db import quote_ident
from .errors import AppendError, Unavailable
from .events import Event, EventRegistry
from .ids import new_id
from .streams import CaseRef, Topology
from .web.auth import Principal

__all__ = ["ACCESS", "ClientDataRead", "AccessRecorder"]

log = structlog.get_logger("bapas.access")
_NATS_DOWN = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)

ACCESS = EventRegistry("access")


@ACCESS.event()
class ClientDataRead(Event):
    """A person read a client's data through one of the services."""

    actor: str
    actor_office: str
    actor_roles: list[str]
    client_office: str
    service: str
    what: str
    at: datetime


@dataclass(slots=True)
class _Record:
    id: str
    subject: str
    headers: dict[str, str]
    body: bytes


class AccessRecorder:
    # records queued beyond this make the next reads wait for the writer (memory is bounded)
    QUEUE_LIMIT = 10_000
    BATCH = 500  # in flight together

    def __init__(self, nc: NATS, topology: Topology, service: str, timeout: float = 5.0, *,
                 pool: asyncpg.Pool | None = None, schema: str | None = None) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self._topology = topology
        self._service = service
        self._pool = pool
        self._outbox = f"{quote_ident(schema)}.access_outbox" if schema else None
        self._queue: deque[_Record] = deque()
        self._queued = 0    # records ever queued
        self._settled = 0   # of those, stored in the stream or the outbox, in queue order
        self._arrived = asyncio.Event()
        self._progress = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def record(self, principal: Principal, ref: CaseRef, what: str,
                     correlation_id: str | None = None) -> None:
        now = datetime.now(UTC)
        data = ClientDataRead(actor=principal.sub, actor_office=principal.office,
                              actor_roles=sorted(principal.roles), client_office=ref.office,
                              service=self._service, what=what, at=now)
        body = data.model_dump_json().encode()
        # Reads are not a case history: each record stands alone (sequence 0) but still
        # carries a hash of its own body.
        env = Envelope(id=new_id(), type=ce_type("ClientDataRead", 1), time=format_time(now),
                       office=ref.office, context="access", client_id=ref.client_id,
                       sequence=0, prevhash=GENESIS_HASH, hash="", actor=principal.sub,
                       correlation_id=correlation_id)
        headers = replace(env, hash=env.computed_hash(body)).headers()
        record = _Record(env.id, self._topology.subject("access", ref), headers, body)
        if not self._nc.is_connected:
            if self._outbox is None:
                raise Unavailable("nats")  # the read is refused, not unrecorded
            await self._keep([record])
            return
        self._queue.append(record)
        self._queued += 1
        self._arrived.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="access-writer")
        while len(self._queue) > self.QUEUE_LIMIT:
            await self._wait_progress()

    async def _keep(self, records: list[_Record]) -> None:
        assert self._pool is not None
        await self._pool.executemany(
            f"INSERT INTO {self._outbox} (id, subject, headers, body) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (id) DO NOTHING",
            [(r.id, r.subject, json.dumps(r.headers), r.body) for r in records])

    async def _write(self) -> None:
        """Publish what is queued, up to BATCH records in flight at once; what the server
        does not take goes to the outbox; what neither takes is tried again."""
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._queue:
                batch = [self._queue[i] for i in range(min(self.BATCH, len(self._queue)))]
                results = await asyncio.gather(
                    *(self._js.publish(r.subject, r.body, headers=r.headers) for r in batch),
                    return_exceptions=True)
                failed = [(r, res) for r, res in zip(batch, results)
                          if isinstance(res, BaseException)]
                if failed:
                    try:
                        if self._outbox is None:
                            raise AppendError("no outbox")
                        await self._keep([r for r, _ in failed])
                        log.warning("access records kept for later: NATS did not take them",
                                    records=len(failed), error=type(failed[0][1]).__name__)
                    except Exception as exc:  # noqa: BLE001 - kept queued, tried again
                        log.error("access records could not be stored yet; trying again",
                                  records=len(failed), error=type(exc).__name__)
                        await asyncio.sleep(1.0)
                        continue
                for _ in batch:
                    self._queue.popleft()
                self._settled += len(batch)
                self._progress.set()

    async def _wait_progress(self) -> None:
        self._progress.clear()
        await self._progress.wait()

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every record queued so far is stored (in the stream or the outbox)."""
        target = self._queued
        async with asyncio.timeout(timeout):
            while self._settled < target:
                await self._wait_progress()

    async def close(self, timeout: float = 10.0) -> None:
        """Store what is queued, then stop the writer; what cannot be stored is logged."""
        try:
            if self._queue:
                await self.flush(timeout)
        except TimeoutError:
            log.error("access records lost at stop: neither NATS nor PostgreSQL took them",
                      records=len(self._queue))
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer

    async def drain(self, every: float = 1.0, batch: int = 500) -> None:
        """Publish what waits in the outbox, oldest first, whenever NATS is connected."""
        assert self._pool is not None and self._outbox is not None
        while True:
            await asyncio.sleep(every)
            if not self._nc.is_connected:
                continue
            rows = await self._pool.fetch(
                f"SELECT id, subject, headers, body FROM {self._outbox} "
                "ORDER BY created_at, id LIMIT $1", batch)
            sent = []
            try:
                for r in rows:
                    await self._js.publish(r["subject"], r["body"],
                                           headers=json.loads(r["headers"]))
                    sent.append(r["id"])
            except _NATS_DOWN as exc:
                log.info("access outbox waits for NATS", error=type(exc).__name__)
            if sent:
                await self._pool.execute(f"DELETE FROM {self._outbox} WHERE id = ANY($1)", sent)
                log.info("access records published from the outbox", records=len(sent))

    async def waiting(self) -> int:
        """Records in the outbox, not yet in the ACCESS stream."""
        if self._pool is None or self._outbox is None:
            return 0
        return await self._pool.fetchval(f"SELECT count(*) FROM {self._outbox}")
