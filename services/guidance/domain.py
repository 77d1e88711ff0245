"""Guidance (pembimbingan): the three-stage path, litmas, TPP decisions and closure.

Pure: no IO, no clock, no random ids; time and ids arrive on the commands.

Words: the *litmas* (penelitian kemasyarakatan) is the social-inquiry report that grounds
guidance; the *TPP* (Tim Pengamat Pemasyarakatan) is the office's review panel, whose
recorded decisions every stage change, revocation and transfer rests on. Guidance runs
through *tahap awal* (AWAL), *tahap lanjutan* (LANJUTAN) and *tahap akhir* (AKHIR), each
with its own program, and ends with a closing letter signed by the head of the office
(Kepala Bapas).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from shared.decider import Decider
from shared.errors import DomainConflict, DomainError
from shared.events import Event

from .events import (Activity, Approach, CaseOfficerAssigned, CloseReason, GuidanceClosed,
                     GuidanceKind, GuidanceOpened, GuidanceSessionHeld, LitmasOverdue,
                     LitmasPurpose, LitmasRequested, LitmasSubmitted, Participant, ProgramDrafted,
                     RevocationImposed, RevocationProposed, RiskLevel, Stage, StageAdvanced,
                     TppDecisionRecorded, TppOutcome, TppSubject)

NEXT_STAGE = {Stage.AWAL: Stage.LANJUTAN, Stage.LANJUTAN: Stage.AKHIR}
STAGE_NAMES = {Stage.AWAL: "tahap awal", Stage.LANJUTAN: "tahap lanjutan",
               Stage.AKHIR: "tahap akhir"}


class Status(StrEnum):
    NEW = "NEW"
    OPEN = "OPEN"
    CLOSED = "CLOSED"


# ------------------------------------------------------------------------------ commands


@dataclass(frozen=True)
class OpenGuidance:
    client_id: str
    office: str
    program: str
    period_start_on: date
    period_end_on: date
    officer_id: str | None
    is_child: bool
    at: datetime
    policy: Policy
    transferred_from: dict[str, str] | None = None


@dataclass(frozen=True)
class FollowOfficer:
    officer_id: str
    at: datetime
    policy: Policy


@dataclass(frozen=True)
class SubmitLitmas:
    purpose: LitmasPurpose
    risk_level: RiskLevel
    needs: tuple[str, ...]
    recommendation: str
    summary: str
    by: str
    at: datetime


@dataclass(frozen=True)
class MarkLitmasOverdue:
    at: datetime


@dataclass(frozen=True)
class RecordTppDecision:
    decision_id: str
    subject: TppSubject
    outcome: TppOutcome
    met_on: date
    members: tuple[str, ...]
    notes: str
    by: str
    today: date


@dataclass(frozen=True)
class DraftProgram:
    program_id: str
    stage: Stage
    activities: tuple[Activity, ...]
    by: str


@dataclass(frozen=True)
class HoldSession:
    session_id: str
    kind: GuidanceKind
    approach: Approach
    held_on: date
    participants: tuple[Participant, ...]
    notes: str
    today: date
    group_id: str | None = None


@dataclass(frozen=True)
class AdvanceStage:
    to_stage: Stage
    tpp_decision_id: str
    at: datetime


@dataclass(frozen=True)
class ProposeRevocation:
    tpp_decision_id: str
    violation_ids: tuple[str, ...]
    by: str
    at: datetime


@dataclass(frozen=True)
class ImposeRevocation:
    by: str
    at: datetime


@dataclass(frozen=True)
class CloseGuidance:
    reason: CloseReason
    closed_on: date | None
    letter_number: str | None
    by: str
    today: date
    transferred_to: dict[str, str] | None = None


@dataclass(frozen=True)
class Policy:
    """The configurable rules of an office (DOMAIN: no single national figure)."""

    litmas_days: int = 7          # reintegration programs: days from PK assignment
    diversion_litmas_hours: int = 72
    review_fractions: tuple[float, ...] = (1 / 3, 2 / 3)

    def litmas_due(self, program: str, requested_at: datetime) -> datetime:
        if program == "DIVERSI":
            return requested_at + timedelta(hours=self.diversion_litmas_hours)
        return requested_at + timedelta(days=self.litmas_days)

    def review_dates(self, start: date, end: date) -> list[date]:
        days = (end - start).days
        return [start + timedelta(days=round(days * f)) for f in self.review_fractions]


# --------------------------------------------------------------------------------- state


@dataclass(frozen=True)
class Decision:
    subject: TppSubject
    outcome: TppOutcome
    used: bool = False


class Case(BaseModel):
    """What the guidance decisions need to know of a case."""

    model_config = ConfigDict(frozen=True)

    status: Status = Status.NEW
    program: str = ""
    period_end_on: date | None = None
    officer_id: str | None = None
    is_child: bool = False
    stage: Stage = Stage.AWAL
    litmas_due_at: datetime | None = None
    litmas_submitted: bool = False
    litmas_overdue_marked: bool = False
    programs: frozenset[Stage] = frozenset()
    decisions: dict[str, Decision] = {}
    revocation_proposed: bool = False
    revocation_imposed: bool = False
    closed_reason: CloseReason | None = None


def evolve(state: Case, event: Event) -> Case:
    match event:
        case GuidanceOpened():
            return Case(status=Status.OPEN, program=event.program,
                        period_end_on=event.period_end_on, officer_id=event.officer_id,
                        is_child=event.is_child, stage=event.stage,
                        litmas_due_at=event.litmas_due_at)
        case CaseOfficerAssigned(officer_id=officer):
            return state.model_copy(update={"officer_id": officer})
        case LitmasRequested(due_at=due):
            return state.model_copy(update={"litmas_due_at": due})
        case LitmasSubmitted():
            return state.model_copy(update={"litmas_submitted": True})
        case LitmasOverdue():
            return state.model_copy(update={"litmas_overdue_marked": True})
        case TppDecisionRecorded(decision_id=did, subject=subject, outcome=outcome):
            return state.model_copy(update={
                "decisions": {**state.decisions, did: Decision(subject, outcome)}})
        case ProgramDrafted(stage=stage):
            return state.model_copy(update={"programs": state.programs | {stage}})
        case StageAdvanced(to_stage=to, tpp_decision_id=did):
            used = {**state.decisions, did: _used(state.decisions[did])}
            return state.model_copy(update={"stage": to, "decisions": used})
        case RevocationProposed(tpp_decision_id=did):
            used = {**state.decisions, did: _used(state.decisions[did])}
            return state.model_copy(update={"revocation_proposed": True, "decisions": used})
        case RevocationImposed():
            return state.model_copy(update={"revocation_imposed": True})
        case GuidanceClosed(reason=reason):
            return state.model_copy(update={"status": Status.CLOSED, "closed_reason": reason})
    return state


def _used(decision: Decision) -> Decision:
    return Decision(decision.subject, decision.outcome, used=True)


# ---------------------------------------------------------------------------- decisions


@dataclass
class Missing:
    """Preconditions that do not hold, each named for the officer."""

    reasons: list[tuple[str, str, str]] = field(default_factory=list)  # (field, rule, words)

    def add(self, field_: str, rule: str, words: str) -> None:
        self.reasons.append((field_, rule, words))

    def raise_if_any(self, headline: str) -> None:
        if self.reasons:
            raise DomainError(f"{headline}: " + "; ".join(w for _, _, w in self.reasons),
                              field=self.reasons[0][0], rule=self.reasons[0][1],
                              extra={"missing": [{"field": f, "rule": r, "message": w}
                                                 for f, r, w in self.reasons]})


def _require_open(state: Case) -> None:
    if state.status is Status.NEW:
        raise DomainError("no such guidance case", rule="not_found", status=404)
    if state.status is Status.CLOSED:
        raise DomainConflict(f"guidance was closed ({state.closed_reason}); the case is "
                             "read-only", rule="closed")


def decide(cmd: object, state: Case) -> list[Event]:
    match cmd:
        case OpenGuidance():
            return _open(cmd, state)
    _require_open(state)
    match cmd:
        case FollowOfficer(officer_id=officer, at=at, policy=policy):
            if officer == state.officer_id:
                return []
            events: list[Event] = [CaseOfficerAssigned(officer_id=officer, assigned_at=at)]
            if state.litmas_due_at is None and not state.litmas_submitted:
                events.append(LitmasRequested(requested_at=at,
                                              due_at=policy.litmas_due(state.program, at)))
            return events
        case SubmitLitmas():
            late = state.litmas_overdue_marked or (
                state.litmas_due_at is not None and cmd.at > state.litmas_due_at)
            return [LitmasSubmitted(purpose=cmd.purpose, risk_level=cmd.risk_level,
                                    needs=list(cmd.needs), recommendation=cmd.recommendation,
                                    summary=cmd.summary, submitted_by=cmd.by,
                                    submitted_at=cmd.at, late=late)]
        case MarkLitmasOverdue(at=at):
            if (state.litmas_submitted or state.litmas_overdue_marked
                    or state.litmas_due_at is None or at < state.litmas_due_at):
                return []
            return [LitmasOverdue(due_at=state.litmas_due_at, officer_id=state.officer_id,
                                  detected_at=at)]
        case RecordTppDecision():
            if cmd.decision_id in state.decisions:
                raise DomainConflict("this decision is already recorded", rule="duplicate")
            if cmd.met_on > cmd.today:
                raise DomainError("the TPP cannot have met in the future", field="met_on",
                                  rule="date_future")
            return [TppDecisionRecorded(decision_id=cmd.decision_id, subject=cmd.subject,
                                        outcome=cmd.outcome, met_on=cmd.met_on,
                                        members=list(cmd.members), notes=cmd.notes,
                                        recorded_by=cmd.by)]
        case DraftProgram(stage=stage):
            if stage is not state.stage:
                raise DomainError(f"the case is in {STAGE_NAMES[state.stage]}; a program is "
                                  f"drawn up for the current stage, not {STAGE_NAMES[stage]}",
                                  field="stage", rule="program_stage")
            if not cmd.activities:
                raise DomainError("a program needs at least one activity", field="activities",
                                  rule="program_empty")
            return [ProgramDrafted(program_id=cmd.program_id, stage=stage,
                                   activities=list(cmd.activities), drafted_by=cmd.by)]
        case HoldSession():
            if cmd.held_on > cmd.today:
                raise DomainError("a session cannot be recorded before it is held",
                                  field="held_on", rule="date_future")
            return [GuidanceSessionHeld(session_id=cmd.session_id, kind=cmd.kind,
                                        approach=cmd.approach, held_on=cmd.held_on,
                                        participants=list(cmd.participants), notes=cmd.notes,
                                        stage=state.stage, group_id=cmd.group_id)]
        case AdvanceStage():
            return _advance(cmd, state)
        case ProposeRevocation():
            missing = Missing()
            _approved(state, cmd.tpp_decision_id, TppSubject.REVOCATION, missing)
            if not cmd.violation_ids:
                missing.add("violation_ids", "violations_required",
                            "a revocation rests on recorded violations")
            if state.revocation_proposed:
                raise DomainConflict("a revocation is already proposed", rule="already_proposed")
            missing.raise_if_any("the revocation cannot be proposed")
            return [RevocationProposed(tpp_decision_id=cmd.tpp_decision_id,
                                       violation_ids=list(cmd.violation_ids),
                                       proposed_by=cmd.by, proposed_at=cmd.at)]
        case ImposeRevocation():
            if not state.revocation_proposed:
                raise DomainError("no revocation has been proposed on a TPP recommendation",
                                  field="action", rule="not_proposed")
            if state.revocation_imposed:
                raise DomainConflict("the revocation is already imposed", rule="already_imposed")
            return [RevocationImposed(imposed_by=cmd.by, imposed_at=cmd.at)]
        case CloseGuidance():
            return _close(cmd, state)
    raise TypeError(f"not a guidance command: {cmd!r}")


def _open(cmd: OpenGuidance, state: Case) -> list[Event]:
    if state.status is not Status.NEW:
        return []  # opened already: a repeated reaction changes nothing
    requested = cmd.at if cmd.officer_id else None
    return [GuidanceOpened(
        client_id=cmd.client_id, office=cmd.office, program=cmd.program,
        period_start_on=cmd.period_start_on, period_end_on=cmd.period_end_on,
        officer_id=cmd.officer_id, is_child=cmd.is_child, stage=Stage.AWAL,
        litmas_requested_at=requested,
        litmas_due_at=cmd.policy.litmas_due(cmd.program, requested) if requested else None,
        review_dates=cmd.policy.review_dates(cmd.period_start_on, cmd.period_end_on),
        opened_at=cmd.at, transferred_from=cmd.transferred_from)]


def _approved(state: Case, decision_id: str, subject: TppSubject, missing: Missing) -> None:
    decision = state.decisions.get(decision_id)
    if decision is None:
        missing.add("tpp_decision_id", "tpp_decision_unknown",
                    f"no TPP decision {decision_id} is recorded for this case")
    elif decision.subject is not subject:
        missing.add("tpp_decision_id", "tpp_decision_subject",
                    f"TPP decision {decision_id} is about {decision.subject}, not {subject}")
    elif decision.outcome is not TppOutcome.APPROVED:
        missing.add("tpp_decision_id", "tpp_decision_not_approved",
                    f"TPP decision {decision_id} was {decision.outcome}, not APPROVED")
    elif decision.used:
        missing.add("tpp_decision_id", "tpp_decision_used",
                    f"TPP decision {decision_id} was already acted on")


def _advance(cmd: AdvanceStage, state: Case) -> list[Event]:
    expected = NEXT_STAGE.get(state.stage)
    if cmd.to_stage is not expected:
        where = STAGE_NAMES[state.stage]
        raise DomainError(
            f"the case is in {where}; it can only move to "
            f"{STAGE_NAMES[expected] if expected else 'closure'}, one stage at a time",
            field="to_stage", rule="stage_order")
    missing = Missing()
    if state.stage is Stage.AWAL and not state.litmas_submitted:
        missing.add("litmas", "litmas_missing", "no litmas has been submitted")
    if state.stage not in state.programs:
        missing.add("program", "program_missing",
                    f"no guidance program for {STAGE_NAMES[state.stage]}")
    _approved(state, cmd.tpp_decision_id, TppSubject.STAGE, missing)
    missing.raise_if_any(f"{STAGE_NAMES[state.stage]} cannot advance")
    return [StageAdvanced(from_stage=state.stage, to_stage=cmd.to_stage,
                          tpp_decision_id=cmd.tpp_decision_id, advanced_at=cmd.at)]


def _close(cmd: CloseGuidance, state: Case) -> list[Event]:
    missing = Missing()
    closed_on = cmd.closed_on
    match cmd.reason:
        case CloseReason.COMPLETED:
            if state.stage is not Stage.AKHIR:
                missing.add("reason", "stage_not_final",
                            f"the case is in {STAGE_NAMES[state.stage]}, not tahap akhir")
            if closed_on is None:
                missing.add("closed_on", "date_required", "the closing date is required")
            elif state.period_end_on and (closed_on < state.period_end_on
                                          or cmd.today < state.period_end_on):
                missing.add("closed_on", "period_not_ended",
                            f"the guidance period ends on {state.period_end_on}")
            if state.revocation_imposed:
                missing.add("reason", "revocation_imposed",
                            "a revocation was imposed: the case closes as REVOKED")
            if not cmd.letter_number:
                missing.add("letter_number", "letter_required",
                            "the closing letter (surat keterangan akhir pembimbingan) number "
                            "is required")
        case CloseReason.REVOKED:
            if not state.revocation_imposed:
                missing.add("reason", "revocation_not_imposed",
                            "the head of the office has not imposed a revocation")
        case CloseReason.DECEASED:
            if closed_on is None:
                missing.add("closed_on", "date_required", "the date of death is required")
        case CloseReason.TRANSFERRED:
            if cmd.transferred_to is None:
                raise DomainError("a transfer closes the case itself, when registration "
                                  "records it", field="reason", rule="transfer_by_registration")
    if closed_on is not None and closed_on > cmd.today:
        missing.add("closed_on", "date_future", "the closing date lies in the future")
    missing.raise_if_any("the case cannot be closed")
    return [GuidanceClosed(reason=cmd.reason, closed_on=closed_on or cmd.today,
                           letter_number=cmd.letter_number, closed_by=cmd.by,
                           stage=state.stage, transferred_to=cmd.transferred_to)]


# the context's decider: the services run their commands with it, the audit folds with it
DECIDER = Decider(Case(), decide, evolve)
