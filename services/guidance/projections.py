"""Guidance read model: each open case with the facts its due items come from."""

from __future__ import annotations

from shared.events import RecordedEvent
from shared.projector import Projection, Writer

from . import domain as d


class CaseBoard(Projection):
    """Which cases does each officer guide, and what is due on them (worklists, sweeps)."""

    name = "case_board"
    version = 1
    contexts = ("guidance",)
    tables = {"cases": """
        CREATE TABLE {table} (
            client_id          text PRIMARY KEY,
            office             text NOT NULL,
            officer_id         text,
            is_child           boolean NOT NULL,
            program            text NOT NULL,
            status             text NOT NULL,
            stage              text NOT NULL,
            period_start       date NOT NULL,
            period_end         date NOT NULL,
            litmas_due_at      timestamptz,
            litmas_submitted   boolean NOT NULL DEFAULT false,
            litmas_overdue     boolean NOT NULL DEFAULT false,
            program_stages     text[] NOT NULL DEFAULT '{{}}',
            review_dates       date[] NOT NULL,
            tpp_met_on         date[] NOT NULL DEFAULT '{{}}',
            revocation_pending boolean NOT NULL DEFAULT false,
            version            integer NOT NULL
        );
        CREATE INDEX ON {table} (office, officer_id) WHERE status = 'OPEN';
        CREATE INDEX ON {table} (litmas_due_at)
            WHERE status = 'OPEN' AND NOT litmas_submitted AND NOT litmas_overdue;
    """}

    def handlers(self):
        return {d.GuidanceOpened: self.opened, d.CaseOfficerAssigned: self.officer,
                d.LitmasRequested: self.requested, d.LitmasSubmitted: self.litmas,
                d.LitmasOverdue: self.overdue, d.TppDecisionRecorded: self.tpp,
                d.ProgramDrafted: self.program, d.StageAdvanced: self.advanced,
                d.RevocationProposed: self.proposed, d.RevocationImposed: self.imposed,
                d.GuidanceClosed: self.closed}

    async def opened(self, w: Writer, e: RecordedEvent[d.GuidanceOpened]) -> None:
        x = e.data
        w.execute("INSERT INTO {cases} (client_id, office, officer_id, is_child, program, "
                  "status, stage, period_start, period_end, litmas_due_at, review_dates, "
                  "version) VALUES ($1, $2, $3, $4, $5, 'OPEN', $6, $7, $8, $9, $10, $11) "
                  "ON CONFLICT DO NOTHING",
                  x.client_id, x.office, x.officer_id, x.is_child, x.program, x.stage.value,
                  x.period_start_on, x.period_end_on, x.litmas_due_at, x.review_dates,
                  e.sequence)

    def _set(self, w: Writer, e: RecordedEvent, assignments: str, *values) -> None:
        w.execute(f"UPDATE {{cases}} SET {assignments}, version = $2 WHERE client_id = $1",
                  e.client_id, e.sequence, *values)

    async def officer(self, w: Writer, e: RecordedEvent[d.CaseOfficerAssigned]) -> None:
        self._set(w, e, "officer_id = $3", e.data.officer_id)

    async def requested(self, w: Writer, e: RecordedEvent[d.LitmasRequested]) -> None:
        self._set(w, e, "litmas_due_at = $3", e.data.due_at)

    async def litmas(self, w: Writer, e: RecordedEvent[d.LitmasSubmitted]) -> None:
        self._set(w, e, "litmas_submitted = true")

    async def overdue(self, w: Writer, e: RecordedEvent[d.LitmasOverdue]) -> None:
        self._set(w, e, "litmas_overdue = true")

    async def tpp(self, w: Writer, e: RecordedEvent[d.TppDecisionRecorded]) -> None:
        self._set(w, e, "tpp_met_on = array_append(tpp_met_on, $3)", e.data.met_on)

    async def program(self, w: Writer, e: RecordedEvent[d.ProgramDrafted]) -> None:
        self._set(w, e, "program_stages = array(SELECT DISTINCT unnest("
                        "array_append(program_stages, $3)))", e.data.stage.value)

    async def advanced(self, w: Writer, e: RecordedEvent[d.StageAdvanced]) -> None:
        self._set(w, e, "stage = $3", e.data.to_stage.value)

    async def proposed(self, w: Writer, e: RecordedEvent[d.RevocationProposed]) -> None:
        self._set(w, e, "revocation_pending = true")

    async def imposed(self, w: Writer, e: RecordedEvent[d.RevocationImposed]) -> None:
        self._set(w, e, "revocation_pending = false")

    async def closed(self, w: Writer, e: RecordedEvent[d.GuidanceClosed]) -> None:
        self._set(w, e, "status = 'CLOSED'")
