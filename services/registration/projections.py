"""Registration's read model: the office's clients, for search, lists and caseloads."""

from __future__ import annotations

from shared.events import RecordedEvent
from shared.office_time import office_date
from shared.projector import Projection, Writer

from .domain import (CHILD_PROGRAMS, AddressChanged, ClientDetailsCorrected, ClientRegistered,
                     ClientTransferred, OfficerAssigned, PersonErased, Program,
                     RegistrationClosed)

# ClientDetailsCorrected fields that a column of the read model shows
_COLUMNS = {
    "person.full_name": ("full_name", "text"),
    "person.birth_date": ("birth_date", "date"),
    "person.sex": ("sex", "text"),
    "person.phone": ("phone", "text"),
    "program": ("program", "text"),
    "period.start_on": ("period_start", "date"),
    "period.end_on": ("period_end", "date"),
}


class ClientDirectory(Projection):
    """Who are the office's clients, and who guides them."""

    name = "client_directory"
    version = 2  # 2: personal columns may be empty (a person erased), the `erased` flag
    contexts = ("registration",)
    tables = {"clients": """
        CREATE TABLE {table} (
            client_id       text PRIMARY KEY,
            office          text NOT NULL,
            register_number text NOT NULL,
            program         text NOT NULL,
            status          text NOT NULL,
            officer_id      text,
            full_name       text,
            nik             text,
            birth_date      date,
            sex             text NOT NULL,
            address         text,
            phone           text,
            is_child        boolean NOT NULL,
            period_start    date NOT NULL,
            period_end      date NOT NULL,
            registered_at   timestamptz NOT NULL,
            transferred_from_office text,
            transferred_from_client text,
            transferred_to_office   text,
            transferred_to_client   text,
            ended_on        date,               -- closed or transferred away
            erased          boolean NOT NULL DEFAULT false,
            version         integer NOT NULL
        );
        CREATE INDEX ON {table} (office, registered_at DESC, client_id DESC);
        CREATE INDEX ON {table} (office, officer_id, status);
        CREATE INDEX ON {table} (office, register_number);
        CREATE INDEX ON {table} (office, ended_on) WHERE NOT erased;
    """}

    def handlers(self):
        return {ClientRegistered: self.registered, OfficerAssigned: self.assigned,
                AddressChanged: self.moved, ClientDetailsCorrected: self.corrected,
                ClientTransferred: self.transferred, RegistrationClosed: self.closed,
                PersonErased: self.erased}

    async def registered(self, w: Writer, e: RecordedEvent[ClientRegistered]) -> None:
        d = e.data
        link = d.transferred_from
        w.execute(
            "INSERT INTO {clients} (client_id, office, register_number, program, status, "
            "officer_id, full_name, nik, birth_date, sex, address, phone, is_child, "
            "period_start, period_end, registered_at, transferred_from_office, "
            "transferred_from_client, version) VALUES ($1, $2, $3, $4, 'ACTIVE', $5, $6, $7, $8,"
            " $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT DO NOTHING",
            d.client_id, d.office, d.register_number, d.program.value, d.officer_id,
            d.person.full_name, d.person.nik, d.person.birth_date, d.person.sex.value,
            d.person.address, d.person.phone, d.is_child, d.period.start_on, d.period.end_on,
            d.registered_at, link.office if link else None, link.client_id if link else None,
            e.sequence)

    async def assigned(self, w: Writer, e: RecordedEvent[OfficerAssigned]) -> None:
        w.execute("UPDATE {clients} SET officer_id = $2, version = $3 WHERE client_id = $1",
                  e.client_id, e.data.officer_id, e.sequence)

    async def moved(self, w: Writer, e: RecordedEvent[AddressChanged]) -> None:
        w.execute("UPDATE {clients} SET address = $2, version = $3 WHERE client_id = $1",
                  e.client_id, e.data.address, e.sequence)

    async def corrected(self, w: Writer, e: RecordedEvent[ClientDetailsCorrected]) -> None:
        column = _COLUMNS.get(e.data.field)
        if column is None:
            w.execute("UPDATE {clients} SET version = $2 WHERE client_id = $1",
                      e.client_id, e.sequence)
            return
        name, kind = column
        # the value travels as text (events carry dates as ISO strings): cast from text
        w.execute(f"UPDATE {{clients}} SET {name} = $2::text::{kind}, version = $3 "
                  "WHERE client_id = $1", e.client_id,
                  None if e.data.new_value is None else str(e.data.new_value), e.sequence)
        if e.data.field == "program" and Program(e.data.new_value) in CHILD_PROGRAMS:
            w.execute("UPDATE {clients} SET is_child = true WHERE client_id = $1", e.client_id)

    async def transferred(self, w: Writer, e: RecordedEvent[ClientTransferred]) -> None:
        w.execute("UPDATE {clients} SET status = 'TRANSFERRED', transferred_to_office = $2, "
                  "transferred_to_client = $3, ended_on = $5, version = $4 "
                  "WHERE client_id = $1", e.client_id, e.data.to_office, e.data.new_client_id,
                  e.sequence, office_date(e.data.transferred_at))

    async def closed(self, w: Writer, e: RecordedEvent[RegistrationClosed]) -> None:
        w.execute("UPDATE {clients} SET status = 'CLOSED', ended_on = $3, version = $2 "
                  "WHERE client_id = $1", e.client_id, e.sequence, e.data.closed_on)


    async def erased(self, w: Writer, e: RecordedEvent[PersonErased]) -> None:
        """Only the non-personal facts stay: office, number, program, status, dates."""
        w.execute("UPDATE {clients} SET full_name = NULL, nik = NULL, birth_date = NULL, "
                  "address = NULL, phone = NULL, erased = true, version = $2 "
                  "WHERE client_id = $1", e.client_id, e.sequence)


