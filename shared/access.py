"""The record of processing (UU 27/2022): who read which client's data, when.

Every read of a client by a person is published, before the answer goes out, to the ACCESS
stream on the client's subject (`bapas.<office>.access.<client_id>`). The record lives with
the events, in the store no service can rewrite, and the audit service reads it from there.

While NATS cannot take it (down, or no answer in time) the record goes, still before the
answer, into the service's own `access_outbox` table in PostgreSQL, and a background job
publishes what waits there once NATS is back (the event id is its `Nats-Msg-Id`, so a
record published twice is stored once). So reads that need only PostgreSQL (searches,
boards) keep working through a NATS outage, and no read goes unrecorded: with both stores
down the read is refused (503).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
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


class AccessRecorder:
    def __init__(self, nc: NATS, topology: Topology, service: str, timeout: float = 5.0, *,
                 pool: asyncpg.Pool | None = None, schema: str | None = None) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self._topology = topology
        self._service = service
        self._pool = pool
        self._outbox = f"{quote_ident(schema)}.access_outbox" if schema else None

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
        subject = self._topology.subject("access", ref)
        if self._nc.is_connected:
            try:
                await self._js.publish(subject, body, headers=headers)
                return
            except _NATS_DOWN as exc:
                if self._outbox is None:
                    raise AppendError(f"could not record the read of {ref.client_id}: "
                                      f"{exc}") from exc
                log.warning("access record kept for later: NATS did not take it",
                            error=type(exc).__name__)
        if self._outbox is None:
            raise Unavailable("nats")  # the read is refused, not unrecorded
        assert self._pool is not None
        await self._pool.execute(
            f"INSERT INTO {self._outbox} (id, subject, headers, body) VALUES ($1, $2, $3, $4)",
            env.id, subject, json.dumps(headers), body)

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
