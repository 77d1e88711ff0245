"""Registration: receiving a client into guidance. Pure: no IO, no clock, no random ids.

Words: a *klien* (client) is one registration of a person under community guidance; a *PK*
(Pembimbing Kemasyarakatan) is the officer assigned to the client; the *NIK* (Nomor Induk
Kependudukan) is the 16-digit national identity number; the *register book* gives each
registration of an office a number unique within the office and year.

Three kinds of case live in the registration context:
- the client: `bapas.<office>.registration.<client_id>`;
- the office's register book for a year: `...registration.register-<year>`, whose last
  event holds the last number issued;
- the NIK index of an office: `...registration.nik-<digest>`, whose last event says which
  client, if any, holds the NIK actively (a person has one active registration per office).
A registration changes all three in one atomic append.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.decider import Decider
from shared.errors import DomainConflict, DomainError
from shared.events import Event
from shared.office_time import WIB, office_date

from .events import (AddressChanged, CaseLink, ClientDetailsCorrected, ClientRegistered,
                     ClientTransferred, Decision, FamilyContact, LegalHoldLifted,
                     LegalHoldPlaced, NikClaimed, NikReleased, OfficerAssigned, Period, Person,
                     PersonErased, Program, RegisterNumberIssued, RegistrationClosed, Sex)

CHILD_PROGRAMS = frozenset({Program.DIVERSI, Program.PIDANA_PENGAWASAN})


class Status(StrEnum):
    NEW = "NEW"
    ACTIVE = "ACTIVE"
    TRANSFERRED = "TRANSFERRED"
    CLOSED = "CLOSED"

# ------------------------------------------------------------------------------ commands


@dataclass(frozen=True)
class RegisterClient:
    client_id: str
    office: str
    program: Program
    decision: Decision
    origin_institution: str
    period: Period
    full_name: str
    nik: str
    address: str
    registered_at: datetime
    officer_id: str | None = None
    phone: str | None = None
    birth_date: date | None = None   # as stated; derived from the NIK when absent
    sex: Sex | None = None           # as stated; derived from the NIK when absent
    family_contact: FamilyContact | None = None
    transferred_from: CaseLink | None = None


@dataclass(frozen=True)
class AssignOfficer:
    officer_id: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class ChangeAddress:
    address: str
    reported_by_client: bool
    at: datetime


@dataclass(frozen=True)
class CorrectDetails:
    field: str
    value: Any
    reason: str
    at: datetime


@dataclass(frozen=True)
class CloseRegistration:
    reason: str
    closed_on: date


@dataclass(frozen=True)
class PlaceHold:
    hold_id: str
    reason: str
    by: str
    at: datetime


@dataclass(frozen=True)
class LiftHold:
    hold_id: str
    by: str
    at: datetime


@dataclass(frozen=True)
class ErasePerson:
    """Erase the person's personal data (UU 27/2022) once no legal hold stands: guidance
    still open, the retention period not yet over, or a hold placed by an auditor."""

    legal_basis: str
    by: str
    at: datetime
    retention_days: int
    # the person's earlier cases, each transferred to the next, nearest first (read by the
    # caller, who can reach other offices' cases); by default only the case this one names
    earlier: tuple[CaseLink, ...] | None = None


@dataclass(frozen=True)
class TransferClient:
    to_office: str
    tpp_decision_id: str
    approved_by: str
    new_client_id: str
    at: datetime


# --------------------------------------------------------------------------------- state


class Client(BaseModel):
    """A client as the decisions of this context need it (also the officer's record)."""

    model_config = ConfigDict(frozen=True)

    status: Status = Status.NEW
    registered: ClientRegistered | None = None
    officer_id: str | None = None
    address: str | None = None
    corrections: dict[str, Any] = {}
    transferred_to: CaseLink | None = None
    ended_on: date | None = None           # closed or transferred away (office date)
    holds: dict[str, str] = {}             # auditors' legal holds: hold id -> reason
    erased: bool = False

    @property
    def is_child(self) -> bool:
        """Children's cases are seen only by their officer, supervisors and the head."""
        if self.registered is None:
            return False
        return self.registered.is_child or Program(self.value("program")) in CHILD_PROGRAMS

    def value(self, field: str) -> Any:
        """The current value of a correctable field."""
        if field in self.corrections:
            return self.corrections[field]
        return _read(self.registered, field) if self.registered else None


class BookState(BaseModel):
    model_config = ConfigDict(frozen=True)
    last_number: int = 0


class NikState(BaseModel):
    model_config = ConfigDict(frozen=True)
    holder: str | None = None  # the client id holding the NIK actively


def evolve(state: Client, event: Event) -> Client:
    match event:
        case ClientRegistered():
            return Client(status=Status.ACTIVE, registered=event, officer_id=event.officer_id,
                          address=event.person.address)
        case OfficerAssigned(officer_id=officer):
            return state.model_copy(update={"officer_id": officer})
        case AddressChanged(address=address):
            return state.model_copy(update={"address": address})
        case ClientDetailsCorrected(field=field, new_value=value):
            return state.model_copy(update={"corrections": {**state.corrections, field: value}})
        case RegistrationClosed(closed_on=closed_on):
            return state.model_copy(update={"status": Status.CLOSED, "ended_on": closed_on})
        case ClientTransferred(to_office=office, new_client_id=new_id, transferred_at=at):
            return state.model_copy(update={"status": Status.TRANSFERRED,
                                            "ended_on": office_date(at),
                                            "transferred_to": CaseLink(office=office,
                                                                       client_id=new_id)})
        case LegalHoldPlaced(hold_id=hold_id, reason=reason):
            return state.model_copy(update={"holds": {**state.holds, hold_id: reason}})
        case LegalHoldLifted(hold_id=hold_id):
            return state.model_copy(update={"holds": {k: v for k, v in state.holds.items()
                                                      if k != hold_id}})
        case PersonErased():
            return state.model_copy(update={"erased": True})
    return state


def evolve_book(state: BookState, event: Event) -> BookState:
    if isinstance(event, RegisterNumberIssued):
        return BookState(last_number=event.number)
    return state


def evolve_nik(state: NikState, event: Event) -> NikState:
    match event:
        case NikClaimed(client_id=holder):
            return NikState(holder=holder)
        case NikReleased():
            return NikState(holder=None)
    return state


# ------------------------------------------------------------------------ identity rules


def book_key(at: datetime) -> str:
    return f"register-{register_year(at)}"


def register_year(at: datetime) -> int:
    return at.astimezone(WIB).year  # the register year follows the office calendar


def register_number(office: str, year: int, number: int) -> str:
    return f"{office.upper()}-{year}-{number:05d}"


@dataclass(frozen=True)
class NikFacts:
    birth_date: date
    sex: Sex


def nik_facts(nik: str, on: date) -> NikFacts:
    """Birth date and sex written in a NIK: DDMMYY, 40 added to the day for women.

    The year has two digits: the latest century that does not put the birth after `on`.
    The NIK must have passed `stdnum.id.nik` validation already.
    """
    day, month, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    sex = Sex.F if day > 40 else Sex.M
    day = day - 40 if day > 40 else day
    for century in (2000, 1900):
        try:
            born = date(century + yy, month, day)
        except ValueError:
            continue
        if born <= on:
            return NikFacts(born, sex)
    raise DomainError("the NIK does not hold a valid birth date", field="person.nik",
                      rule="nik_birth_date")


def age_on(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


# ---------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Registration:
    """What one registration appends: to the client, the register book, the NIK index."""

    client: list[Event]
    book: list[Event]
    nik: list[Event]


def register(cmd: RegisterClient, client: Client, book: BookState, nik: NikState) -> Registration:
    if client.status is not Status.NEW:
        raise DomainConflict("this client id is already registered", rule="already_registered")
    if cmd.period.end_on <= cmd.period.start_on:
        raise DomainError("the guidance period must end after it starts",
                          field="period.end_on", rule="period_order")
    today = office_date(cmd.registered_at)
    if cmd.decision.issued_on > today:
        raise DomainError("the decision letter cannot be dated in the future",
                          field="decision.issued_on", rule="decision_date")
    warnings: list[str] = []
    if nik.holder is not None:
        if cmd.transferred_from is None:
            raise DomainConflict(
                f"this NIK already has an active registration in this office: client "
                f"{nik.holder}", field="person.nik", rule="nik_active",
                extra={"existing_client_id": nik.holder})
        warnings.append(f"the NIK also has an active registration here (client {nik.holder})")
    facts = nik_facts(cmd.nik, today)
    birth_date = cmd.birth_date or facts.birth_date
    sex = cmd.sex or facts.sex
    if birth_date != facts.birth_date:
        warnings.append(f"birth_date {birth_date} differs from the NIK ({facts.birth_date}); "
                        "kept as stated")
    if sex != facts.sex:
        warnings.append(f"sex {sex} differs from the NIK ({facts.sex}); kept as stated")
    if birth_date > today:
        raise DomainError("the birth date lies in the future", field="person.birth_date",
                          rule="birth_date_future")
    year = register_year(cmd.registered_at)
    number = book.last_number + 1
    registered = ClientRegistered(
        client_id=cmd.client_id, office=cmd.office,
        register_number=register_number(cmd.office, year, number), program=cmd.program,
        decision=cmd.decision, origin_institution=cmd.origin_institution, period=cmd.period,
        person=Person(full_name=cmd.full_name, nik=cmd.nik, birth_date=birth_date, sex=sex,
                      address=cmd.address, phone=cmd.phone),
        family_contact=cmd.family_contact, officer_id=cmd.officer_id,
        is_child=cmd.program in CHILD_PROGRAMS or age_on(birth_date, today) < 18,
        registered_at=cmd.registered_at, transferred_from=cmd.transferred_from,
        warnings=warnings)
    return Registration(
        client=[registered],
        book=[RegisterNumberIssued(number=number, register_number=registered.register_number,
                                   client_id=cmd.client_id)],
        nik=[] if nik.holder is not None else [NikClaimed(client_id=cmd.client_id)])


def _require_active(state: Client) -> ClientRegistered:
    if state.status is Status.NEW or state.registered is None:
        raise DomainError("no such client", rule="not_found", status=404)
    if state.status is Status.TRANSFERRED:
        assert state.transferred_to is not None
        raise DomainConflict(f"the client was transferred to office {state.transferred_to.office}"
                             "; this record is read-only", rule="transferred")
    if state.status is Status.CLOSED:
        raise DomainConflict("guidance has ended; the record is read-only", rule="closed")
    return state.registered


def legal_holds(state: Client, today: date, retention_days: int) -> list[dict[str, Any]]:
    """What stands in the way of erasing the person, each named for the head of office."""
    holds: list[dict[str, Any]] = []
    if state.status is Status.ACTIVE:
        holds.append({"hold": "open_case", "message": "guidance of this client is still open"})
    elif state.status is Status.TRANSFERRED and state.transferred_to is not None:
        holds.append({"hold": "transferred", "office": state.transferred_to.office,
                      "message": "the client's guidance continues at office "
                      f"{state.transferred_to.office}; their record is erased there"})
    if state.status is not Status.ACTIVE and state.ended_on is not None:
        until = state.ended_on + timedelta(days=retention_days)
        if today < until:
            holds.append({"hold": "retention", "until": until.isoformat(),
                          "message": f"the retention period runs until {until}"})
    for hold_id, reason in state.holds.items():
        holds.append({"hold": "auditor_hold", "hold_id": hold_id,
                      "message": f"an auditor holds the data: {reason}"})
    return holds


def decide_privacy(cmd: PlaceHold | LiftHold | ErasePerson, state: Client) -> list[Event]:
    """Legal holds and erasure: they apply to closed records too."""
    if state.status is Status.NEW or state.registered is None:
        raise DomainError("no such client", rule="not_found", status=404)
    match cmd:
        case PlaceHold(hold_id=hold_id, reason=reason, by=by, at=at):
            if state.erased:
                raise DomainConflict("the person is erased already", rule="erased")
            return [LegalHoldPlaced(hold_id=hold_id, reason=reason, placed_by=by, placed_at=at)]
        case LiftHold(hold_id=hold_id, by=by, at=at):
            if hold_id not in state.holds:
                raise DomainError(f"no legal hold {hold_id} on this client", field="hold_id",
                                  rule="not_found", status=404)
            return [LegalHoldLifted(hold_id=hold_id, lifted_by=by, lifted_at=at)]
        case ErasePerson(legal_basis=basis, by=by, at=at, retention_days=days,
                         earlier=earlier):
            if state.erased:
                return []
            holds = legal_holds(state, office_date(at), days)
            if holds:
                raise DomainConflict(
                    "the person cannot be erased while a legal hold stands: "
                    + "; ".join(h["message"] for h in holds),
                    rule="legal_hold", field="client_id", extra={"holds": holds})
            link = state.registered.transferred_from
            if earlier is None:
                earlier = (link,) if link else ()
            return [PersonErased(legal_basis=basis, erased_by=by, erased_at=at, cases=[
                CaseLink(office=state.registered.office, client_id=state.registered.client_id),
                *earlier])]
    raise TypeError(f"not a privacy command: {cmd!r}")


def decide(cmd: AssignOfficer | ChangeAddress | CorrectDetails | TransferClient
           | CloseRegistration | PlaceHold | LiftHold | ErasePerson, state: Client
           ) -> list[Event]:
    """Changes to a registered client (registration itself is `register`)."""
    if isinstance(cmd, PlaceHold | LiftHold | ErasePerson):
        return decide_privacy(cmd, state)
    if isinstance(cmd, CloseRegistration) and state.status is not Status.ACTIVE:
        return []  # transferred or closed already: nothing more to record
    registered = _require_active(state)
    match cmd:
        case CloseRegistration(reason=reason, closed_on=closed_on):
            return [RegistrationClosed(reason=reason, closed_on=closed_on)]
        case AssignOfficer(officer_id=officer, reason=reason, at=at):
            if officer == state.officer_id:
                return []  # already so: nothing to record
            return [OfficerAssigned(officer_id=officer, previous_officer_id=state.officer_id,
                                    reason=reason, assigned_at=at)]
        case ChangeAddress(address=address, reported_by_client=by_client, at=at):
            if address == state.address:
                return []
            return [AddressChanged(address=address, previous_address=state.address or "",
                                   reported_by_client=by_client, changed_at=at)]
        case CorrectDetails(field=field, value=value, reason=reason, at=at):
            if field not in CORRECTABLE:
                raise DomainError(f"{field} cannot be corrected here; correctable: "
                                  f"{', '.join(sorted(CORRECTABLE))}", field="field",
                                  rule="not_correctable")
            new = CORRECTABLE[field](value)
            old = state.value(field)
            if _plain(new) == _plain(old):
                return []
            if field == "period.end_on" and new <= _date(state.value("period.start_on")):
                raise DomainError("the guidance period must end after it starts",
                                  field="value", rule="period_order")
            if field == "period.start_on" and new >= _date(state.value("period.end_on")):
                raise DomainError("the guidance period must end after it starts",
                                  field="value", rule="period_order")
            return [ClientDetailsCorrected(field=field, old_value=_plain(old),
                                           new_value=_plain(new), reason=reason,
                                           corrected_at=at)]
        case TransferClient(to_office=office, tpp_decision_id=decision_id,
                            approved_by=approver, new_client_id=new_id, at=at):
            if office == registered.office:
                raise DomainError("the client is already in this office", field="to_office",
                                  rule="same_office")
            return [ClientTransferred(to_office=office, new_client_id=new_id,
                                      tpp_decision_id=decision_id, approved_by=approver,
                                      transferred_at=at)]
    raise TypeError(f"not a registration command: {cmd!r}")


# ---------------------------------------------------------------------------- corrections


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DomainError("the value must be non-empty text", field="value", rule="text")
    return value.strip()


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _date(value: Any) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise DomainError("the value must be a date (YYYY-MM-DD)", field="value",
                          rule="date") from None


def _sex(value: Any) -> Sex:
    try:
        return Sex(value)
    except ValueError:
        raise DomainError("the value must be F or M", field="value", rule="sex") from None


def _program(value: Any) -> Program:
    try:
        return Program(value)
    except ValueError:
        raise DomainError(f"the value must be one of {', '.join(Program)}", field="value",
                          rule="program") from None


CORRECTABLE = {
    "person.full_name": _text,
    "person.birth_date": _date,
    "person.sex": _sex,
    "person.phone": _optional_text,
    "decision.number": _text,
    "decision.issued_by": _text,
    "decision.issued_on": _date,
    "origin_institution": _text,
    "program": _program,
    "period.start_on": _date,
    "period.end_on": _date,
    "family_contact.name": _text,
    "family_contact.relation": _text,
    "family_contact.phone": _optional_text,
}


def _read(model: BaseModel, path: str) -> Any:
    value: Any = model
    for part in path.split("."):
        value = getattr(value, part, None) if value is not None else None
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value


# the context's decider: the services run their commands with it, the audit folds with it
DECIDER = Decider(Client(), decide, evolve)