class MonthlyReport(Projection):
    """How many clients did an office register, take in and hand over in a month, and how
    many were active at its end (laporan bulanan)? One row per client and office, dates in
    the office's calendar, counts only: no name, no NIK, no address."""

    name = "monthly_report"
    version = 1
    contexts = ("registration",)
    tables = {"report_clients": """
        CREATE TABLE {table} (
            client_id       text PRIMARY KEY,
            office          text NOT NULL,
            program         text NOT NULL,
            registered_on   date NOT NULL,
            transferred_in  boolean NOT NULL,
            left_on         date,
            left_reason     text,
            transferred_to  text
        );
        CREATE INDEX ON {table} (office, registered_on);
        CREATE INDEX ON {table} (office, left_on);
    """}

    def handlers(self):
        return {ClientRegistered: self.registered, ClientDetailsCorrected: self.corrected,
                ClientTransferred: self.transferred, RegistrationClosed: self.closed}

    async def registered(self, w: Writer, e: RecordedEvent[ClientRegistered]) -> None:
        x = e.data
        w.execute("INSERT INTO {report_clients} (client_id, office, program, registered_on, "
                  "transferred_in) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                  x.client_id, x.office, x.program.value, office_date(x.registered_at),
                  x.transferred_from is not None)

    async def corrected(self, w: Writer, e: RecordedEvent[ClientDetailsCorrected]) -> None:
        # a corrected program was wrong from the start: past months count the right one
        if e.data.field == "program":
            w.execute("UPDATE {report_clients} SET program = $2 WHERE client_id = $1",
                      e.client_id, str(e.data.new_value))

    async def transferred(self, w: Writer, e: RecordedEvent[ClientTransferred]) -> None:
        w.execute("UPDATE {report_clients} SET left_on = $2, left_reason = 'TRANSFERRED', "
                  "transferred_to = $3 WHERE client_id = $1 AND left_on IS NULL",
                  e.client_id, office_date(e.data.transferred_at), e.data.to_office)

    async def closed(self, w: Writer, e: RecordedEvent[RegistrationClosed]) -> None:
        w.execute("UPDATE {report_clients} SET left_on = $2, left_reason = $3 "
                  "WHERE client_id = $1 AND left_on IS NULL",
                  e.client_id, e.data.closed_on, e.data.reason)
