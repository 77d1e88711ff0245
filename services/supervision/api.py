"""Supervision over HTTP: request -> command -> response."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from shared.decider import CommandRunner, Decision
from shared.events import RecordedEvent
from shared.ids import new_id
from shared.runtime import Kernel
from shared.web.auth import CASE_READERS, CurrentPrincipal, Principal, metadata, require_roles
from shared.web.cases import CaseFinder, ChangedOut
from shared.web.inputs import Input, Instant
from shared.web.problems import PROBLEM_RESPONSES, Problem
from shared.web.reports import MonthlyScope, Tally

from . import domain as d
from .events import CONTEXT

STAFF = ("pk", "supervisor", "head")

CLIENT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
OFFICER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ClientId = Annotated[str, Path(pattern=CLIENT_ID_PATTERN, description="client id")]


class _In(Input):
    pass


class PlanIn(_In):
    interval_days: Annotated[int, Field(ge=1, le=180)] = d.DEFAULT_INTERVAL_DAYS
    grace_days: Annotated[int, Field(ge=0, le=60)] = d.DEFAULT_GRACE_DAYS
    remote_allowed: bool = False
    first_due_on: date | None = Field(
        None, description="default: the start of supervision plus the interval; may lie in "
        "the past when a case moves over from the paper registers")


class VisitIn(_In):
    kind: d.ContactKind
    occurred_at: Instant
    outcome: d.Outcome
    notes: Annotated[str, Field(max_length=4000)] = ""
    remote_reason: Annotated[str, Field(max_length=1000)] | None = None


class ViolationIn(_In):
    category: d.Category
    code: Annotated[str, Field(min_length=1, max_length=60)]
    notes: Annotated[str, Field(max_length=4000)] = ""


class BoardEntry(BaseModel):
    client_id: str
    officer_id: str | None
    is_child: bool
    next_due_on: date | None
    consecutive_missed: int
    open_violations: int
    items: list[dict[str, Any]]


class Board(BaseModel):
    office: str
    officer_id: str | None
    entries: list[BoardEntry]


class SupervisionMonth(BaseModel):
    """Supervision's part of the monthly report (laporan bulanan): counts only. Reports are
    counted in the month they were due: `due` = `received` + `missed` + `pending`."""

    office: str
    month: str = Field(description="YYYY-MM, the office's calendar (WIB)")
    reports: dict[str, int] = Field(description="due = received + missed + pending (not "
                                    "received yet: its window is open or still to come)")
    visits: int = Field(description="contacts made in the month: reports, visits, meetings")
    visits_by_kind: dict[str, int]
    visits_by_outcome: dict[str, int]
    violations: int
    violations_by_category: dict[str, int]
    violations_by_code: dict[str, int]


def build_router(kernel: Kernel, runner: CommandRunner, due_soon_days: int) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["supervision"], responses=PROBLEM_RESPONSES)
    board = f'"{kernel.schema}".board'
    violations = f'"{kernel.schema}".violations'

    cases = CaseFinder(kernel, CONTEXT, d.DECIDER, "board", "supervision case")

    async def act(request: Request, principal: Principal, client_id: str, cmd: object,
                  now: datetime) -> ChangedOut:
        ref, guard = await cases.acting(principal, client_id)
        decision: Decision = await runner.run(ref, cmd, metadata(request, principal), at=now,
                                              identify=d.identify(client_id), guard=guard)
        return ChangedOut.of(client_id, decision)

    @api.get("/supervision/{client_id}", summary="Plan, next due date, missed reports, "
             "contacts and violations (the read is recorded)")
    async def get_supervision(client_id: ClientId, request: Request,
                              principal: CurrentPrincipal) -> dict[str, Any]:
        ref, _, loaded = await cases.reading(principal, client_id)
        await kernel.access.record(principal, ref, f"GET /v1/supervision/{client_id}",
                                   request.state.correlation_id)
        # erased: the person's personal fields read as null (shared.privacy)
        return {**supervision_view(loaded.events),
                "erased": await kernel.keys.is_erased(client_id)}

    @api.put("/supervision/{client_id}/plan", response_model=ChangedOut,
             summary="Set the reporting plan (wajib lapor)", dependencies=[require_roles(*STAFF)])
    async def set_plan(client_id: ClientId, body: PlanIn, request: Request,
                       principal: CurrentPrincipal) -> ChangedOut:
        now = datetime.now(UTC)
        return await act(request, principal, client_id, d.SetPlan(
            interval_days=body.interval_days, grace_days=body.grace_days,
            remote_allowed=body.remote_allowed, first_due_on=body.first_due_on,
            by=principal.sub, today=d.office_date(now)), now)

    @api.post("/supervision/{client_id}/visits", response_model=ChangedOut,
              summary="Log a contact: a report, a visit or a meeting (VisitLogged)",
              dependencies=[require_roles(*STAFF)])
    async def log_visit(client_id: ClientId, body: VisitIn, request: Request,
                        principal: CurrentPrincipal) -> ChangedOut:
        now = datetime.now(UTC)
        return await act(request, principal, client_id, d.LogVisit(
            visit_id=new_id(), kind=body.kind, occurred_at=body.occurred_at,
            outcome=body.outcome, notes=body.notes, remote_reason=body.remote_reason,
            by=principal.sub, now=now, violation_id=new_id()), now)

    @api.post("/supervision/{client_id}/violations", response_model=ChangedOut,
              summary="Record a violation (UMUM or KHUSUS)", dependencies=[require_roles(*STAFF)])
    async def record_violation(client_id: ClientId, body: ViolationIn, request: Request,
                               principal: CurrentPrincipal) -> ChangedOut:
        now = datetime.now(UTC)
        return await act(request, principal, client_id, d.RecordViolation(
            violation_id=new_id(), category=body.category, code=body.code, notes=body.notes,
            by=principal.sub, today=d.office_date(now)), now)

    @api.get("/compliance", response_model=Board,
             summary="The office's compliance board, most urgent first")
    async def compliance(principal: CurrentPrincipal,
                         officer_id: Annotated[str | None, Query(pattern=OFFICER_PATTERN)] = None
                         ) -> Board:
        if not principal.has(*CASE_READERS):
            raise Problem(403, "Forbidden", "the board needs an office role", rule="role_required")
        today = d.office_date(datetime.now(UTC))
        rows = await kernel.pool.fetch(
            f"""SELECT b.*, (SELECT count(*) FROM {violations} v WHERE v.client_id = b.client_id
                       AND v.recorded_at > coalesce(b.last_tpp_review_at, '-infinity')) AS open,
                       (SELECT count(*) FROM {violations} v WHERE v.client_id = b.client_id
                       AND v.category = 'KHUSUS' AND v.recorded_at >
                       coalesce(b.last_tpp_review_at, '-infinity')) AS open_khusus
                FROM {board} b WHERE b.office = $1 AND b.status = 'ACTIVE'
                  AND ($2::text IS NULL OR b.officer_id = $2)
                  AND (NOT b.is_child OR $3 OR b.officer_id = $4)""",
            principal.office, officer_id, principal.has("supervisor", "head"), principal.sub)
        entries = []
        for r in rows:
            items = board_items(r, today, due_soon_days)
            if items:
                entries.append((urgency(r, today), BoardEntry(
                    client_id=r["client_id"], officer_id=r["officer_id"], is_child=r["is_child"],
                    next_due_on=r["next_due_on"], consecutive_missed=r["consecutive_missed"],
                    open_violations=r["open"], items=items)))
        entries.sort(key=lambda pair: pair[0])
        return Board(office=principal.office, officer_id=officer_id,
                     entries=[entry for _, entry in entries])

    schedules = f'"{kernel.schema}".report_schedules'
    facts = f'"{kernel.schema}".report_facts'

    @api.get("/reports/monthly", response_model=SupervisionMonth, tags=["reports"],
             summary="The office's reports due, received and missed in a month, its contacts "
                     "and violations (supervision's part of the laporan bulanan)")
    async def monthly_report(scope: MonthlyScope) -> SupervisionMonth:
        first, after = scope.month.first_day, scope.month.next_first_day
        rows = await kernel.pool.fetch(
            f"""SELECT kind, key, count(*) AS n FROM {facts}
                WHERE office = $1 AND on_date >= $2 AND on_date < $3 GROUP BY kind, key""",
            scope.office, first, after)
        # the dues of the month not yet settled: from each schedule's next due date (or its
        # first one in the month) every interval, up to the month's or the period's end
        pending = await kernel.pool.fetchval(
            f"""WITH s AS (
                    SELECT interval_days AS step, least(period_end, $3::date - 1) AS last_on,
                           next_due_on + greatest(0, ($2::date - next_due_on + interval_days - 1)
                                                  / interval_days) * interval_days AS first_on
                    FROM {schedules}
                    WHERE office = $1 AND status = 'ACTIVE' AND interval_days IS NOT NULL
                      AND next_due_on < $3)
                SELECT coalesce(sum((last_on - first_on) / step + 1), 0) FROM s
                WHERE first_on <= last_on""", scope.office, first, after)
        tally = Tally(rows)
        settled = tally.of("report", ("RECEIVED", "MISSED"))
        received, missed = settled["RECEIVED"], settled["MISSED"]
        kinds = tally.of("visit_kind", [k.value for k in d.ContactKind])
        categories = tally.of("violation_category", [c.value for c in d.Category])
        codes = tally.of("violation_code",
                         [code for known in d.VIOLATION_CODES.values() for code in known])
        return SupervisionMonth(
            office=scope.office, month=str(scope.month),
            reports={"due": received + missed + pending, "received": received,
                     "missed": missed, "pending": pending},
            visits=sum(kinds.values()), visits_by_kind=kinds,
            visits_by_outcome=tally.of("visit_outcome", [o.value for o in d.Outcome]),
            violations=sum(categories.values()), violations_by_category=categories,
            violations_by_code=codes)

    return api


def board_items(r: Any, today: date, due_soon_days: int) -> list[dict[str, Any]]:
    items = []
    if r["open"]:
        items.append({"kind": "VIOLATION_AWAITING_TPP", "count": r["open"],
                      "khusus": r["open_khusus"],
                      "message": f"{r['open']} violation(s) await the TPP"})
    if r["consecutive_missed"]:
        items.append({"kind": "REPORT_MISSED", "count": r["consecutive_missed"],
                      "last_due_on": r["last_missed_on"].isoformat(),
                      "message": f"{r['consecutive_missed']} consecutive report(s) missed"})
    if r["interval_days"] is None:
        items.append({"kind": "PLAN_MISSING", "message": "no reporting plan set"})
    elif r["next_due_on"] and r["next_due_on"] - today <= timedelta(days=due_soon_days):
        items.append({"kind": "REPORT_DUE", "due_on": r["next_due_on"].isoformat(),
                      "message": f"report due on {r['next_due_on']}"})
    return items


def urgency(r: Any, today: date) -> tuple:
    """Open KHUSUS violations first, then any open violation, then the longest run of missed
    reports, then the nearest due date."""
    due = (r["next_due_on"] - today).days if r["next_due_on"] else 10_000
    return (-r["open_khusus"], -r["open"], -r["consecutive_missed"], due)


def supervision_view(events: list[RecordedEvent]) -> dict[str, Any]:
    view: dict[str, Any] = {"plan": None, "contacts": [], "missed_reports": [],
                            "violations": [], "tpp_reviews": [], "ended": None}
    state = d.Supervision()
    for e in events:
        state = d.evolve(state, e.data)
        x = e.data
        match x:
            case d.SupervisionStarted():
                view.update(client_id=x.client_id, office=x.office, program=x.program,
                            is_child=x.is_child, period={"start_on": x.period_start_on.isoformat(),
                                                         "end_on": x.period_end_on.isoformat()},
                            started_at=x.started_at.isoformat())
            case d.ReportingPlanSet():
                view["plan"] = x.model_dump(mode="json")
            case d.VisitLogged():
                view["contacts"].append(x.model_dump(mode="json"))
            case d.ReportMissed():
                view["missed_reports"].append(x.model_dump(mode="json"))
            case d.ViolationRecorded():
                view["violations"].append(x.model_dump(mode="json"))
            case d.TppReviewRequested():
                view["tpp_reviews"].append(x.model_dump(mode="json"))
            case d.SupervisionEnded():
                view["ended"] = x.model_dump(mode="json")
    view.update(status=state.status.value, officer_id=state.officer_id,
                next_due_on=state.next_due_on.isoformat() if state.next_due_on else None,
                consecutive_missed=state.consecutive_missed,
                version=events[-1].sequence if events else 0)
    return view
