"""The guidance case as an officer reads it, folded from its events, with what is due."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from shared.events import RecordedEvent
from shared.office_time import office_date

from . import domain as d

REVIEW_LEAD_DAYS = 7     # a review date shows as due this many days ahead
END_NOTICE_DAYS = 30     # the end of the guidance period shows this many days ahead


def case_view(events: list[RecordedEvent], now: datetime) -> dict[str, Any]:
    """Everything a reader needs about one case, and its open items as of `now`."""
    view: dict[str, Any] = {"litmas": {}, "programs": [], "sessions": [], "decisions": [],
                            "stages": [], "revocation": None, "closure": None}
    for e in events:
        data = e.data
        match data:
            case d.GuidanceOpened():
                view.update(client_id=data.client_id, office=data.office, program=data.program,
                            status=d.Status.OPEN.value, stage=data.stage.value,
                            officer_id=data.officer_id, is_child=data.is_child,
                            period={"start_on": data.period_start_on.isoformat(),
                                    "end_on": data.period_end_on.isoformat()},
                            review_dates=[x.isoformat() for x in data.review_dates],
                            opened_at=data.opened_at.isoformat(),
                            transferred_from=data.transferred_from)
                view["litmas"] = {"requested_at": _iso(data.litmas_requested_at),
                                  "due_at": _iso(data.litmas_due_at), "submitted": None,
                                  "overdue": False}
            case d.CaseOfficerAssigned():
                view["officer_id"] = data.officer_id
            case d.LitmasRequested():
                view["litmas"].update(requested_at=_iso(data.requested_at),
                                      due_at=_iso(data.due_at))
            case d.LitmasSubmitted():
                view["litmas"]["submitted"] = data.model_dump(mode="json")
            case d.LitmasOverdue():
                view["litmas"]["overdue"] = True
            case d.TppDecisionRecorded():
                view["decisions"].append({**data.model_dump(mode="json"),
                                          "recorded_at": e.time.isoformat()})
            case d.ProgramDrafted():
                view["programs"].append({**data.model_dump(mode="json"),
                                         "drafted_at": e.time.isoformat()})
            case d.GuidanceSessionHeld():
                view["sessions"].append(data.model_dump(mode="json"))
            case d.StageAdvanced():
                view["stage"] = data.to_stage.value
                view["stages"].append(data.model_dump(mode="json"))
            case d.RevocationProposed():
                view["revocation"] = {"proposed": data.model_dump(mode="json"), "imposed": None}
            case d.RevocationImposed():
                view["revocation"]["imposed"] = data.model_dump(mode="json")
            case d.GuidanceClosed():
                view["status"] = d.Status.CLOSED.value
                view["closure"] = data.model_dump(mode="json")
    view["version"] = events[-1].sequence if events else 0
    view["open_items"] = open_items(_facts(view), now) if view.get("status") == "OPEN" else []
    return view


def _facts(view: dict[str, Any]) -> DueFacts:
    litmas = view["litmas"]
    revocation = view["revocation"]
    return DueFacts(
        stage=d.Stage(view["stage"]),
        litmas_due_at=datetime.fromisoformat(litmas["due_at"]) if litmas.get("due_at") else None,
        litmas_submitted=litmas.get("submitted") is not None,
        program_stages=frozenset(d.Stage(p["stage"]) for p in view["programs"]),
        review_dates=tuple(date.fromisoformat(x) for x in view.get("review_dates", [])),
        tpp_met_on=tuple(date.fromisoformat(x["met_on"]) for x in view["decisions"]),
        period_end_on=date.fromisoformat(view["period"]["end_on"]),
        revocation_pending=bool(revocation) and revocation["imposed"] is None)


@dataclass(frozen=True)
class DueFacts:
    """What open items are computed from (a case view or a worklist row)."""

    stage: d.Stage
    litmas_due_at: datetime | None
    litmas_submitted: bool
    program_stages: frozenset[d.Stage]
    review_dates: tuple[date, ...]
    tpp_met_on: tuple[date, ...]
    period_end_on: date
    revocation_pending: bool


def open_items(f: DueFacts, now: datetime) -> list[dict[str, Any]]:
    """What the officer must do, most urgent first; dates compare with the office's date of
    `now` (WIB), not its UTC date."""
    today = office_date(now)
    items: list[dict[str, Any]] = []
    if not f.litmas_submitted:
        if f.litmas_due_at is None:
            items.append({"kind": "OFFICER_MISSING", "due": None,
                          "message": "no officer assigned: the litmas cannot be requested"})
        else:
            late = f.litmas_due_at <= now
            items.append({"kind": "LITMAS_OVERDUE" if late else "LITMAS_DUE",
                          "due": f.litmas_due_at.isoformat(),
                          "message": "litmas overdue" if late else "litmas due"})
    if f.stage not in f.program_stages:
        items.append({"kind": "PROGRAM_MISSING", "due": None,
                      "message": f"no guidance program for {d.STAGE_NAMES[f.stage]}"})
    for review in f.review_dates:
        lead = review - timedelta(days=REVIEW_LEAD_DAYS)
        if lead <= today and not any(met >= lead for met in f.tpp_met_on):
            items.append({"kind": "REVIEW_DUE", "due": review.isoformat(),
                          "message": f"advisory review of the program due on {review}"})
    if f.period_end_on - timedelta(days=END_NOTICE_DAYS) <= today:
        items.append({"kind": "PERIOD_ENDING", "due": f.period_end_on.isoformat(),
                      "message": f"the guidance period ends on {f.period_end_on}"})
    if f.revocation_pending:
        items.append({"kind": "REVOCATION_AWAITING_HEAD", "due": None,
                      "message": "a revocation proposed by the TPP awaits the head of office"})
    return sorted(items, key=lambda i: (i["due"] is None, i["due"] or ""))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
