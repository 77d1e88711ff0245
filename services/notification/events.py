"""Notification's published language: the agency feed and the webhooks agencies receive.

Every public event of the registration, guidance and supervision contexts is republished on
`agency.<office>.<EventType>` (stream AGENCY_FEED) and sent to subscribed agencies as a
CloudEvent, its data redacted to the subscriber's level. At the IDENTIFIERS level an event
shows only the fields named here (an allowlist: a new field is private until someone decides
otherwise); `FEED_PAYLOADS` holds the model of each such redacted body, built from the
source context's own event model, so the documents an integrator reads and the bytes we
send come from one definition.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, create_model

from services.guidance.events import EVENTS as GUIDANCE_EVENTS
from services.registration.events import EVENTS as REGISTRATION_EVENTS
from services.supervision.events import EVENTS as SUPERVISION_EVENTS
from shared.events import Event

FEED_CONTEXT = "agency_feed"


class DataLevel(StrEnum):
    IDENTIFIERS = "IDENTIFIERS"
    FULL = "FULL"


# Event type -> the data fields an IDENTIFIERS subscriber receives. Only these event types
# can be subscribed to; the others (register books, NIK index, internal bookkeeping) are
# not facts for agencies.
IDENTIFIER_FIELDS: dict[str, tuple[str, ...]] = {
    "ClientRegistered": ("client_id", "office", "register_number", "program", "decision",
                         "origin_institution", "period", "registered_at", "transferred_from"),
    "OfficerAssigned": ("officer_id", "assigned_at"),
    "AddressChanged": ("changed_at",),
    "ClientDetailsCorrected": ("field", "corrected_at"),
    "ClientTransferred": ("to_office", "new_client_id", "tpp_decision_id", "transferred_at"),
    "RegistrationClosed": ("reason", "closed_on"),
    "GuidanceOpened": ("client_id", "office", "program", "period_start_on", "period_end_on",
                       "stage", "litmas_due_at", "opened_at"),
    "LitmasSubmitted": ("purpose", "submitted_at", "late"),
    "LitmasOverdue": ("due_at", "detected_at"),
    "TppDecisionRecorded": ("decision_id", "subject", "outcome", "met_on"),
    "ProgramDrafted": ("program_id", "stage"),
    "GuidanceSessionHeld": ("session_id", "kind", "held_on", "stage", "group_id"),
    "StageAdvanced": ("from_stage", "to_stage", "tpp_decision_id", "advanced_at"),
    "RevocationProposed": ("tpp_decision_id", "violation_ids", "proposed_at"),
    "RevocationImposed": ("imposed_at",),
    "GuidanceClosed": ("reason", "closed_on", "letter_number", "stage", "transferred_to"),
    "SupervisionStarted": ("client_id", "office", "program", "period_start_on",
                           "period_end_on", "started_at"),
    "ReportingPlanSet": ("interval_days", "first_due_on"),
    "VisitLogged": ("visit_id", "kind", "occurred_at", "counts_as_report"),
    "ReportMissed": ("due_on", "consecutive"),
    "ViolationRecorded": ("violation_id", "category", "code", "recorded_on"),
    "TppReviewRequested": ("violation_id", "requested_on"),
    "SupervisionEnded": ("reason", "ended_on"),
}
PUBLIC_EVENT_TYPES = frozenset(IDENTIFIER_FIELDS)

# CloudEvents attributes an agency receives; actor and hash chain only at FULL (the chain
# hashes the full body, so it cannot be checked against a redacted one)
IDENTIFIER_ATTRIBUTES = ("ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject",
                         "ce-time", "ce-office", "ce-sequence", "ce-correlationid",
                         "ce-causationid")
FULL_ATTRIBUTES = (*IDENTIFIER_ATTRIBUTES, "ce-actor", "ce-prevhash", "ce-hash")


class FeedPayload(BaseModel):
    """The data of a public event at the IDENTIFIERS level."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def feed_payload(event: type[Event]) -> type[FeedPayload]:
    """The IDENTIFIERS-level body of `event`: its allowlisted fields, typed as the event
    types them. Optional in the feed: an older version of the event may lack a field."""
    keep = IDENTIFIER_FIELDS[event.event_type]
    fields = {name: (info.annotation | None, None) for name, info in event.model_fields.items()
              if name in keep}
    return create_model(f"{event.event_type}Identifiers", __base__=FeedPayload,
                        __doc__=f"{event.event_type} as an IDENTIFIERS subscriber receives it.",
                        **fields)


FEED_PAYLOADS: dict[str, type[FeedPayload]] = {
    cls.event_type: feed_payload(cls)
    for registry in (REGISTRATION_EVENTS, GUIDANCE_EVENTS, SUPERVISION_EVENTS)
    for cls in registry.types() if cls.event_type in PUBLIC_EVENT_TYPES}
