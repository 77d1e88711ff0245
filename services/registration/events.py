"""Registration's published language: the events this context stores and every other
context may read (the frozen pydantic models, their versions and upcasters, the enums and
values they carry). Other contexts import this module, never `domain`.

Words: a *klien* (client) is one registration of a person under community guidance; a *PK*
(Pembimbing Kemasyarakatan) is the officer assigned to the client; the *NIK* (Nomor Induk
Kependudukan) is the 16-digit national identity number; the *register book* gives each
registration of an office a number unique within the office and year.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict

from shared.events import Event, EventRegistry
from shared.privacy import PERSONAL, IndexKey

EVENTS = EventRegistry("registration")
CONTEXT = "registration"


class Program(StrEnum):
    """Why a client is under guidance."""

    PB = "PB"                                # pembebasan bersyarat (parole)
    CB = "CB"                                # cuti bersyarat
    CMB = "CMB"                              # cuti menjelang bebas
    ASIMILASI = "ASIMILASI"                  # assimilation at home
    DIVERSI = "DIVERSI"                      # child diversion agreement
    PIDANA_BERSYARAT = "PIDANA_BERSYARAT"    # conditional sentence
    PIDANA_PENGAWASAN = "PIDANA_PENGAWASAN"  # supervision sentence (children)


class Sex(StrEnum):
    F = "F"
    M = "M"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Decision(_Value):
    """The decision letter (SK) that puts the client under guidance."""

    number: str
    issued_by: str
    issued_on: date


class Period(_Value):
    start_on: date
    end_on: date


class Person(_Value):
    """Personal (sealed per person; None once the person is erased), but for the sex."""

    full_name: Annotated[str | None, PERSONAL]
    nik: Annotated[str | None, PERSONAL]
    birth_date: Annotated[date | None, PERSONAL]
    sex: Sex
    address: Annotated[str | None, PERSONAL]
    phone: Annotated[str | None, PERSONAL] = None


class FamilyContact(_Value):
    name: Annotated[str | None, PERSONAL]
    relation: Annotated[str | None, PERSONAL]
    phone: Annotated[str | None, PERSONAL] = None


class CaseLink(_Value):
    office: str
    client_id: str


# ------------------------------------------------------------------------------- events


@EVENTS.event()
class ClientRegistered(Event):
    client_id: str
    office: str
    register_number: str
    program: Program
    decision: Decision
    origin_institution: str
    period: Period
    person: Person
    family_contact: FamilyContact | None
    officer_id: str | None
    is_child: bool
    registered_at: datetime
    transferred_from: CaseLink | None = None
    warnings: list[str] = []


@EVENTS.event()
class OfficerAssigned(Event):
    officer_id: str
    previous_officer_id: str | None
    reason: str
    assigned_at: datetime


@EVENTS.event()
class AddressChanged(Event):
    address: Annotated[str | None, PERSONAL]
    previous_address: Annotated[str | None, PERSONAL]
    reported_by_client: bool
    changed_at: datetime


@EVENTS.event()
class ClientDetailsCorrected(Event):
    field: str
    old_value: Annotated[Any, PERSONAL]
    new_value: Annotated[Any, PERSONAL]
    reason: str
    corrected_at: datetime


@EVENTS.event()
class ClientTransferred(Event):
    to_office: str
    new_client_id: str
    tpp_decision_id: str
    approved_by: str
    transferred_at: datetime


@EVENTS.event()
class RegistrationClosed(Event):
    """Guidance has ended (a reaction to GuidanceClosed): the record is read-only and the
    person may be registered again."""

    reason: str
    closed_on: date


@EVENTS.event()
class LegalHoldPlaced(Event):
    """An auditor holds the person's data: it may not be erased until the hold is lifted."""

    hold_id: str
    reason: str
    placed_by: str
    placed_at: datetime


@EVENTS.event()
class LegalHoldLifted(Event):
    hold_id: str
    lifted_by: str
    lifted_at: datetime


@EVENTS.event()
class PersonErased(Event):
    """The person's data keys are destroyed (UU 27/2022, crypto-shredding): the personal
    fields of every event of `cases` read as None from now on; every other fact stays."""

    legal_basis: str
    erased_by: str
    erased_at: datetime
    cases: list[CaseLink]


@EVENTS.event()
class RegisterNumberIssued(Event):
    """On the office's register book: the number given to a client."""

    number: int
    register_number: str
    client_id: str


# The NIK index: one case per NIK and office, named `nikh-<keyed digest>` (IndexKey), so
# that neither the NIK nor a plain digest of it shows in a subject, a stream read raw or an
# event's `subject` attribute. Earlier versions named it `nik-<SHA-256 of the NIK>`;
# `bapas privacy seal-existing` renames those cases (see `rekeyed_nik_case`).
NIK_CASE_PREFIX = "nikh-"
UNKEYED_NIK_CASE = re.compile(r"nik-([0-9a-f]{40})")


def nik_case(nik: str, key: IndexKey) -> str:
    """The NIK index case of a NIK: the keyed digest of the unkeyed one, so that a case of
    an earlier version is renamed from its name alone (`rekeyed_nik_case`)."""
    return NIK_CASE_PREFIX + key.digest(hashlib.sha256(nik.encode()).hexdigest()[:40])


def rekeyed_nik_case(case_id: str, key: IndexKey) -> str | None:
    """The name `nik_case` gives a NIK index case named by an earlier version; None for a
    case of another kind."""
    match = UNKEYED_NIK_CASE.fullmatch(case_id)
    return NIK_CASE_PREFIX + key.digest(match.group(1)) if match else None


@EVENTS.event()
class NikClaimed(Event):
    """On the office's NIK index: this client is the person's active registration."""

    client_id: str


@EVENTS.event()
class NikReleased(Event):
    """On the office's NIK index: the registration holding the NIK is no longer active."""

    client_id: str
    reason: str
