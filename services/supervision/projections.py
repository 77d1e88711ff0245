"""Supervision read models: the office's compliance board; the office's month in counts."""

from __future__ import annotations

from services.guidance.events import TppDecisionRecorded, TppSubject
from shared.events import RecordedEvent
from shared.office_time import office_date
from shared.projector import Projection, Writer
from shared.web.reports import FACTS_TABLE, record_fact

from . import domain as d


class ComplianceBoard(Projection):
    """Who is due to report, who missed, which violations await the TPP."""

    name = "compliance_board"
    version = 1
    contexts = ("supervision", "guidance")
    tables = {
        "board": """
            CREATE TABLE {table} (
                client_id          text PRIMARY KEY,
                office             text NOT NULL,
                officer_id         text,
                is_child           boolean NOT NULL,
                status             text NOT NULL,
                period_end         date NOT NULL,
                interval_days      integer,
                grace_days         integer,
                next_due_on        date,
                consecutive_missed integer NOT NULL DEFAULT 0,
                last_missed_on     date,
                last_contact_at    timestamptz,
                last_tpp_review_at timestamptz,
                version            integer NOT NULL
            );
            CREATE INDEX ON {table} (office, officer_id) WHERE status = 'ACTIVE';
            CREATE INDEX ON {table} (next_due_on) WHERE status = 'ACTIVE';
        """,
        "violations": """
            CREATE TABLE {table} (
                violation_id text PRIMARY KEY,
                client_id    text NOT NULL,
                category     text NOT NULL,
                code         text NOT NULL,
                recorded_at  timestamptz NOT NULL
            );
            CREATE INDEX ON {table} (client_id);
        """,
    }

    def handlers(self):
        return {d.SupervisionStarted: self.started, d.SupervisingOfficerAssigned: self.officer,
                d.ReportingPlanSet: self.plan, d.VisitLogged: self.visit,
                d.ReportMissed: self.missed, d.ViolationRecorded: self.violation,
                d.SupervisionEnded: self.ended, TppDecisionRecorded: self.tpp}

    async def started(self, w: Writer, e: RecordedEvent[d.SupervisionStarted]) -> None:
        x = e.data
        w.execute("INSERT INTO {board} (client_id, office, officer_id, is_child, status, "
                  "period_end, version) VALUES ($1, $2, $3, $4, 'ACTIVE', $5, $6) "
                  "ON CONFLICT DO NOTHING", x.client_id, x.office, x.officer_id, x.is_child,
                  x.period_end_on, e.sequence)

    def _set(self, w: Writer, e: RecordedEvent, assignments: str, *values) -> None:
        w.execute(f"UPDATE {{board}} SET {assignments}, version = $2 WHERE client_id = $1",
                  e.client_id, e.sequence, *values)

    async def officer(self, w: Writer, e: RecordedEvent[d.SupervisingOfficerAssigned]) -> None:
        self._set(w, e, "officer_id = $3", e.data.officer_id)

    async def plan(self, w: Writer, e: RecordedEvent[d.ReportingPlanSet]) -> None:
        self._set(w, e, "interval_days = $3, grace_days = $4, next_due_on = $5",
                  e.data.interval_days, e.data.grace_days, e.data.next_due_on)

    async def visit(self, w: Writer, e: RecordedEvent[d.VisitLogged]) -> None:
        if e.data.counts_as_report:
            self._set(w, e, "last_contact_at = greatest(last_contact_at, $3), "
                            "consecutive_missed = $5, next_due_on = "
                            "CASE WHEN $4::date IS NULL THEN next_due_on "
                            "ELSE $4::date + interval_days END",
                      e.data.occurred_at, e.data.covers_due_on, e.data.missed_in_a_row)
        else:
            self._set(w, e, "last_contact_at = greatest(last_contact_at, $3)",
                      e.data.occurred_at)

    async def missed(self, w: Writer, e: RecordedEvent[d.ReportMissed]) -> None:
        self._set(w, e, "consecutive_missed = $3, last_missed_on = $4, "
                        "next_due_on = $4::date + interval_days",
                  e.data.consecutive, e.data.due_on)

    async def violation(self, w: Writer, e: RecordedEvent[d.ViolationRecorded]) -> None:
        w.execute("INSERT INTO {violations} (violation_id, client_id, category, code, "
                  "recorded_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                  e.data.violation_id, e.client_id, e.data.category.value, e.data.code, e.time)
        self._set(w, e, "status = status")

    async def ended(self, w: Writer, e: RecordedEvent[d.SupervisionEnded]) -> None:
        self._set(w, e, "status = 'ENDED'")

    async def tpp(self, w: Writer, e: RecordedEvent[TppDecisionRecorded]) -> None:
        # a revocation review by the panel answers the violations recorded before it
        if e.data.subject is TppSubject.REVOCATION:
            w.execute("UPDATE {board} SET last_tpp_review_at = greatest(last_tpp_review_at, $2)"
                      " WHERE client_id = $1", e.client_id, e.time)


class MonthlyReport(Projection):
    """What did an office's supervision come to in a month (laporan bulanan)? Reports due,
    received and missed, visits (every contact) by kind and outcome, violations by category
    and code, each on its date in the office's calendar. Counts only: no personal data.

    A report is counted on the date it was due, so that the month's dues are received,
    missed or still pending; what is still pending comes from each client's schedule in
    `report_schedules` (the next due date, then every interval to the end of the period).
    `report_facts` holds one row per counted fact: `kind` says what is counted, `key` the
    bar it counts toward."""

    name = "monthly_report"
    version = 1
    contexts = ("supervision",)
    tables = {
        "report_schedules": """
            CREATE TABLE {table} (
                client_id     text PRIMARY KEY,
                office        text NOT NULL,
                status        text NOT NULL,
                period_end    date NOT NULL,
                interval_days integer,
                next_due_on   date
            );
            CREATE INDEX ON {table} (office) WHERE status = 'ACTIVE';
        """,
        "report_facts": FACTS_TABLE,
    }

    def handlers(self):
        return {d.SupervisionStarted: self.started, d.ReportingPlanSet: self.plan,
                d.VisitLogged: self.visit, d.ReportMissed: self.missed,
                d.ViolationRecorded: self.violation, d.SupervisionEnded: self.ended}

    def _fact(self, w: Writer, e: RecordedEvent, kind: str, on: object, key: str) -> None:
        record_fact(w, e, kind, on, key)

    async def started(self, w: Writer, e: RecordedEvent[d.SupervisionStarted]) -> None:
        x = e.data
        w.execute("INSERT INTO {report_schedules} (client_id, office, status, period_end) "
                  "VALUES ($1, $2, 'ACTIVE', $3) ON CONFLICT DO NOTHING",
                  x.client_id, x.office, x.period_end_on)

    async def plan(self, w: Writer, e: RecordedEvent[d.ReportingPlanSet]) -> None:
        w.execute("UPDATE {report_schedules} SET interval_days = $2, next_due_on = $3 "
                  "WHERE client_id = $1", e.client_id, e.data.interval_days,
                  e.data.next_due_on)

    async def visit(self, w: Writer, e: RecordedEvent[d.VisitLogged]) -> None:
        x = e.data
        on = office_date(x.occurred_at)
        self._fact(w, e, "visit_kind", on, x.kind.value)
        self._fact(w, e, "visit_outcome", on, x.outcome.value)
        if x.covers_due_on is not None:
            self._fact(w, e, "report", x.covers_due_on, "RECEIVED")
            w.execute("UPDATE {report_schedules} SET next_due_on = $2::date + interval_days "
                      "WHERE client_id = $1", e.client_id, x.covers_due_on)

    async def missed(self, w: Writer, e: RecordedEvent[d.ReportMissed]) -> None:
        self._fact(w, e, "report", e.data.due_on, "MISSED")
        w.execute("UPDATE {report_schedules} SET next_due_on = $2::date + interval_days "
                  "WHERE client_id = $1", e.client_id, e.data.due_on)

    async def violation(self, w: Writer, e: RecordedEvent[d.ViolationRecorded]) -> None:
        x = e.data
        self._fact(w, e, "violation_category", x.recorded_on, x.category.value)
        self._fact(w, e, "violation_code", x.recorded_on, x.code)

    async def ended(self, w: Writer, e: RecordedEvent[d.SupervisionEnded]) -> None:
        w.execute("UPDATE {report_schedules} SET status = 'ENDED' WHERE client_id = $1",
                  e.client_id)
