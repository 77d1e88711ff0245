"""The audit service's own read models: where each client lives, and who read what."""

from __future__ import annotations

import json

import asyncpg
import orjson

from services.registration.events import ClientRegistered, ClientTransferred
from shared.access import ClientDataRead
from shared.db import quote_ident
from shared.events import EventCatalog, RecordedEvent
from shared.projector import Projection, Writer

from .history import CaseIndex, Indexed


class ClientIndex(Projection):
    """Which office holds a client, and which case a transferred client came from."""

    name = "client_index"
    version = 1
    contexts = ("registration",)
    tables = {"clients": """
        CREATE TABLE {table} (
            client_id               text PRIMARY KEY,
            office                  text NOT NULL,
            transferred_from_office text,
            transferred_from_client text,
            transferred_to_office   text,
            transferred_to_client   text,
            registered_at           timestamptz NOT NULL
        );
    """}

    def handlers(self):
        return {ClientRegistered: self.registered, ClientTransferred: self.transferred}

    async def registered(self, w: Writer, e: RecordedEvent[ClientRegistered]) -> None:
        link = e.data.transferred_from
        w.execute("INSERT INTO {clients} (client_id, office, transferred_from_office, "
                  "transferred_from_client, registered_at) VALUES ($1, $2, $3, $4, $5) "
                  "ON CONFLICT DO NOTHING", e.data.client_id, e.data.office,
                  link.office if link else None, link.client_id if link else None,
                  e.data.registered_at)

    async def transferred(self, w: Writer, e: RecordedEvent[ClientTransferred]) -> None:
        w.execute("UPDATE {clients} SET transferred_to_office = $2, transferred_to_client = $3 "
                  "WHERE client_id = $1", e.client_id, e.data.to_office, e.data.new_client_id)


class AccessLog(Projection):
    """Who read which client's data, when, through which service (UU 27/2022)."""

    name = "access_log"
    version = 1
    contexts = ("access",)
    tables = {"reads": """
        CREATE TABLE {table} (
            id            text PRIMARY KEY,
            client_id     text NOT NULL,
            client_office text NOT NULL,
            actor         text NOT NULL,
            actor_office  text NOT NULL,
            actor_roles   text[] NOT NULL,
            service       text NOT NULL,
            what          text NOT NULL,
            at            timestamptz NOT NULL
        );
        CREATE INDEX ON {table} (client_id, at);
        CREATE INDEX ON {table} (actor, at);
        CREATE INDEX ON {table} (client_office, at);
    """}

    def handlers(self):
        return {ClientDataRead: self.read}

    async def read(self, w: Writer, e: RecordedEvent[ClientDataRead]) -> None:
        x = e.data
        w.execute("INSERT INTO {reads} (id, client_id, client_office, actor, actor_office, "
                  "actor_roles, service, what, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                  "ON CONFLICT DO NOTHING", e.id, e.client_id, x.client_office, x.actor,
                  x.actor_office, x.actor_roles, x.service, x.what, x.at)


class EventIndex(Projection):
    """Each case's events as stored: where they lie in the streams, and a copy of each
    message (headers and exact body bytes).

    History and state are answered from the copy: one indexed query, where reading the
    events back from the streams cost nats-py about 50 µs of CPU per message (about 10 ms
    for a case of 200 events, more than everything else an answer does). Verify and export
    read the streams themselves, so that no verification rests on the copy; the copy is
    checked against them there. Like every projection it is rebuilt from the streams."""

    name = "event_index"
    version = 2  # 1 held the sequences alone
    contexts = ("registration", "guidance", "supervision")
    tables = {"case_events": """
        CREATE TABLE {table} (
            subject text NOT NULL,
            stream  text NOT NULL,
            seq     bigint NOT NULL,
            headers jsonb NOT NULL,
            body    bytea NOT NULL,
            PRIMARY KEY (subject, stream, seq)
        );
    """}

    def __init__(self, catalog: EventCatalog) -> None:
        self.catalog = catalog

    def handlers(self):
        return {cls: self.indexed for reg in self.catalog.registries for cls in reg.types()}

    @staticmethod
    def reader(pool: asyncpg.Pool, schema: str, *, copy: bool) -> CaseIndex:
        """The index as `history` reads it: the case's events with their copies, or their
        sequences alone (to be read back from the streams)."""
        table = f"{quote_ident(schema)}.case_events"
        if copy:
            async def copies(subject: str, stream: str) -> list[Indexed]:
                rows = await pool.fetch(f"SELECT seq, headers, body FROM {table} WHERE "
                                        "subject = $1 AND stream = $2 ORDER BY seq",
                                        subject, stream)
                return [Indexed(r["seq"], orjson.loads(r["headers"]), r["body"]) for r in rows]
            return copies

        async def seqs(subject: str, stream: str) -> list[Indexed]:
            rows = await pool.fetch(f"SELECT seq FROM {table} WHERE subject = $1 AND "
                                    "stream = $2 ORDER BY seq", subject, stream)
            return [Indexed(r["seq"]) for r in rows]
        return seqs

    async def indexed(self, w: Writer, e: RecordedEvent) -> None:
        w.execute("INSERT INTO {case_events} (subject, stream, seq, headers, body) "
                  "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT DO NOTHING",
                  e.subject, e.stream, e.stream_seq, json.dumps(e.headers), e.body)
