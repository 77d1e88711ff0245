"""Supervision (pengawasan): reporting plans, contacts, missed reports and violations.

Pure: no IO, no clock, no random ids; time and ids arrive on the commands.

Words: *wajib lapor* is the client's duty to report to the office on a schedule the officer
(PK) sets (default monthly, with a grace of 3 days); a *kunjungan* is a visit by the
officer (home, workplace); a *pelanggaran* is a violation, *UMUM* (general: a new offence)
or *KHUSUS* (specific: unrest, three missed reports in a row, an unreported move, not
following the program). Three consecutive missed reports record a KHUSUS violation and ask
the review panel (TPP) to look at the case; nothing is ever revoked automatically.

Reporting windows partition time: the report due on `d` may come in the window
`(d - interval + grace, d + grace]`. A report in the window covers `d`; a due date whose
window closed without one is missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from shared.decider import Decider
from shared.errors import DomainConflict, DomainError
from shared.events import Event
from shared.ids import derived_id
from shared.office_time import office_date

from .events import (Category, ContactKind, Outcome, ReportingPlanSet, ReportMissed, Source,
                     SupervisingOfficerAssigned, SupervisionEnded, SupervisionStarted,
                     TppReviewRequested, ViolationRecorded, VisitLogged)

DEFAULT_INTERVAL_DAYS = 30
DEFAULT_GRACE_DAYS = 3
MISSES_FOR_VIOLATION = 3
REPORTS = frozenset({ContactKind.LAPOR_DIRI, ContactKind.LAPOR_JARAK_JAUH})

# a report counts toward wajib lapor unless the client was not there to make it
REPORTING_OUTCOMES = frozenset({Outcome.MET_COMPLIED, Outcome.MET_FAILED_TO_COMPLY,
                                Outcome.ACCEPTABLE_ABSENCE})

VIOLATION_CODES = {
    Category.UMUM: {"TERSANGKA": "named a suspect of a new offence",
                    "TERPIDANA": "convicted of a new offence"},
    Category.KHUSUS: {"MERESAHKAN_MASYARAKAT": "caused unrest in the community",
                      "WAJIB_LAPOR_3X": "three consecutive missed reports",
                      "PINDAH_TANPA_LAPOR": "moved without reporting",
                      "TIDAK_MENGIKUTI_PROGRAM": "did not follow the guidance program"},
}


class Status(StrEnum):
    NEW = "NEW"
    ACTIVE = "ACTIVE"
    ENDED = "ENDED"


# ------------------------------------------------------------------------------ commands


@dataclass(frozen=True)
class StartSupervision:
    client_id: str
    office: str
    program: str
    officer_id: str | None
    is_child: bool
    period_start_on: date
    period_end_on: date
    at: datetime


@dataclass(frozen=True)
class FollowOfficer:
    officer_id: str


@dataclass(frozen=True)
class SetPlan:
    interval_days: int
    grace_days: int
    remote_allowed: bool
    first_due_on: date | None
    by: str
    today: date


@dataclass(frozen=True)
class LogVisit:
    visit_id: str
    kind: ContactKind
    occurred_at: datetime
    outcome: Outcome
    notes: str
    remote_reason: str | None
    by: str
    now: datetime
    violation_id: str  # used if the visit finds a violation


@dataclass(frozen=True)
class RecordViolation:
    violation_id: str
    category: Category
    code: str
    notes: str
    by: str
    today: date


@dataclass(frozen=True)
class SweepMissedReports:
    today: date


@dataclass(frozen=True)
class EndSupervision:
    reason: str
    ended_on: date


# --------------------------------------------------------------------------------- state


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)
    interval_days: int
    grace_days: int
    remote_allowed: bool


class Supervision(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Status = Status.NEW
    client_id: str = ""
    officer_id: str | None = None
    is_child: bool = False
    period_start_on: date | None = None
    period_end_on: date | None = None
    plan: Plan | None = None
    next_due_on: date | None = None
    settled_through: date | None = None  # the latest due date reported or missed
    # the current run of consecutive misses, as the dates their windows opened: a report
    # breaks the run for the misses whose window opened before the report was made (a
    # report entered late, from the paper registers, leaves the misses after it standing)
    missed_run: tuple[date, ...] = ()

    @property
    def consecutive_missed(self) -> int:
        return len(self.missed_run)


def evolve(state: Supervision, event: Event) -> Supervision:
    match event:
        case SupervisionStarted():
            return Supervision(status=Status.ACTIVE, client_id=event.client_id,
                               officer_id=event.officer_id,
                               is_child=event.is_child, period_start_on=event.period_start_on,
                               period_end_on=event.period_end_on)
        case SupervisingOfficerAssigned(officer_id=officer):
            return state.model_copy(update={"officer_id": officer})
        case ReportingPlanSet():
            return state.model_copy(update={
                "plan": Plan(interval_days=event.interval_days, grace_days=event.grace_days,
                             remote_allowed=event.remote_allowed),
                "next_due_on": event.next_due_on})
        case VisitLogged(counts_as_report=True, covers_due_on=covered):
            on = office_date(event.occurred_at)
            # a report entered late from the paper registers does not break the misses
            # that came after it
            update: dict = {"missed_run": tuple(o for o in state.missed_run if o >= on)}
            if covered is not None:
                update.update(settled_through=covered,
                              next_due_on=covered + timedelta(days=state.plan.interval_days))
            return state.model_copy(update=update)
        case ReportMissed(due_on=due, grace_days=grace):
            opened = due - timedelta(days=state.plan.interval_days - grace)
            return state.model_copy(update={
                "settled_through": due, "missed_run": (*state.missed_run, opened),
                "next_due_on": due + timedelta(days=state.plan.interval_days)})
        case SupervisionEnded():
            return state.model_copy(update={"status": Status.ENDED})
    return state


# ---------------------------------------------------------------------------- decisions


def _require_active(state: Supervision) -> None:
    if state.status is Status.NEW:
        raise DomainError("no such supervision case", rule="not_found", status=404)
    if state.status is Status.ENDED:
        raise DomainConflict("supervision has ended; the case is read-only", rule="ended")


def decide(cmd: object, state: Supervision) -> list[Event]:
    match cmd:
        case StartSupervision():
            if state.status is not Status.NEW:
                return []
            return [SupervisionStarted(
                client_id=cmd.client_id, office=cmd.office, program=cmd.program,
                officer_id=cmd.officer_id, is_child=cmd.is_child,
                period_start_on=cmd.period_start_on, period_end_on=cmd.period_end_on,
                started_at=cmd.at)]
        case EndSupervision(reason=reason, ended_on=ended_on):
            if state.status is not Status.ACTIVE:
                return []
            return [SupervisionEnded(reason=reason, ended_on=ended_on)]
        case SweepMissedReports(today=today):
            if state.status is not Status.ACTIVE:
                return []
            return _missed(state, through=today)
    _require_active(state)
    match cmd:
        case FollowOfficer(officer_id=officer):
            return [] if officer == state.officer_id else [
                SupervisingOfficerAssigned(officer_id=officer)]
        case SetPlan():
            return [_plan(cmd, state)]
        case LogVisit():
            return _visit(cmd, state)
        case RecordViolation():
            _check_code(cmd.category, cmd.code)
            return [ViolationRecorded(violation_id=cmd.violation_id, category=cmd.category,
                                      code=cmd.code, source=Source.OFFICER, source_id=None,
                                      notes=cmd.notes, recorded_by=cmd.by,
                                      recorded_on=cmd.today)]
    raise TypeError(f"not a supervision command: {cmd!r}")


def _plan(cmd: SetPlan, state: Supervision) -> ReportingPlanSet:
    if not 1 <= cmd.interval_days <= 180:
        raise DomainError("the reporting interval must be 1 to 180 days",
                          field="interval_days", rule="interval_range")
    if not 0 <= cmd.grace_days < cmd.interval_days:
        raise DomainError("the grace period must be shorter than the interval",
                          field="grace_days", rule="grace_range")
    assert state.period_start_on is not None and state.period_end_on is not None
    first = cmd.first_due_on or (
        state.next_due_on or state.period_start_on + timedelta(days=cmd.interval_days))
    if first > state.period_end_on and (cmd.first_due_on or state.next_due_on is None):
        raise DomainError(f"the first report cannot fall after the guidance period ends "
                          f"({state.period_end_on})", field="first_due_on", rule="after_period")
    if first < state.period_start_on:
        raise DomainError(f"the first report cannot fall before supervision starts "
                          f"({state.period_start_on})", field="first_due_on",
                          rule="before_period")
    # due dates already reported or missed stay settled: a new plan starts after them
    next_due = first
    if state.settled_through is not None:
        while next_due <= state.settled_through:
            next_due += timedelta(days=cmd.interval_days)
    return ReportingPlanSet(interval_days=cmd.interval_days, grace_days=cmd.grace_days,
                            remote_allowed=cmd.remote_allowed, first_due_on=first,
                            next_due_on=next_due, set_by=cmd.by)


def _missed(state: Supervision, through: date) -> list[Event]:
    """Every due date whose window closed before `through` without a report, in order; the
    third consecutive miss (and every third after) records a KHUSUS violation and asks the
    TPP to review. Nothing is revoked."""
    if state.plan is None or state.next_due_on is None or state.period_end_on is None:
        return []
    events: list[Event] = []
    due, count = state.next_due_on, state.consecutive_missed
    grace, interval = timedelta(days=state.plan.grace_days), timedelta(days=state.plan.interval_days)
    while due + grace < through and due <= state.period_end_on:
        count += 1
        events.append(ReportMissed(due_on=due, grace_days=state.plan.grace_days,
                                   consecutive=count, detected_on=through))
        if count % MISSES_FOR_VIOLATION == 0:
            violation_id = derived_id(state.client_id, "missed-reports-violation", due)
            events.append(ViolationRecorded(
                violation_id=violation_id, category=Category.KHUSUS, code="WAJIB_LAPOR_3X",
                source=Source.MISSED_REPORTS, source_id=due.isoformat(),
                notes=f"{count} consecutive reports missed, the last due on {due}",
                recorded_by="system", recorded_on=through))
            events.append(TppReviewRequested(
                reason=f"{count} consecutive missed reports", violation_id=violation_id,
                requested_on=through))
        due += interval
    return events


def _visit(cmd: LogVisit, state: Supervision) -> list[Event]:
    if cmd.occurred_at > cmd.now:
        raise DomainError("a visit cannot be logged before it happens", field="occurred_at",
                          rule="date_future")
    on = office_date(cmd.occurred_at)
    assert state.period_start_on is not None and state.period_end_on is not None
    if not state.period_start_on <= on <= state.period_end_on:
        raise DomainError(f"the visit lies outside the guidance period "
                          f"({state.period_start_on} to {state.period_end_on})",
                          field="occurred_at", rule="outside_period")
    if cmd.kind is ContactKind.LAPOR_JARAK_JAUH:
        if not (state.plan and state.plan.remote_allowed):
            raise DomainError("remote reporting is not allowed in this client's plan",
                              field="kind", rule="remote_not_allowed")
        if not (cmd.remote_reason or "").strip():
            raise DomainError("a remote report needs a recorded reason", field="remote_reason",
                              rule="remote_reason_required")
    counts = cmd.kind in REPORTS and cmd.outcome in REPORTING_OUTCOMES
    # due dates whose windows closed before this visit are missed first, in order
    events: list[Event] = _missed(state, through=on) if counts else []
    after = state
    for e in events:
        after = evolve(after, e)
    covered = None
    if counts and after.plan and after.next_due_on and state.period_end_on and \
            after.next_due_on <= state.period_end_on:
        grace = timedelta(days=after.plan.grace_days)
        window_opens = after.next_due_on - timedelta(days=after.plan.interval_days) + grace
        if window_opens < on <= after.next_due_on + grace:
            covered = after.next_due_on
    standing = (sum(1 for o in after.missed_run if o >= on) if counts
                else after.consecutive_missed)
    events.append(VisitLogged(visit_id=cmd.visit_id, kind=cmd.kind,
                              occurred_at=cmd.occurred_at, outcome=cmd.outcome,
                              notes=cmd.notes, remote_reason=cmd.remote_reason,
                              logged_by=cmd.by, counts_as_report=counts,
                              covers_due_on=covered, missed_in_a_row=standing))
    if cmd.outcome is Outcome.MOVED_UNREPORTED:
        events.append(ViolationRecorded(
            violation_id=cmd.violation_id, category=Category.KHUSUS, code="PINDAH_TANPA_LAPOR",
            source=Source.VISIT, source_id=cmd.visit_id,
            notes="the client moved without reporting (found on a visit)", recorded_by=cmd.by,
            recorded_on=on))
    return events


def _check_code(category: Category, code: str) -> None:
    codes = VIOLATION_CODES[category]
    if code not in codes:
        raise DomainError(f"{code} is not a {category} violation; {category} codes: "
                          f"{', '.join(codes)}", field="code", rule="violation_code")


def identify(client_id: str):
    """Ids of facts that exist once, whoever records them (see CommandRunner.run)."""

    def event_id(event: Event) -> str | None:
        match event:
            case ReportMissed(due_on=due):
                return derived_id(client_id, "report-missed", due)
            case ViolationRecorded(source=Source.MISSED_REPORTS, violation_id=vid):
                return derived_id(client_id, "violation", vid)
            case TppReviewRequested(violation_id=vid):
                return derived_id(client_id, "tpp-review", vid)
        return None

    return event_id


# the context's decider: the services run their commands with it, the audit folds with it
DECIDER = Decider(Supervision(), decide, evolve)
