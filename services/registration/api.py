"""Registration over HTTP: request -> command -> response; nothing else."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError
from stdnum.exceptions import ValidationError as NikInvalid
from stdnum.id import nik as stdnum_nik

from shared.ids import derived_id, new_id
from shared.logging import bind
from shared.runtime import Kernel
from shared.streams import CaseRef
from shared.web.auth import (CASE_READERS, CurrentPrincipal, Principal, metadata, not_found,
                             require_roles)
from shared.web.cases import CaseFinder
from shared.web.inputs import PLAIN_TEXT, Input
from shared.web.problems import PROBLEM_RESPONSES, Problem
from shared.web.reports import MonthlyScope, Tally

from . import domain as d
from .events import CONTEXT
from .registrar import Registrar

CLIENT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
OFFICE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
OFFICER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
PHONE_PATTERN = r"^\+?[0-9]{8,15}$"
STAFF = ("pk", "supervisor", "head")


ClientId = Annotated[str, Path(pattern=CLIENT_ID_PATTERN, description="client id")]
Text = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(min_length=1, max_length=500)]
Phone = Annotated[str, Field(pattern=PHONE_PATTERN, description="digits, optionally with +")]
OfficerId = Annotated[str, Field(pattern=OFFICER_PATTERN)]


def _valid_nik(value: str) -> str:
    try:
        return stdnum_nik.validate(value)
    except NikInvalid as exc:
        raise PydanticCustomError(
            "nik", "not a valid NIK: 16 digits, region code then birth date DDMMYY (day + 40 "
            "for women) then a serial ({reason})", {"reason": exc.message}) from None


Nik = Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_valid_nik)]


class _In(Input):
    pass


class DecisionIn(_In):
    number: Text
    issued_by: Text
    issued_on: date


class PeriodIn(_In):
    start_on: date
    end_on: date

    @model_validator(mode="after")
    def _order(self) -> PeriodIn:
        if self.end_on <= self.start_on:
            raise PydanticCustomError("period_order", "end_on must be after start_on")
        return self


class PersonIn(_In):
    full_name: Text
    nik: Nik
    birth_date: date | None = None
    sex: d.Sex | None = None
    address: LongText
    phone: Phone | None = None


class FamilyContactIn(_In):
    name: Text
    relation: Text
    phone: Phone | None = None


class RegisterIn(_In):
    program: d.Program
    decision: DecisionIn
    origin_institution: Text
    period: PeriodIn
    person: PersonIn
    family_contact: FamilyContactIn | None = None
    officer_id: OfficerId | None = None


class RegisteredOut(BaseModel):
    client_id: str
    register_number: str
    version: int
    warnings: list[str]


class AssignOfficerIn(_In):
    officer_id: OfficerId
    reason: LongText


class ChangeAddressIn(_In):
    address: LongText
    reported_by_client: bool = True


class CorrectionIn(_In):
    field: Annotated[str, Field(description="one of: " + ", ".join(sorted(d.CORRECTABLE)))]
    value: Any
    reason: LongText


class TransferIn(_In):
    to_office: Annotated[str, Field(pattern=OFFICE_PATTERN)]
    tpp_decision_id: Text
    approved_by: Text


class ChangedOut(BaseModel):
    client_id: str
    version: int
    changed: bool
    events: list[str]


class TransferredOut(ChangedOut):
    to_office: str
    new_client_id: str


class ErasureIn(_In):
    client_id: Annotated[str, Field(pattern=CLIENT_ID_PATTERN)]
    legal_basis: Text


class ErasureOut(BaseModel):
    client_id: str
    erased: bool
    erased_cases: list[dict[str, str]]
    version: int


class RetentionDue(BaseModel):
    client_id: str
    register_number: str
    status: d.Status
    ended_on: date
    retention_ended_on: date
    holds: list[dict[str, Any]] = Field(description="auditors' holds still standing (an "
                                        "erasure is refused until they are lifted)")


class RetentionSweep(BaseModel):
    office: str
    today: date
    retention_days: int
    due: list[RetentionDue]


class HoldIn(_In):
    reason: LongText
    office: Annotated[str | None, Field(pattern=OFFICE_PATTERN,
                                        description="the client's office (default: yours)")] = None


class HoldOut(BaseModel):
    client_id: str
    hold_id: str
    version: int


class ClientSummary(BaseModel):
    client_id: str
    office: str
    register_number: str
    full_name: str | None = Field(description="None once the person is erased")
    program: d.Program
    status: d.Status
    officer_id: str | None
    is_child: bool
    registered_at: datetime


class ClientPage(BaseModel):
    items: list[ClientSummary]
    next_cursor: str | None


class Caseload(BaseModel):
    officer_id: str
    office: str
    active: int
    by_program: dict[str, int]


class RegistrationMonth(BaseModel):
    """Registration's part of the monthly report (laporan bulanan): counts only."""

    office: str
    month: str = Field(description="YYYY-MM, the office's calendar (WIB)")
    registrations: int = Field(description="new clients registered in the month (transfers "
                               "in are counted apart)")
    registrations_by_program: dict[str, int]
    transfers_in: int = Field(description="clients received from another office")
    transfers_in_by_program: dict[str, int]
    transfers_out: int = Field(description="clients handed over to another office")
    transfers_out_by_office: dict[str, int]
    active_clients: int = Field(description="clients whose registration was active at the "
                                "end of the month (for the current month: so far)")
    active_clients_by_program: dict[str, int]


