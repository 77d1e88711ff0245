"""Guidance read models: each open case with the facts its due items come from; the
office's month in counts."""

from __future__ import annotations

from shared.events import RecordedEvent
from shared.office_time import office_date
from shared.projector import Projection, Writer
from shared.web.reports import FACTS_TABLE, record_fact

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


STAGE_RANK = {d.Stage.AWAL: 1, d.Stage.LANJUTAN: 2, d.Stage.AKHIR: 3}


class MonthlyReport(Projection):
    """What did an office's guidance come to in a month (laporan bulanan)? The cases open at
    its end by program and stage, and the month's closures, revocations, litmas and TPP
    decisions, each on its date in the office's calendar. Counts only: no personal data.

    `report_facts` holds one row per counted fact: `kind` says what is counted, `key` the
    bar it counts toward (a closure's reason, a decision's subject)."""

    name = "monthly_report"
    version = 1
    contexts = ("guidance",)
    tables = {
        "report_cases": """
            CREATE TABLE {table} (
                client_id    text PRIMARY KEY,
                office       text NOT NULL,
                program      text NOT NULL,
                opened_on    date NOT NULL,
                closed_on    date,
                close_reason text
            );
            CREATE INDEX ON {table} (office, opened_on);
        """,
        # a stage is entered once (stages only move forward): the stage a case was in on a
        # day is the highest one entered by then
        "report_stages": """
            CREATE TABLE {table} (
                client_id text NOT NULL,
                stage     text NOT NULL,
                rank      integer NOT NULL,
                since_on  date NOT NULL,
                PRIMARY KEY (client_id, stage)
            );
        """,
        "report_facts": FACTS_TABLE,
    }

    def handlers(self):
        return {d.GuidanceOpened: self.opened, d.StageAdvanced: self.advanced,
                d.LitmasSubmitted: self.litmas, d.LitmasOverdue: self.overdue,
                d.TppDecisionRecorded: self.tpp, d.RevocationProposed: self.proposed,
                d.RevocationImposed: self.imposed, d.GuidanceClosed: self.closed}

    def _fact(self, w: Writer, e: RecordedEvent, kind: str, on: object, key: str) -> None:
        record_fact(w, e, kind, on, key)

    def _stage(self, w: Writer, e: RecordedEvent, stage: d.Stage, on: object) -> None:
        w.execute("INSERT INTO {report_stages} (client_id, stage, rank, since_on) "
                  "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                  e.client_id, stage.value, STAGE_RANK[stage], on)

    async def opened(self, w: Writer, e: RecordedEvent[d.GuidanceOpened]) -> None:
        x = e.data
        on = office_date(x.opened_at)
        w.execute("INSERT INTO {report_cases} (client_id, office, program, opened_on) "
                  "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                  x.client_id, x.office, x.program, on)
        self._stage(w, e, x.stage, on)

    async def advanced(self, w: Writer, e: RecordedEvent[d.StageAdvanced]) -> None:
        self._stage(w, e, e.data.to_stage, office_date(e.data.advanced_at))

    async def litmas(self, w: Writer, e: RecordedEvent[d.LitmasSubmitted]) -> None:
        on = office_date(e.data.submitted_at)
        self._fact(w, e, "litmas", on, e.data.purpose.value)
        if e.data.late:
            self._fact(w, e, "litmas_late", on, e.data.purpose.value)

    async def overdue(self, w: Writer, e: RecordedEvent[d.LitmasOverdue]) -> None:
        self._fact(w, e, "litmas_overdue", office_date(e.data.detected_at), "")

    async def tpp(self, w: Writer, e: RecordedEvent[d.TppDecisionRecorded]) -> None:
        # on the day the panel met, which is the month its decision belongs to
        self._fact(w, e, "tpp_subject", e.data.met_on, e.data.subject.value)
        self._fact(w, e, "tpp_outcome", e.data.met_on, e.data.outcome.value)

    async def proposed(self, w: Writer, e: RecordedEvent[d.RevocationProposed]) -> None:
        self._fact(w, e, "revocation", office_date(e.data.proposed_at), "PROPOSED")

    async def imposed(self, w: Writer, e: RecordedEvent[d.RevocationImposed]) -> None:
        self._fact(w, e, "revocation", office_date(e.data.imposed_at), "IMPOSED")

    async def closed(self, w: Writer, e: RecordedEvent[d.GuidanceClosed]) -> None:
        x = e.data
        self._fact(w, e, "closure", x.closed_on, x.reason.value)
        w.execute("UPDATE {report_cases} SET closed_on = $2, close_reason = $3 "
                  "WHERE client_id = $1", e.client_id, x.closed_on, x.reason.value)
