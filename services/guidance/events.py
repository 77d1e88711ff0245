"""Guidance's published language: the events this context stores and every other context
may read (the frozen pydantic models, their versions and upcasters, the enums and values
they carry). Other contexts import this module, never `domain`.

Words: the *litmas* (penelitian kemasyarakatan) is the social-inquiry report that grounds
guidance; the *TPP* (Tim Pengamat Pemasyarakatan) is the office's review panel; guidance
runs through *tahap awal* (AWAL), *tahap lanjutan* (LANJUTAN) and *tahap akhir* (AKHIR).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict

from shared.events import Event, EventRegistry
from shared.privacy import PERSONAL

EVENTS = EventRegistry("guidance")
CONTEXT = "guidance"


class Stage(StrEnum):
    AWAL = "AWAL"
    LANJUTAN = "LANJUTAN"
    AKHIR = "AKHIR"


class LitmasPurpose(StrEnum):
    REINTEGRASI = "REINTEGRASI"    # for release programs (PB, CB, CMB, ASIMILASI)
    DIVERSI = "DIVERSI"            # for a child's diversion
    PEMBIMBINGAN = "PEMBIMBINGAN"  # for guidance under a conditional or supervision sentence


class RiskLevel(StrEnum):
    RENDAH = "RENDAH"
    SEDANG = "SEDANG"
    TINGGI = "TINGGI"


class TppSubject(StrEnum):
    STAGE = "STAGE"
    PROGRAM = "PROGRAM"
    REVOCATION = "REVOCATION"
    TRANSFER = "TRANSFER"


class TppOutcome(StrEnum):
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    DEFERRED = "DEFERRED"


class GuidanceKind(StrEnum):
    KEPRIBADIAN_MENTAL = "KEPRIBADIAN_MENTAL"  # religion, character
    KEPRIBADIAN_SOSIAL = "KEPRIBADIAN_SOSIAL"  # social and civic life
    KEMANDIRIAN = "KEMANDIRIAN"                # skills, work training
    KETERTIBAN = "KETERTIBAN"                  # security, order, obeying rules
    KESEHATAN = "KESEHATAN"                    # health
    SENI_BUDAYA = "SENI_BUDAYA"                # arts and culture


class Approach(StrEnum):
    INDIVIDU = "INDIVIDU"
    KELOMPOK = "KELOMPOK"   # group
    KLASIKAL = "KLASIKAL"   # clients who share a problem


class Frequency(StrEnum):
    WEEKLY = "WEEKLY"
    BIWEEKLY = "BIWEEKLY"
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    ONCE = "ONCE"


class Participant(StrEnum):
    KLIEN = "KLIEN"            # the client
    KELUARGA = "KELUARGA"      # family
    MASYARAKAT = "MASYARAKAT"  # community: village head, health centre
    PK = "PK"                  # the officer
    LAINNYA = "LAINNYA"        # others


class CloseReason(StrEnum):
    COMPLETED = "COMPLETED"
    REVOKED = "REVOKED"
    TRANSFERRED = "TRANSFERRED"
    DECEASED = "DECEASED"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Activity(_Value):
    kind: GuidanceKind
    approach: Approach
    frequency: Frequency
    description: str


# ------------------------------------------------------------------------------- events


@EVENTS.event()
class GuidanceOpened(Event):
    """Guidance begins at tahap awal when a client is registered (a reaction)."""

    client_id: str
    office: str
    program: str
    period_start_on: date
    period_end_on: date
    officer_id: str | None
    is_child: bool
    stage: Stage
    litmas_requested_at: datetime | None
    litmas_due_at: datetime | None
    review_dates: list[date]
    opened_at: datetime
    transferred_from: dict[str, str] | None = None


@EVENTS.event()
class CaseOfficerAssigned(Event):
    """The registration office assigned another officer; guidance follows (a reaction)."""

    officer_id: str
    assigned_at: datetime


@EVENTS.event()
class LitmasRequested(Event):
    """The first officer of a case was assigned after opening: the litmas clock starts."""

    requested_at: datetime
    due_at: datetime


@EVENTS.event()
class LitmasSubmitted(Event):
    purpose: LitmasPurpose
    risk_level: RiskLevel
    needs: Annotated[list[str] | None, PERSONAL]  # personal: sealed, None once erased
    recommendation: Annotated[str | None, PERSONAL]
    summary: Annotated[str | None, PERSONAL]
    submitted_by: str
    submitted_at: datetime
    late: bool


@EVENTS.event()
class LitmasOverdue(Event):
    due_at: datetime
    officer_id: str | None
    detected_at: datetime


@EVENTS.event()
class TppDecisionRecorded(Event):
    decision_id: str
    subject: TppSubject
    outcome: TppOutcome
    met_on: date
    members: list[str]
    notes: Annotated[str | None, PERSONAL]
    recorded_by: str


@EVENTS.event()
class ProgramDrafted(Event):
    program_id: str
    stage: Stage
    activities: list[Activity]
    drafted_by: str


@EVENTS.event()
class GuidanceSessionHeld(Event):
    session_id: str
    kind: GuidanceKind
    approach: Approach
    held_on: date
    participants: list[Participant]
    notes: Annotated[str | None, PERSONAL]
    stage: Stage
    group_id: str | None = None


@EVENTS.event()
class StageAdvanced(Event):
    from_stage: Stage
    to_stage: Stage
    tpp_decision_id: str
    advanced_at: datetime


@EVENTS.event()
class RevocationProposed(Event):
    tpp_decision_id: str
    violation_ids: list[str]
    proposed_by: str
    proposed_at: datetime


@EVENTS.event()
class RevocationImposed(Event):
    """The head of the office revokes temporarily; Kanwil and the origin Lapas are told."""

    imposed_by: str
    imposed_at: datetime


@EVENTS.event()
class GuidanceClosed(Event):
    reason: CloseReason
    closed_on: date
    letter_number: str | None
    closed_by: str
    stage: Stage
    transferred_to: dict[str, str] | None = None
