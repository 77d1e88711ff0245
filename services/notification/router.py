"""From events to deliveries: which agency, officer or client should hear of each fact.

A projection over the three contexts' streams. Each batch records its deliveries in the
delivery log in the same transaction as the checkpoint, so each (event, recipient) pair is
recorded exactly once; the dispatcher then sends them. While a rebuild replays history,
nothing is recorded: a rebuild never sends a past delivery again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from services.registration import events as registration
from services.supervision import events as supervision
from shared.events import Event, EventCatalog, RecordedEvent
from shared.ids import derived_id
from shared.projector import Projection, Writer

from .domain import (PUBLIC_EVENT_TYPES, Channel, DataLevel, DeliveryStatus, attributes,
                     officer_message, redact)

# which events tell the client's officer something (e-mail)
OFFICER_EVENTS = frozenset({"ClientRegistered", "OfficerAssigned", "LitmasOverdue",
                            "ReportMissed", "ViolationRecorded", "TppReviewRequested"})


class DeliveryRouter(Projection):
    name = "delivery_router"
    version = 1
    contexts = ("registration", "guidance", "supervision")
    via_faststream = True  # a notification consumer: FastStream's subscriber, as reactors
    commit_durably = True  # the dispatcher sends the deliveries as soon as they are committed
    tables = {"contacts": """
        CREATE TABLE {table} (
            client_id       text PRIMARY KEY,
            office          text NOT NULL,
            officer_id      text,
            full_name       text NOT NULL,
            register_number text NOT NULL,
            program         text NOT NULL,
            phone           text,
            is_child        boolean NOT NULL,
            status          text NOT NULL,
            interval_days   integer,
            next_due_on     date
        );
        CREATE INDEX ON {table} (next_due_on) WHERE status = 'ACTIVE';
    """}

    def __init__(self, schema: str, catalog: EventCatalog) -> None:
        self.s = f'"{schema}"'
        self.catalog = catalog

    def handlers(self):
        specific = {
            registration.ClientRegistered: self._registered,
            registration.OfficerAssigned: self._assigned,
            registration.ClientDetailsCorrected: self._corrected,
            registration.ClientTransferred: self._left,
            registration.RegistrationClosed: self._left,
            supervision.ReportingPlanSet: self._plan,
            supervision.VisitLogged: self._visit,
            supervision.ReportMissed: self._missed,
            supervision.SupervisionEnded: self._ended,
        }
        types = {cls.event_type: cls for reg in self.catalog.registries for cls in reg.types()}
        out = {}
        for name in PUBLIC_EVENT_TYPES:
            cls = types[name]
            out[cls] = self._route(specific.get(cls))
        out[registration.PersonErased] = self._erased  # not public: nothing is sent
        return out

    def _route(self, specific):
        async def handle(w: Writer, e: RecordedEvent) -> None:
            if specific is not None:
                await specific(w, e)
            if w.replaying:
                return  # a rebuild never sends past deliveries again
            await self._webhooks(w, e)
            if e.type in OFFICER_EVENTS:
                await self._emails(w, e)

        return handle

    # --------------------------------------------------------------------- deliveries

    def _record(self, w: Writer, *, delivery_id: str, channel: Channel, target: str,
                e: RecordedEvent, headers: dict[str, Any], body: bytes,
                subscription_id: str | None = None, recipient: str | None = None,
                status: DeliveryStatus = DeliveryStatus.PENDING, error: str | None = None) -> None:
        now = datetime.now(UTC)
        # one row per (event, recipient) by its derived id; nothing else in a batch writes it
        w.execute_unordered(
            f"INSERT INTO {self.s}.deliveries (id, channel, target, subscription_id, recipient, "
            "event_id, event_type, office, client_id, headers, body, status, next_attempt_at, "
            "last_error, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, "
            "$11, $12, $13, $14, $13) ON CONFLICT (id) DO NOTHING",
            delivery_id, channel.value, target, subscription_id, recipient, e.id, e.type,
            e.office, e.client_id, json.dumps(headers), body, status.value, now, error)

    async def _webhooks(self, w: Writer, e: RecordedEvent) -> None:
        # an office's active subscriptions are read once per batch, not once per event (a
        # read would also send the batch's buffered writes one event at a time)
        key = ("subscriptions", e.office)
        active = w.memo.get(key)
        if active is None:
            active = w.memo[key] = await w.fetch(
                f"SELECT id, data_level, event_types, created_at FROM {self.s}.subscriptions "
                "WHERE office = $1 AND status = 'ACTIVE' ORDER BY created_at, id", e.office)
        for sub in active:
            if e.type not in sub["event_types"] or sub["created_at"] > e.time:
                continue
            level = DataLevel(sub["data_level"])
            self._record(w, delivery_id=derived_id(e.id, "webhook", sub["id"]),
                         channel=Channel.WEBHOOK, target=f"subscription:{sub['id']}", e=e,
                         headers=attributes(e.headers, level), body=redact(e.type, e.plain_body, level),
                         subscription_id=sub["id"])

    async def _emails(self, w: Writer, e: RecordedEvent) -> None:
        client = w.memo.get(("contact", e.id))  # the client this very event registered
        if client is None:
            client = await w.fetchrow("SELECT * FROM {contacts} WHERE client_id = $1",
                                      e.client_id)
        if client is None:
            return
        data = json.loads(e.plain_body)
        message = officer_message(e.type, data, dict(client))
        if message is None:
            return
        officers = [client["officer_id"]] if client["officer_id"] else []
        if e.type == "ViolationRecorded" and data.get("category") == "KHUSUS":
            officers += [r["officer_id"] for r in await w.fetch(
                f"SELECT officer_id FROM {self.s}.officers WHERE office = $1 "
                "AND role = 'supervisor'", e.office)]
        subject, text = message
        # the address is looked up in this office's directory when the mail is sent, so a
        # corrected or added address counts, even on a retry
        for officer_id in dict.fromkeys(officers):
            self._record(
                w, delivery_id=derived_id(e.id, "email", officer_id), channel=Channel.EMAIL,
                target=f"officer:{e.office}:{officer_id}", e=e, recipient=officer_id,
                headers={"subject": subject, "officer_id": officer_id}, body=text.encode())

    # ---------------------------------------------------------------------- contacts

    async def _registered(self, w: Writer, e: RecordedEvent[registration.ClientRegistered]) -> None:
        x = e.data
        row = {"client_id": x.client_id, "office": x.office, "officer_id": x.officer_id,
               "full_name": x.person.full_name, "register_number": x.register_number,
               "program": x.program.value, "phone": x.person.phone, "is_child": x.is_child,
               "status": "ACTIVE"}
        w.execute("INSERT INTO {contacts} (client_id, office, officer_id, full_name, "
                  "register_number, program, phone, is_child, status) VALUES ($1, $2, $3, $4, "
                  "$5, $6, $7, $8, $9) ON CONFLICT DO NOTHING", *row.values())
        # the row as inserted, for this event's own e-mail: no read of what was just written
        # (the checkpoint applies each event once, so the insert above is its first)
        w.memo[("contact", e.id)] = row

    async def _assigned(self, w: Writer, e: RecordedEvent[registration.OfficerAssigned]) -> None:
        w.execute("UPDATE {contacts} SET officer_id = $2 WHERE client_id = $1",
                  e.client_id, e.data.officer_id)

    async def _corrected(self, w: Writer,
                         e: RecordedEvent[registration.ClientDetailsCorrected]) -> None:
        column = {"person.full_name": "full_name", "person.phone": "phone"}.get(e.data.field)
        if column:
            w.execute(f"UPDATE {{contacts}} SET {column} = $2 WHERE client_id = $1",
                      e.client_id, e.data.new_value)

    async def _left(self, w: Writer, e: RecordedEvent[Event]) -> None:
        w.execute("UPDATE {contacts} SET status = 'CLOSED' WHERE client_id = $1", e.client_id)

    async def _plan(self, w: Writer, e: RecordedEvent[supervision.ReportingPlanSet]) -> None:
        w.execute("UPDATE {contacts} SET interval_days = $2, next_due_on = $3 "
                  "WHERE client_id = $1", e.client_id, e.data.interval_days, e.data.next_due_on)

    async def _visit(self, w: Writer, e: RecordedEvent[supervision.VisitLogged]) -> None:
        if e.data.covers_due_on:
            w.execute("UPDATE {contacts} SET next_due_on = $2::date + interval_days "
                      "WHERE client_id = $1", e.client_id, e.data.covers_due_on)

    async def _missed(self, w: Writer, e: RecordedEvent[supervision.ReportMissed]) -> None:
        w.execute("UPDATE {contacts} SET next_due_on = $2::date + interval_days "
                  "WHERE client_id = $1", e.client_id, e.data.due_on)

    async def _erased(self, w: Writer, e: RecordedEvent[registration.PersonErased]) -> None:
        """The person is erased (UU 27/2022): their name and phone leave the contacts, and
        what was kept of messages about them goes; what was still to be sent is not sent."""
        cases = [c.client_id for c in e.data.cases]
        w.execute("UPDATE {contacts} SET full_name = '', phone = NULL "
                  "WHERE client_id = ANY($1::text[])", cases)
        w.execute(f"UPDATE {self.s}.deliveries SET body = ''::bytea, headers = $2::jsonb, "
                  "status = CASE WHEN status IN ('PENDING', 'RETRYING', 'SENDING') "
                  "THEN 'SKIPPED' ELSE status END, last_error = 'the person was erased' "
                  "WHERE client_id = ANY($1::text[])", cases, "{}")

    async def _ended(self, w: Writer, e: RecordedEvent[supervision.SupervisionEnded]) -> None:
        w.execute("UPDATE {contacts} SET status = 'CLOSED' WHERE client_id = $1", e.client_id)

