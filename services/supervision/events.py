"""Supervision's published language: the events this context stores and every other
context may read (the frozen pydantic models, their versions and upcasters, the enums they
carry). Other contexts import this module, never `domain`.

Words: *wajib lapor* is the client's duty to report to the office on a schedule; a
*kunjungan* is a visit by the officer; a *pelanggaran* is a violation, *UMUM* (general) or
*KHUSUS* (specific).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from shared.events import Event, EventRegistry
from shared.privacy import PERSONAL

EVENTS = EventRegistry("supervision")
CONTEXT = "supervision"


class ContactKind(StrEnum):
    LAPOR_DIRI = "LAPOR_DIRI"                      # the client reports at the office
    LAPOR_JARAK_JAUH = "LAPOR_JARAK_JAUH"          # remote report (needs a recorded reason)
    KUNJUNGAN_RUMAH = "KUNJUNGAN_RUMAH"            # home visit
    KUNJUNGAN_KERJA = "KUNJUNGAN_KERJA"            # workplace visit
    PERTEMUAN_KELUARGA = "PERTEMUAN_KELUARGA"      # meeting with the family
    PERTEMUAN_MASYARAKAT = "PERTEMUAN_MASYARAKAT"  # meeting with the community


class Outcome(StrEnum):
    MET_COMPLIED = "MET_COMPLIED"
    MET_FAILED_TO_COMPLY = "MET_FAILED_TO_COMPLY"
    ACCEPTABLE_ABSENCE = "ACCEPTABLE_ABSENCE"
    NOT_FOUND = "NOT_FOUND"
    MOVED_UNREPORTED = "MOVED_UNREPORTED"


class Category(StrEnum):
    UMUM = "UMUM"
    KHUSUS = "KHUSUS"


class Source(StrEnum):
    OFFICER = "OFFICER"                # recorded by an officer
    VISIT = "VISIT"                    # found on a visit
    MISSED_REPORTS = "MISSED_REPORTS"  # three consecutive missed reports


# ------------------------------------------------------------------------------- events


@EVENTS.event()
class SupervisionStarted(Event):
    client_id: str
    office: str
    program: str
    officer_id: str | None
    is_child: bool
    period_start_on: date
    period_end_on: date
    started_at: datetime


@EVENTS.event()
class SupervisingOfficerAssigned(Event):
    officer_id: str


@EVENTS.event()
class ReportingPlanSet(Event):
    interval_days: int
    grace_days: int
    remote_allowed: bool
    first_due_on: date
    next_due_on: date
    set_by: str


@EVENTS.event()
class VisitLogged(Event):
    visit_id: str
    kind: ContactKind
    occurred_at: datetime
    outcome: Outcome
    notes: Annotated[str | None, PERSONAL]  # personal: sealed, None once erased
    remote_reason: Annotated[str | None, PERSONAL]
    logged_by: str
    counts_as_report: bool
    covers_due_on: date | None
    missed_in_a_row: int = 0  # consecutive misses still standing after this contact


@EVENTS.event()
class ReportMissed(Event):
    due_on: date
    grace_days: int
    consecutive: int
    detected_on: date


@EVENTS.event()
class ViolationRecorded(Event):
    violation_id: str
    category: Category
    code: str
    source: Source
    source_id: str | None
    notes: Annotated[str | None, PERSONAL]
    recorded_by: str
    recorded_on: date


@EVENTS.event()
class TppReviewRequested(Event):
    """The review panel should look at the case; nothing is revoked automatically."""

    reason: str
    violation_id: str
    requested_on: date


@EVENTS.event()
class SupervisionEnded(Event):
    reason: str
    ended_on: date
