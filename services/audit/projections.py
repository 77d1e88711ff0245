"""The audit service's own read models: where each client lives, and who read what."""

from __future__ import annotations

from services.registration.domain import ClientRegistered, ClientTransferred
from shared.access import ClientDataRead
from shared.events import EventCatalog, RecordedEvent
from shared.projector import Projection, Writer


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
    """Where each case's events lie in the streams. Reading a long case by its subject walks
    the stream from one of its events to the next, so its cost grows with how much of the
    stream the case spans; with the sequences known, each event is one lookup."""

    name = "event_index"
    version = 1
    contexts = ("registration", "guidance", "supervision")
    tables = {"event_seqs": """
        CREATE TABLE {table} (
            subject text NOT NULL,
            stream  text NOT NULL,
            seq     bigint NOT NULL,
            PRIMARY KEY (subject, stream, seq)
        );
    """}

    def __init__(self, catalog: EventCatalog) -> None:
        self.catalog = catalog

    def handlers(self):
        return {cls: self.indexed for reg in self.catalog.registries for cls in reg.types()}

    async def indexed(self, w: Writer, e: RecordedEvent) -> None:
        w.execute("INSERT INTO {event_seqs} (subject, stream, seq) VALUES ($1, $2, $3) "
                  "ON CONFLICT DO NOTHING", e.subject, e.stream, e.stream_seq)