PROGRAMS = [p.value for p in d.Program]


def sees(principal: Principal, office: str, officer_id: str | None, is_child: bool,
         transferred_to: str | None = None) -> bool:
    return principal.may_read_case(office, officer_id, is_child, also_office=transferred_to)


def build_router(kernel: Kernel, registrar: Registrar, national: Registrar) -> APIRouter:
    """`national` reads where every office's cases are (on an office's leaf, the hub)."""
    api = APIRouter(prefix="/v1", tags=["clients"], responses=PROBLEM_RESPONSES)
    clients = f'"{kernel.schema}".clients'
    finder = CaseFinder(kernel, CONTEXT, d.DECIDER, "clients", "client")

    async def changeable(principal: Principal, client_id: str) -> tuple[CaseRef, d.Client]:
        """The caller's own office's client, which they may change; 404 otherwise."""
        bind(client_id=client_id)
        ref = CaseRef(principal.office, client_id)
        state, _ = await registrar.load(ref)
        if state.registered is None or not sees(principal, ref.office, state.officer_id,
                                                state.is_child):
            raise not_found()
        return ref, state

    @api.post("/clients", status_code=201, response_model=RegisteredOut,
              summary="Register a client in the caller's office",
              dependencies=[require_roles(*STAFF)])
    async def register_client(
            body: RegisterIn, request: Request, response: Response, principal: CurrentPrincipal,
            idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> RegisteredOut:
        client_id = (derived_id("registration", principal.office, idempotency_key)
                     if idempotency_key else new_id())
        cmd = d.RegisterClient(
            client_id=client_id, office=principal.office, program=body.program,
            decision=d.Decision(**body.decision.model_dump()),
            origin_institution=body.origin_institution,
            period=d.Period(**body.period.model_dump()), full_name=body.person.full_name,
            nik=body.person.nik, address=body.person.address, phone=body.person.phone,
            birth_date=body.person.birth_date, sex=body.person.sex,
            family_contact=(d.FamilyContact(**body.family_contact.model_dump())
                            if body.family_contact else None),
            officer_id=body.officer_id, registered_at=datetime.now(UTC))
        bind(client_id=client_id)
        result = await registrar.register(cmd, metadata(request, principal),
                                          fresh=idempotency_key is None)
        if result.duplicate and not _same_request(cmd, result.event):
            raise Problem(422, "Idempotency key reused",
                          "this Idempotency-Key was used for a different registration",
                          rule="idempotency_key_reused", field="header.Idempotency-Key")
        if result.duplicate:
            response.status_code = 201  # the same answer as the first time
        return RegisteredOut(client_id=client_id, register_number=result.event.register_number,
                             version=result.version.sequence, warnings=result.event.warnings)

    @api.get("/clients/{client_id}", summary="A client as the office sees it (the read is "
             "recorded)")
    async def get_client(client_id: ClientId, request: Request,
                         principal: CurrentPrincipal) -> dict[str, Any]:
        bind(client_id=client_id)
        # Most reads are of the caller's own office's clients: load that case first. A
        # client id is made for one registration at one office (a transfer makes a new one),
        # so a case found there is the client's; only when none is does the directory say
        # which office holds the client.
        office = principal.office
        state, loaded = await registrar.load(CaseRef(office, client_id))
        if state.registered is None:
            row = await kernel.pool.fetchrow(
                f"SELECT office FROM {clients} WHERE client_id = $1", client_id)
            if row and row["office"] != office:
                office = row["office"]
                state, loaded = await registrar.load(CaseRef(office, client_id))
        if state.registered is None:
            raise not_found()
        moved_to = state.transferred_to.office if state.transferred_to else None
        if not sees(principal, office, state.officer_id, state.is_child, moved_to):
            raise not_found()
        await kernel.access.record(principal, CaseRef(office, client_id),
                                   f"GET /v1/clients/{client_id}",
                                   request.state.correlation_id)
        return client_view(state, loaded.version.sequence)

    @api.get("/clients", response_model=ClientPage,
             summary="Search the office's clients by name, register number or NIK (the "
                     "whole NIK)")
    async def search_clients(
            request: Request, principal: CurrentPrincipal,
            officer_id: Annotated[str | None, Query(pattern=OFFICER_PATTERN)] = None,
            program: d.Program | None = None, status: d.Status | None = None,
            q: Annotated[str | None, Query(max_length=100, pattern=PLAIN_TEXT)] = None,
            limit: Annotated[int, Query(ge=1, le=100)] = 20,
            cursor: Annotated[str | None, Query(max_length=300, pattern=PLAIN_TEXT)] = None,
            office: Annotated[str | None, Query(pattern=OFFICE_PATTERN,
                                                description="auditors only")] = None,
    ) -> ClientPage:
        if not principal.has(*CASE_READERS, "auditor"):
            raise Problem(403, "Forbidden", "reading clients needs an office role",
                          rule="role_required")
        if office and office != principal.office and "auditor" not in principal.roles:
            raise Problem(403, "Forbidden", "only auditors search other offices",
                          rule="office_scope", field="query.office")
        scope = office or (None if "auditor" in principal.roles else principal.office)
        after = _decode_cursor(cursor)
        rows = await kernel.pool.fetch(
            f"""SELECT client_id, office, register_number, full_name, program, status,
                       officer_id, is_child, registered_at FROM {clients}
                WHERE ($1::text IS NULL OR office = $1)
                  AND ($2::text IS NULL OR officer_id = $2)
                  AND ($3::text IS NULL OR program = $3)
                  AND ($4::text IS NULL OR status = $4)
                  AND ($5::text IS NULL OR full_name ILIKE '%' || $5 || '%'
                       OR register_number ILIKE '%' || $5 || '%' OR nik = $11)
                  AND (NOT is_child OR $6 OR officer_id = $7)
                  AND ($8::timestamptz IS NULL OR (registered_at, client_id) < ($8, $9))
                ORDER BY registered_at DESC, client_id DESC LIMIT $10""",
            scope, officer_id, program.value if program else None,
            status.value if status else None, _like(q) if q else None,
            principal.has("supervisor", "head", "auditor"), principal.sub,
            after[0] if after else None, after[1] if after else None, limit + 1,
            q.strip() if q else None)
        items = [ClientSummary(**dict(r)) for r in rows[:limit]]
        await asyncio.gather(*(kernel.access.record(
            principal, CaseRef(i.office, i.client_id), "GET /v1/clients (search)",
            request.state.correlation_id) for i in items))
        more = len(rows) > limit
        return ClientPage(items=items, next_cursor=_encode_cursor(items[-1]) if more else None)

    @api.get("/officers/{officer_id}/caseload", response_model=Caseload,
             summary="An officer's active clients by program")
    async def caseload(officer_id: Annotated[str, Path(pattern=OFFICER_PATTERN)],
                       principal: CurrentPrincipal) -> Caseload:
        if not principal.has(*CASE_READERS, "auditor"):
            raise Problem(403, "Forbidden", "caseloads need an office role", rule="role_required")
        rows = await kernel.pool.fetch(
            f"SELECT program, count(*) AS n FROM {clients} WHERE office = $1 AND officer_id = $2"
            " AND status = 'ACTIVE' GROUP BY program ORDER BY program",
            principal.office, officer_id)
        by_program = {r["program"]: r["n"] for r in rows}
        return Caseload(officer_id=officer_id, office=principal.office,
                        active=sum(by_program.values()), by_program=by_program)

    report = f'"{kernel.schema}".report_clients'

    @api.get("/reports/monthly", response_model=RegistrationMonth, tags=["reports"],
             summary="The office's registrations, transfers and active clients in a month "
                     "(registration's part of the laporan bulanan)")
    async def monthly_report(scope: MonthlyScope) -> RegistrationMonth:
        rows = await kernel.pool.fetch(
            f"""SELECT 'registered' AS kind, program AS key, count(*) AS n FROM {report}
                WHERE office = $1 AND registered_on >= $2 AND registered_on < $3
                  AND NOT transferred_in GROUP BY program
                UNION ALL
                SELECT 'transfers_in', program, count(*) FROM {report}
                WHERE office = $1 AND registered_on >= $2 AND registered_on < $3
                  AND transferred_in GROUP BY program
                UNION ALL
                SELECT 'transfers_out', transferred_to, count(*) FROM {report}
                WHERE office = $1 AND left_reason = 'TRANSFERRED'
                  AND left_on >= $2 AND left_on < $3 GROUP BY transferred_to
                UNION ALL
                SELECT 'active', program, count(*) FROM {report}
                WHERE office = $1 AND registered_on < $3
                  AND (left_on IS NULL OR left_on >= $3) GROUP BY program""",
            scope.office, scope.month.first_day, scope.month.next_first_day)
        tally = Tally(rows)
        registered, active = tally.of("registered", PROGRAMS), tally.of("active", PROGRAMS)
        transfers_in, transfers_out = tally.of("transfers_in", PROGRAMS), tally.of("transfers_out")
        return RegistrationMonth(
            office=scope.office, month=str(scope.month),
            registrations=sum(registered.values()), registrations_by_program=registered,
            transfers_in=sum(transfers_in.values()), transfers_in_by_program=transfers_in,
            transfers_out=sum(transfers_out.values()), transfers_out_by_office=transfers_out,
            active_clients=sum(active.values()), active_clients_by_program=active)

    async def change(request: Request, principal: Principal, client_id: str, cmd) -> ChangedOut:
        ref, guard = await finder.acting(principal, client_id)
        decision = await registrar.change(ref, cmd, metadata(request, principal), cmd.at, guard)
        return ChangedOut(client_id=client_id, version=decision.version.sequence,
                          changed=bool(decision.events),
                          events=[e.type for e in decision.events])

    @api.post("/clients/{client_id}/officer", response_model=ChangedOut,
              summary="Assign the client's officer (PK)", dependencies=[require_roles(*STAFF)])
    async def assign_officer(client_id: ClientId, body: AssignOfficerIn, request: Request,
                             principal: CurrentPrincipal) -> ChangedOut:
        return await change(request, principal, client_id,
                            d.AssignOfficer(body.officer_id, body.reason, datetime.now(UTC)))

    @api.post("/clients/{client_id}/address", response_model=ChangedOut,
              summary="Record a new address", dependencies=[require_roles(*STAFF)])
    async def change_address(client_id: ClientId, body: ChangeAddressIn, request: Request,
                             principal: CurrentPrincipal) -> ChangedOut:
        return await change(request, principal, client_id,
                            d.ChangeAddress(body.address, body.reported_by_client,
                                            datetime.now(UTC)))

    @api.post("/clients/{client_id}/corrections", response_model=ChangedOut,
              summary="Correct a registered detail (old and new value are kept)",
              dependencies=[require_roles(*STAFF)])
    async def correct(client_id: ClientId, body: CorrectionIn, request: Request,
                      principal: CurrentPrincipal) -> ChangedOut:
        return await change(request, principal, client_id,
                            d.CorrectDetails(body.field, body.value, body.reason,
                                             datetime.now(UTC)))

    @api.post("/clients/{client_id}/transfer", response_model=TransferredOut,
              summary="Transfer the client to another office (head of office)",
              dependencies=[require_roles("head")])
    async def transfer(client_id: ClientId, body: TransferIn, request: Request,
                       principal: CurrentPrincipal,
                       idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
                       ) -> TransferredOut:
        ref, _ = await changeable(principal, client_id)
        new_client_id = (derived_id("transfer", principal.office, client_id, idempotency_key)
                         if idempotency_key else new_id())
        decision = await registrar.transfer(ref, d.TransferClient(
            to_office=body.to_office, tpp_decision_id=body.tpp_decision_id,
            approved_by=body.approved_by, new_client_id=new_client_id, at=datetime.now(UTC)),
            metadata(request, principal))
        moved = decision.state.transferred_to
        assert moved is not None
        return TransferredOut(client_id=client_id, version=decision.version.sequence,
                              changed=bool(decision.events),
                              events=[e.type for e in decision.events],
                              to_office=moved.office, new_client_id=moved.client_id)

    # -------------------------------------------------------------- personal data (PDP)

    async def earlier_cases(ref: CaseRef, most: int = 50) -> tuple[d.CaseLink, ...]:
        """The person's cases before this one, each transferred to the next (at any office:
        read where every office's cases are)."""
        state, _ = await registrar.load(ref)
        link = state.registered.transferred_from if state.registered else None
        chain: list[d.CaseLink] = []
        while link is not None and link not in chain and len(chain) < most:
            chain.append(link)
            before, _ = await national.load(CaseRef(link.office, link.client_id))
            link = before.registered.transferred_from if before.registered else None
        return tuple(chain)

    @api.post("/privacy/erasures", response_model=ErasureOut, tags=["privacy"],
              summary="Erase a person's personal data by destroying their key (head of office; "
                      "refused while a legal hold stands)",
              dependencies=[require_roles("head")])
    async def erase(body: ErasureIn, request: Request, principal: CurrentPrincipal
                    ) -> ErasureOut:
        bind(client_id=body.client_id)
        ref = CaseRef(principal.office, body.client_id)
        now = datetime.now(UTC)
        decision = await registrar.change(ref, d.ErasePerson(
            legal_basis=body.legal_basis, by=principal.sub, at=now,
            retention_days=kernel.settings.privacy_retention_days,
            earlier=await earlier_cases(ref)),
            metadata(request, principal), now)
        stored = decision.events or (await registrar.load(ref))[1].events  # asked again
        erased = next((e for e in stored if isinstance(e.data, d.PersonErased)), None)
        if erased is None:  # a refusal is raised above; this is not reached
            raise not_found()
        # the record of the erasure is stored first; then the keys go (again, harmlessly,
        # when the erasure is asked for once more). Where offices keep databases of their
        # own, an earlier case's key held by another office goes there (ShredErasedKeys).
        for case in erased.data.cases:
            await kernel.keys.destroy(case.client_id, by=erased.data.erased_by,
                                      legal_basis=erased.data.legal_basis,
                                      at=erased.data.erased_at)
        await kernel.announce_erasure([c.client_id for c in erased.data.cases])
        return ErasureOut(client_id=body.client_id, erased=True,
                          erased_cases=[c.model_dump() for c in erased.data.cases],
                          version=decision.version.sequence)

    @api.get("/privacy/retention-due", response_model=RetentionSweep, tags=["privacy"],
             summary="The retention sweep: closed cases whose retention has run out, for the "
                     "head of office to confirm each erasure (nothing is erased here)",
             dependencies=[require_roles("head")])
    async def retention_due(principal: CurrentPrincipal,
                            limit: Annotated[int, Query(ge=1, le=500)] = 100
                            ) -> RetentionSweep:
        days = kernel.settings.privacy_retention_days
        today = d.office_date(datetime.now(UTC))
        rows = await kernel.pool.fetch(
            f"SELECT client_id, register_number, status, ended_on FROM {clients} "
            "WHERE office = $1 AND status = 'CLOSED' AND NOT erased AND ended_on IS NOT NULL "
            "AND ended_on + $2::int <= $3 ORDER BY ended_on, client_id LIMIT $4",
            principal.office, days, today, limit)
        due = []
        for r in rows:  # an auditor's hold lives in the case: read it there
            state, _ = await registrar.load(CaseRef(principal.office, r["client_id"]))
            if state.erased:
                continue
            due.append(RetentionDue(
                client_id=r["client_id"], register_number=r["register_number"],
                status=r["status"], ended_on=r["ended_on"],
                retention_ended_on=r["ended_on"] + timedelta(days=days),
                holds=[h for h in d.legal_holds(state, today, days)
                       if h["hold"] == "auditor_hold"]))
        return RetentionSweep(office=principal.office, today=today, retention_days=days,
                              due=due)

    @api.post("/clients/{client_id}/legal-holds", response_model=HoldOut, status_code=201,
              tags=["privacy"], summary="Hold a person's data against erasure (auditor)",
              dependencies=[require_roles("auditor")])
    async def place_hold(client_id: ClientId, body: HoldIn, request: Request,
                         principal: CurrentPrincipal) -> HoldOut:
        ref = CaseRef(body.office or principal.office, client_id)
        hold_id = new_id()
        now = datetime.now(UTC)
        decision = await registrar.change(ref, d.PlaceHold(hold_id, body.reason, principal.sub,
                                                           now), metadata(request, principal),
                                          now)
        return HoldOut(client_id=client_id, hold_id=hold_id, version=decision.version.sequence)

    @api.delete("/clients/{client_id}/legal-holds/{hold_id}", response_model=ChangedOut,
                tags=["privacy"], summary="Lift a legal hold (auditor)",
                dependencies=[require_roles("auditor")])
    async def lift_hold(client_id: ClientId, hold_id: Annotated[str, Path(max_length=64)],
                        request: Request, principal: CurrentPrincipal,
                        office: Annotated[str | None, Query(pattern=OFFICE_PATTERN)] = None
                        ) -> ChangedOut:
        ref = CaseRef(office or principal.office, client_id)
        now = datetime.now(UTC)
        decision = await registrar.change(ref, d.LiftHold(hold_id, principal.sub, now),
                                          metadata(request, principal), now)
        return ChangedOut(client_id=client_id, version=decision.version.sequence,
                          changed=bool(decision.events), events=[e.type for e in decision.events])

    return api


def client_view(state: d.Client, version: int) -> dict[str, Any]:
    """The client record: as registered, with later changes and corrections applied."""
    r = state.registered
    assert r is not None
    view = r.model_dump(mode="json")
    for field, value in state.corrections.items():
        target = view
        *path, last = field.split(".")
        for part in path:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[last] = value
    view["person"]["address"] = state.address
    view["officer_id"] = state.officer_id
    view["status"] = state.status.value
    view["is_child"] = state.is_child
    view["transferred_to"] = state.transferred_to.model_dump() if state.transferred_to else None
    view["erased"] = state.erased  # the personal fields then read as None
    view["version"] = version
    return view


def _same_request(cmd: d.RegisterClient, stored: d.ClientRegistered) -> bool:
    """A repeat of the same Idempotency-Key must carry the same registration."""
    person = stored.person
    return (cmd.program == stored.program and cmd.decision == stored.decision
            and cmd.origin_institution == stored.origin_institution
            and cmd.period == stored.period and cmd.full_name == person.full_name
            and cmd.nik == person.nik and cmd.address == person.address
            and cmd.phone == person.phone and cmd.family_contact == stored.family_contact
            and cmd.officer_id == stored.officer_id
            and cmd.birth_date in (None, person.birth_date) and cmd.sex in (None, person.sex))


def _like(q: str) -> str:
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _encode_cursor(item: ClientSummary) -> str:
    raw = json.dumps([item.registered_at.isoformat(), item.client_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, client_id = json.loads(raw)
        return datetime.fromisoformat(at), str(client_id)
    except (ValueError, TypeError):
        raise Problem(422, "Invalid request", "the cursor is not one this API gave out",
                      rule="cursor", field="query.cursor") from None
