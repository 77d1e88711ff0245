"""Guidance over HTTP: request -> command -> response."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from services.registration.events import Program
from shared.decider import Decision
from shared.ids import new_id
from shared.office_time import office_date
from shared.runtime import Kernel
from shared.web.auth import CASE_READERS, CurrentPrincipal, Principal, metadata, require_roles
from shared.web.cases import CaseFinder, ChangedOut
from shared.web.inputs import Input
from shared.web.problems import PROBLEM_RESPONSES, Problem
from shared.web.reports import MonthlyScope, Tally, counts

from . import domain as d
from .desk import GuidanceDesk
from .events import CONTEXT, CloseReason, Frequency, LitmasPurpose, TppOutcome, TppSubject
from .views import DueFacts, case_view, open_items

STAFF = ("pk", "supervisor", "head")

CLIENT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
OFFICER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

ClientId = Annotated[str, Path(pattern=CLIENT_ID_PATTERN, description="client id")]
Text = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(max_length=4000)]


class _In(Input):
    pass


class LitmasIn(_In):
    purpose: d.LitmasPurpose
    risk_level: d.RiskLevel
    needs: Annotated[list[Text], Field(max_length=30)] = []
    recommendation: Annotated[str, Field(min_length=1, max_length=4000)]
    summary: Annotated[str, Field(min_length=1, max_length=8000)]


class TppDecisionIn(_In):
    subject: d.TppSubject
    outcome: d.TppOutcome
    met_on: date
    members: Annotated[list[Text], Field(min_length=1, max_length=20)]
    notes: LongText = ""


class ActivityIn(_In):
    kind: d.GuidanceKind
    approach: d.Approach
    frequency: Frequency
    description: Annotated[str, Field(min_length=1, max_length=2000)]


class ProgramIn(_In):
    stage: d.Stage
    activities: Annotated[list[ActivityIn], Field(min_length=1, max_length=30)]


class SessionIn(_In):
    kind: d.GuidanceKind
    approach: d.Approach
    held_on: date
    participants: Annotated[list[d.Participant], Field(min_length=1, max_length=10)]
    notes: LongText = ""


class GroupSessionIn(_In):
    client_ids: Annotated[list[Annotated[str, Field(pattern=CLIENT_ID_PATTERN)]],
                          Field(min_length=1, max_length=100)]
    kind: d.GuidanceKind
    approach: Literal[d.Approach.KELOMPOK, d.Approach.KLASIKAL] = d.Approach.KELOMPOK
    held_on: date
    participants: Annotated[list[d.Participant], Field(min_length=1, max_length=10)] = [
        d.Participant.KLIEN]
    notes: LongText = ""


class StageIn(_In):
    to_stage: d.Stage
    tpp_decision_id: Text


class RevocationIn(_In):
    action: Literal["PROPOSE", "IMPOSE"]
    tpp_decision_id: Text | None = None
    violation_ids: Annotated[list[Text], Field(max_length=50)] = []


class CloseIn(_In):
    reason: d.CloseReason
    letter_number: Text | None = None
    closed_on: date | None = None


class DecisionOut(ChangedOut):
    decision_id: str


class GroupSessionOut(BaseModel):
    group_id: str
    client_ids: list[str]


class WorklistCase(BaseModel):
    client_id: str
    program: str
    stage: d.Stage
    is_child: bool
    items: list[dict[str, Any]]


class Worklist(BaseModel):
    officer_id: str
    office: str
    cases: list[WorklistCase]


class GuidanceMonth(BaseModel):
    """Guidance's part of the monthly report (laporan bulanan): counts only. Cases are
    counted on their dates in the office's calendar: a closure on its closing date, a TPP
    decision on the day the panel met."""

    office: str
    month: str = Field(description="YYYY-MM, the office's calendar (WIB)")
    active_cases: int = Field(description="cases open at the end of the month (for the "
                              "current month: so far)")
    active_by_program: dict[str, int]
    active_by_stage: dict[str, int]
    active_by_program_and_stage: dict[str, dict[str, int]]
    closures: int
    closures_by_reason: dict[str, int]
    revocations: int = Field(description="revocations imposed by the head of the office")
    revocations_proposed: int = Field(description="revocations proposed on a TPP "
                                      "recommendation")
    litmas_submitted: int
    litmas_by_purpose: dict[str, int]
    litmas_submitted_late: int
    litmas_overdue: int = Field(description="litmas found overdue in the month")
    tpp_decisions: int
    tpp_decisions_by_subject: dict[str, int]
    tpp_decisions_by_outcome: dict[str, int]


PROGRAMS = [p.value for p in Program]
STAGES = [s.value for s in d.Stage]


def build_router(kernel: Kernel, desk: GuidanceDesk) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["guidance"], responses=PROBLEM_RESPONSES)
    board = f'"{kernel.schema}".cases'

    cases = CaseFinder(kernel, CONTEXT, d.DECIDER, "cases")

    async def act(request: Request, principal: Principal, client_id: str, cmd: object,
                  now: datetime) -> Decision:
        ref, guard = await cases.acting(principal, client_id)
        return await desk.runner.run(ref, cmd, metadata(request, principal), at=now,
                                     guard=guard)

    @api.get("/cases/{client_id}", summary="The case: stage, litmas, programs, sessions, "
             "decisions and open items (the read is recorded)")
    async def get_case(client_id: ClientId, request: Request,
                       principal: CurrentPrincipal) -> dict[str, Any]:
        ref, _, loaded = await cases.reading(principal, client_id)
        await kernel.access.record(principal, ref, f"GET /v1/cases/{client_id}",
                                   request.state.correlation_id)
        # erased: the person's personal fields read as null (shared.privacy)
        return {**case_view(loaded.events, datetime.now(UTC)),
                "erased": await kernel.keys.is_erased(client_id)}

    @api.post("/cases/{client_id}/litmas", response_model=ChangedOut,
              summary="Submit the litmas (social-inquiry report)",
              dependencies=[require_roles(*STAFF)])
    async def submit_litmas(client_id: ClientId, body: LitmasIn, request: Request,
                            principal: CurrentPrincipal) -> ChangedOut:
        now = datetime.now(UTC)
        return ChangedOut.of(client_id, await act(request, principal, client_id, d.SubmitLitmas(
            purpose=body.purpose, risk_level=body.risk_level, needs=tuple(body.needs),
            recommendation=body.recommendation, summary=body.summary, by=principal.sub,
            at=now), now))

    @api.post("/cases/{client_id}/tpp-decisions", response_model=DecisionOut,
              summary="Record a decision of the review panel (TPP)",
              dependencies=[require_roles(*STAFF, "tpp")])
    async def record_decision(client_id: ClientId, body: TppDecisionIn, request: Request,
                              principal: CurrentPrincipal) -> DecisionOut:
        now = datetime.now(UTC)
        decision_id = new_id()
        decision = await act(request, principal, client_id, d.RecordTppDecision(
            decision_id=decision_id, subject=body.subject, outcome=body.outcome,
            met_on=body.met_on, members=tuple(body.members), notes=body.notes,
            by=principal.sub, today=office_date(now)), now)
        return DecisionOut(decision_id=decision_id, **ChangedOut.of(client_id, decision).model_dump())

    @api.post("/cases/{client_id}/programs", response_model=ChangedOut,
              summary="Draw up the guidance program of the current stage",
              dependencies=[require_roles(*STAFF)])
    async def draft_program(client_id: ClientId, body: ProgramIn, request: Request,
                            principal: CurrentPrincipal) -> ChangedOut:
        now = datetime.now(UTC)
        return ChangedOut.of(client_id, await act(request, principal, client_id, d.DraftProgram(
            program_id=new_id(), stage=body.stage,
            activities=tuple(d.Activity(**a.model_dump()) for a in body.activities),
            by=principal.sub), now))

    @api.post("/cases/{client_id}/sessions", response_model=ChangedOut,
              summary="Record a guidance session held", dependencies=[require_roles(*STAFF)])
    async def hold_session(client_id: ClientId, body: SessionIn, request: Request,
                           principal: CurrentPrincipal) -> ChangedOut:
        now = datetime.now(UTC)
        return ChangedOut.of(client_id, await act(request, principal, client_id, d.HoldSession(
            session_id=new_id(), kind=body.kind, approach=body.approach, held_on=body.held_on,
            participants=tuple(body.participants), notes=body.notes,
            today=office_date(now)), now))

    @api.post("/group-sessions", response_model=GroupSessionOut, status_code=201,
              summary="One session that lands in each participant's case, or in none",
              dependencies=[require_roles(*STAFF)])
    async def group_session(body: GroupSessionIn, request: Request,
                            principal: CurrentPrincipal) -> GroupSessionOut:
        now = datetime.now(UTC)
        client_ids = list(dict.fromkeys(body.client_ids))
        group_id = new_id()
        await desk.hold_group_session(
            principal.office, client_ids, d.HoldSession(
                session_id="", kind=body.kind, approach=body.approach, held_on=body.held_on,
                participants=tuple(body.participants), notes=body.notes,
                today=office_date(now), group_id=group_id),
            metadata(request, principal), now,
            may_act=lambda case: principal.may_read_case(principal.office, case.officer_id,
                                                           case.is_child))
        return GroupSessionOut(group_id=group_id, client_ids=client_ids)

    @api.post("/cases/{client_id}/stage", response_model=ChangedOut,
              summary="Advance to the next stage on an approved TPP decision",
              dependencies=[require_roles(*STAFF)])
    async def advance(client_id: ClientId, body: StageIn, request: Request,
                      principal: CurrentPrincipal) -> ChangedOut:
        now = datetime.now(UTC)
        return ChangedOut.of(client_id, await act(request, principal, client_id, d.AdvanceStage(
            to_stage=body.to_stage, tpp_decision_id=body.tpp_decision_id, at=now), now))

    @api.post("/cases/{client_id}/revocation", response_model=ChangedOut,
              summary="Propose a revocation on a TPP recommendation, or impose it (head)",
              dependencies=[require_roles(*STAFF)])
    async def revocation(client_id: ClientId, body: RevocationIn, request: Request,
                         principal: CurrentPrincipal) -> ChangedOut:
        now = datetime.now(UTC)
        if body.action == "IMPOSE":
            if not principal.has("head"):
                raise Problem(403, "Forbidden", "only the head of the office imposes a "
                              "revocation", rule="role_required")
            cmd: object = d.ImposeRevocation(by=principal.sub, at=now)
        else:
            if not body.tpp_decision_id:
                raise Problem(422, "Invalid request", "a proposal names the TPP decision",
                              field="tpp_decision_id", rule="missing")
            cmd = d.ProposeRevocation(tpp_decision_id=body.tpp_decision_id,
                                      violation_ids=tuple(body.violation_ids),
                                      by=principal.sub, at=now)
        return ChangedOut.of(client_id, await act(request, principal, client_id, cmd, now))

    @api.post("/cases/{client_id}/close", response_model=ChangedOut,
              summary="Close guidance (COMPLETED and REVOKED: head of office)",
              dependencies=[require_roles(*STAFF)])
    async def close(client_id: ClientId, body: CloseIn, request: Request,
                    principal: CurrentPrincipal) -> ChangedOut:
        now = datetime.now(UTC)
        if body.reason in (d.CloseReason.COMPLETED, d.CloseReason.REVOKED) and \
                not principal.has("head"):
            raise Problem(403, "Forbidden", f"closing as {body.reason} needs the head of the "
                          "office (who signs the closing letter)", rule="role_required")
        return ChangedOut.of(client_id, await act(request, principal, client_id, d.CloseGuidance(
            reason=body.reason, closed_on=body.closed_on, letter_number=body.letter_number,
            by=principal.sub, today=office_date(now)), now))

    @api.get("/officers/{officer_id}/worklist", response_model=Worklist,
             summary="The officer's open cases and what is due on each, most urgent first")
    async def worklist(officer_id: Annotated[str, Path(pattern=OFFICER_PATTERN)],
                       principal: CurrentPrincipal) -> Worklist:
        if not principal.has(*CASE_READERS):
            raise Problem(403, "Forbidden", "worklists need an office role", rule="role_required")
        if principal.sub != officer_id and not principal.has("supervisor", "head"):
            raise Problem(403, "Forbidden", "an officer sees their own worklist; supervisors "
                          "and the head see everyone's", rule="own_worklist")
        rows = await kernel.pool.fetch(
            f"SELECT * FROM {board} WHERE office = $1 AND officer_id = $2 AND status = 'OPEN'",
            principal.office, officer_id)
        now = datetime.now(UTC)
        listed = []
        for r in rows:
            items = open_items(DueFacts(
                stage=d.Stage(r["stage"]), litmas_due_at=r["litmas_due_at"],
                litmas_submitted=r["litmas_submitted"],
                program_stages=frozenset(d.Stage(s) for s in r["program_stages"]),
                review_dates=tuple(r["review_dates"]), tpp_met_on=tuple(r["tpp_met_on"]),
                period_end_on=r["period_end"], revocation_pending=r["revocation_pending"]), now)
            listed.append(WorklistCase(client_id=r["client_id"], program=r["program"],
                                       stage=d.Stage(r["stage"]), is_child=r["is_child"],
                                       items=items))
        listed.sort(key=lambda c: min((i["due"] or "~" for i in c.items), default="~"))
        return Worklist(officer_id=officer_id, office=principal.office, cases=listed)

    report_cases = f'"{kernel.schema}".report_cases'
    report_stages = f'"{kernel.schema}".report_stages'
    report_facts = f'"{kernel.schema}".report_facts'

    @api.get("/reports/monthly", response_model=GuidanceMonth, tags=["reports"],
             summary="The office's open cases at the end of a month, and its closures, "
                     "revocations, litmas and TPP decisions (guidance's part of the laporan "
                     "bulanan)")
    async def monthly_report(scope: MonthlyScope) -> GuidanceMonth:
        first, after = scope.month.first_day, scope.month.next_first_day
        active = await kernel.pool.fetch(
            f"""SELECT c.program, s.stage, count(*) AS n FROM {report_cases} c
                CROSS JOIN LATERAL (SELECT stage FROM {report_stages} st
                                    WHERE st.client_id = c.client_id AND st.since_on < $2
                                    ORDER BY st.rank DESC LIMIT 1) s
                WHERE c.office = $1 AND c.opened_on < $2
                  AND (c.closed_on IS NULL OR c.closed_on >= $2)
                GROUP BY c.program, s.stage""", scope.office, after)
        facts = await kernel.pool.fetch(
            f"""SELECT kind, key, count(*) AS n FROM {report_facts}
                WHERE office = $1 AND on_date >= $2 AND on_date < $3 GROUP BY kind, key""",
            scope.office, first, after)
        tally = Tally(facts)
        grid = {program: dict.fromkeys(STAGES, 0) for program in PROGRAMS}
        for r in active:  # a program the code does not know yet still gets its row
            grid.setdefault(r["program"], dict.fromkeys(STAGES, 0))[r["stage"]] += r["n"]
        by_program = {program: sum(stages.values()) for program, stages in grid.items()}
        by_stage = counts(STAGES, ((stage, n) for stages in grid.values()
                                   for stage, n in stages.items()))
        closures = tally.of("closure", [r.value for r in CloseReason])
        revoked = tally.of("revocation")
        litmas = tally.of("litmas", [p.value for p in LitmasPurpose])
        subjects = tally.of("tpp_subject", [t.value for t in TppSubject])
        return GuidanceMonth(
            office=scope.office, month=str(scope.month),
            active_cases=sum(by_program.values()), active_by_program=by_program,
            active_by_stage=by_stage, active_by_program_and_stage=grid,
            closures=sum(closures.values()), closures_by_reason=closures,
            revocations=revoked.get("IMPOSED", 0),
            revocations_proposed=revoked.get("PROPOSED", 0),
            litmas_submitted=sum(litmas.values()), litmas_by_purpose=litmas,
            litmas_submitted_late=tally.total("litmas_late"),
            litmas_overdue=tally.total("litmas_overdue"),
            tpp_decisions=sum(subjects.values()), tpp_decisions_by_subject=subjects,
            tpp_decisions_by_outcome=tally.of("tpp_outcome", [o.value for o in TppOutcome]))

    return api
