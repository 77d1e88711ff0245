"""A case as an auditor reads it at an instant: what the events stored up to then say.

The audit owns no decisions and reads no other context's domain: it folds each context's
published events (`services.<context>.events`) into the facts they state. These views are
the audit's own; the services keep whatever their decisions need and may change it freely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from services.guidance import events as guidance
from services.registration import events as registration
from services.supervision import events as supervision
from shared.events import Event

View = dict[str, Any]


def registration_view(events: Iterable[Event]) -> View:
    view: View = {"status": "NEW", "register_number": None, "program": None,
                  "officer_id": None, "address": None, "corrections": {},
                  "transferred_to": None, "closed_on": None}
    for e in events:
        match e:
            case registration.ClientRegistered():
                view.update(status="ACTIVE", register_number=e.register_number,
                            program=e.program.value, officer_id=e.officer_id,
                            address=e.person.address)
            case registration.OfficerAssigned():
                view["officer_id"] = e.officer_id
            case registration.AddressChanged():
                view["address"] = e.address
            case registration.ClientDetailsCorrected():
                view["corrections"] = {**view["corrections"], e.field: e.new_value}
                if e.field == "program":
                    view["program"] = e.new_value
            case registration.ClientTransferred():
                view.update(status="TRANSFERRED", transferred_to={
                    "office": e.to_office, "client_id": e.new_client_id})
            case registration.RegistrationClosed():
                view.update(status="CLOSED", closed_on=e.closed_on)
    return view


def guidance_view(events: Iterable[Event]) -> View:
    view: View = {"status": "NEW", "stage": None, "program": None, "officer_id": None,
                  "litmas_due_at": None, "litmas_submitted": False, "litmas_overdue": False,
                  "decisions": {}, "programs_for": [], "revocation_proposed": False,
                  "revocation_imposed": False, "closed_reason": None, "closed_on": None}
    for e in events:
        match e:
            case guidance.GuidanceOpened():
                view.update(status="OPEN", stage=e.stage.value, program=e.program,
                            officer_id=e.officer_id, litmas_due_at=e.litmas_due_at)
            case guidance.CaseOfficerAssigned():
                view["officer_id"] = e.officer_id
            case guidance.LitmasRequested():
                view["litmas_due_at"] = e.due_at
            case guidance.LitmasSubmitted():
                view["litmas_submitted"] = True
            case guidance.LitmasOverdue():
                view["litmas_overdue"] = True
            case guidance.TppDecisionRecorded():
                view["decisions"] = {**view["decisions"], e.decision_id: {
                    "subject": e.subject.value, "outcome": e.outcome.value, "met_on": e.met_on}}
            case guidance.ProgramDrafted():
                view["programs_for"] = [*view["programs_for"], e.stage.value]
            case guidance.StageAdvanced():
                view["stage"] = e.to_stage.value
            case guidance.RevocationProposed():
                view["revocation_proposed"] = True
            case guidance.RevocationImposed():
                view["revocation_imposed"] = True
            case guidance.GuidanceClosed():
                view.update(status="CLOSED", closed_reason=e.reason.value,
                            closed_on=e.closed_on)
    return view


def supervision_view(events: Iterable[Event]) -> View:
    view: View = {"status": "NEW", "officer_id": None, "plan": None, "next_due_on": None,
                  "visits": 0, "reports": 0, "missed_run": [], "violations": []}
    for e in events:
        match e:
            case supervision.SupervisionStarted():
                view.update(status="ACTIVE", officer_id=e.officer_id)
            case supervision.SupervisingOfficerAssigned():
                view["officer_id"] = e.officer_id
            case supervision.ReportingPlanSet():
                view.update(plan={"interval_days": e.interval_days, "grace_days": e.grace_days,
                                  "remote_allowed": e.remote_allowed},
                            next_due_on=e.next_due_on)
            case supervision.VisitLogged():
                view["visits"] += 1
                if e.counts_as_report:
                    view["reports"] += 1
                    # the event states how many misses still stand after the report: the
                    # latest ones (a report entered late leaves the misses after it)
                    run, standing = view["missed_run"], e.missed_in_a_row
                    view["missed_run"] = run[len(run) - standing:] if standing else []
                    if e.covers_due_on is not None and view["plan"]:
                        view["next_due_on"] = e.covers_due_on + timedelta(
                            days=view["plan"]["interval_days"])
            case supervision.ReportMissed():
                view["missed_run"] = [*view["missed_run"], e.due_on]
                if view["plan"]:
                    view["next_due_on"] = e.due_on + timedelta(days=view["plan"]["interval_days"])
            case supervision.ViolationRecorded():
                view["violations"] = [*view["violations"], {
                    "violation_id": e.violation_id, "category": e.category.value,
                    "code": e.code, "recorded_on": e.recorded_on}]
            case supervision.SupervisionEnded():
                view["status"] = "ENDED"
    return view


VIEWS: dict[str, Callable[[Iterable[Event]], View]] = {
    "registration": registration_view,
    "guidance": guidance_view,
    "supervision": supervision_view,
}
