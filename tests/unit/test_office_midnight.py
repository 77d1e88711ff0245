"""The rules that compare with "today", at fixed instants either side of midnight WIB and of
midnight UTC. Each instant's office date (WIB) differs from its UTC date at two of them, so
a rule that used the UTC date, or the machine's own zone, fails here.

"Today" is always the office's date of the command's instant (`office_date(now)`), as the
services compute it before they decide; the instants are injected, never read from a clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from services.guidance import domain as gd
from services.guidance.views import DueFacts, open_items
from services.supervision import domain as sd
from shared.errors import DomainError
from shared.office_time import WIB, office_date
from tests.support.clock import moment_on

# (label, instant, its office date)
INSTANTS = [
    ("23:30 WIB", datetime(2026, 12, 6, 23, 30, tzinfo=WIB), date(2026, 12, 6)),
    ("00:30 WIB", datetime(2026, 12, 7, 0, 30, tzinfo=WIB), date(2026, 12, 7)),
    ("23:30 UTC", datetime(2026, 12, 6, 23, 30, tzinfo=UTC), date(2026, 12, 7)),
    ("00:30 UTC", datetime(2026, 12, 7, 0, 30, tzinfo=UTC), date(2026, 12, 7)),
]
at_each_instant = pytest.mark.parametrize(
    ("now", "today"), [(now, today) for _, now, today in INSTANTS],
    ids=[label for label, _, _ in INSTANTS])


def test_the_instants_straddle_both_midnights():
    utc_dates = [now.astimezone(UTC).date() for _, now, _ in INSTANTS]
    office_dates = [today for _, _, today in INSTANTS]
    assert [u != o for u, o in zip(utc_dates, office_dates, strict=True)] == [
        False, True, True, False]
    assert office_dates == [office_date(now) for _, now, _ in INSTANTS]


# ----------------------------------------------------------------------------- supervision

def supervised(today: date, *, first_due_on: date, grace: int = 0,
               period_start_on: date | None = None) -> sd.Supervision:
    """A case under supervision whose reporting plan is first due on `first_due_on`."""
    start = period_start_on or today - timedelta(days=60)
    started_at = datetime.combine(start, time(9), WIB)
    history = sd.decide(sd.StartSupervision(
        client_id="c-1", office="jaksel", program="PB", officer_id="pk-0007", is_child=False,
        period_start_on=start, period_end_on=today + timedelta(days=300), at=started_at),
        sd.Supervision())
    state = sd.DECIDER.fold(history)
    plan = sd.decide(sd.SetPlan(interval_days=30, grace_days=grace, remote_allowed=False,
                                first_due_on=first_due_on, by="pk-0007", today=today), state)
    return sd.DECIDER.fold([*history, *plan])


def reporting(occurred_at: datetime, now: datetime) -> sd.LogVisit:
    return sd.LogVisit(visit_id="v-1", kind=sd.ContactKind.LAPOR_DIRI, occurred_at=occurred_at,
                       outcome=sd.Outcome.MET_COMPLIED, notes="", remote_reason=None,
                       by="pk-0007", now=now, violation_id="viol-v-1")


@at_each_instant
def test_a_report_a_minute_ago_counts_for_the_office_date(now, today):
    state = supervised(today, first_due_on=today)
    (logged,) = sd.decide(reporting(now - timedelta(minutes=1), now), state)
    assert logged.counts_as_report and logged.covers_due_on == today
    assert logged.missed_in_a_row == 0


@at_each_instant
def test_a_report_due_yesterday_without_grace_is_missed_before_today_s_report(now, today):
    state = supervised(today, first_due_on=today - timedelta(days=1))
    missed, logged = sd.decide(reporting(now - timedelta(minutes=1), now), state)
    assert missed.due_on == today - timedelta(days=1) and missed.detected_on == today
    # today opens the next window: the report covers the date due in 29 days
    assert logged.covers_due_on == today + timedelta(days=29)


@at_each_instant
def test_a_report_on_the_first_day_of_supervision_lies_inside_the_period(now, today):
    state = supervised(today, first_due_on=today + timedelta(days=30), period_start_on=today)
    (logged,) = sd.decide(reporting(moment_on(today, now=now), now), state)
    assert logged.occurred_at <= now


@at_each_instant
def test_a_visit_a_minute_ahead_is_refused_as_future(now, today):
    state = supervised(today, first_due_on=today)
    with pytest.raises(DomainError) as err:
        sd.decide(reporting(now + timedelta(minutes=1), now), state)
    assert (err.value.field, err.value.rule) == ("occurred_at", "date_future")


@at_each_instant
def test_the_sweep_of_today_misses_yesterday_s_due_date_not_today_s(now, today):
    due_today = supervised(today, first_due_on=today)
    assert sd.decide(sd.SweepMissedReports(today=office_date(now)), due_today) == []
    due_yesterday = supervised(today, first_due_on=today - timedelta(days=1))
    (missed,) = sd.decide(sd.SweepMissedReports(today=office_date(now)), due_yesterday)
    assert missed.due_on == today - timedelta(days=1)


# -------------------------------------------------------------------------------- guidance

def guided(today: date) -> gd.Case:
    start = today - timedelta(days=60)
    history = gd.decide(gd.OpenGuidance(
        client_id="c-1", office="jaksel", program="PB", period_start_on=start,
        period_end_on=today + timedelta(days=300), officer_id="pk-0007", is_child=False,
        at=datetime.combine(start, time(9), WIB), policy=gd.Policy()), gd.Case())
    return gd.DECIDER.fold(history)


def tpp_met(met_on: date, now: datetime) -> gd.RecordTppDecision:
    return gd.RecordTppDecision(
        decision_id="tpp-1", subject=gd.TppSubject.STAGE, outcome=gd.TppOutcome.APPROVED,
        met_on=met_on, members=("kasi",), notes="", by="kasi", today=office_date(now))


def session_held(held_on: date, now: datetime) -> gd.HoldSession:
    return gd.HoldSession(session_id="s-1", kind=gd.GuidanceKind.KESEHATAN,
                          approach=gd.Approach.INDIVIDU, held_on=held_on,
                          participants=(gd.Participant.KLIEN,), notes="",
                          today=office_date(now))


@at_each_instant
def test_a_tpp_meeting_and_a_session_today_are_recorded_tomorrow_s_are_not(now, today):
    state = guided(today)
    (decided,) = gd.decide(tpp_met(today, now), state)
    assert decided.met_on == today
    (held,) = gd.decide(session_held(today, now), state)
    assert held.held_on == today
    for cmd, field in ((tpp_met(today + timedelta(days=1), now), "met_on"),
                       (session_held(today + timedelta(days=1), now), "held_on")):
        with pytest.raises(DomainError) as err:
            gd.decide(cmd, state)
        assert (err.value.field, err.value.rule) == (field, "date_future")


@at_each_instant
def test_a_death_today_closes_the_case_and_one_tomorrow_is_refused(now, today):
    state = guided(today)

    def closing(on: date) -> gd.CloseGuidance:
        return gd.CloseGuidance(reason=gd.CloseReason.DECEASED, closed_on=on,
                                letter_number=None, by="kabapas", today=office_date(now))

    (closed,) = gd.decide(closing(today), state)
    assert closed.closed_on == today
    with pytest.raises(DomainError) as err:
        gd.decide(closing(today + timedelta(days=1)), state)
    assert [m["rule"] for m in err.value.extra["missing"]] == ["date_future"]


def facts(today: date, **overrides) -> DueFacts:
    values = dict(stage=gd.Stage.AWAL, litmas_due_at=None, litmas_submitted=True,
                  program_stages=frozenset({gd.Stage.AWAL}), review_dates=(),
                  tpp_met_on=(), period_end_on=today + timedelta(days=300),
                  revocation_pending=False)
    values.update(overrides)
    return DueFacts(**values)


@at_each_instant
def test_the_worklist_shows_what_falls_due_on_the_office_date(now, today):
    from services.guidance.views import END_NOTICE_DAYS, REVIEW_LEAD_DAYS

    def kinds(f: DueFacts) -> set[str]:
        return {item["kind"] for item in open_items(f, now)}

    ending_today = today + timedelta(days=END_NOTICE_DAYS)
    assert "PERIOD_ENDING" in kinds(facts(today, period_end_on=ending_today))
    assert "PERIOD_ENDING" not in kinds(facts(today, period_end_on=ending_today
                                              + timedelta(days=1)))
    review_lead_today = today + timedelta(days=REVIEW_LEAD_DAYS)
    assert "REVIEW_DUE" in kinds(facts(today, review_dates=(review_lead_today,)))
    assert "REVIEW_DUE" not in kinds(facts(today, review_dates=(review_lead_today
                                                                + timedelta(days=1),)))
    due = {"litmas_submitted": False}
    assert "LITMAS_OVERDUE" in kinds(facts(today, litmas_due_at=now, **due))
    assert "LITMAS_DUE" in kinds(facts(today, litmas_due_at=now + timedelta(seconds=1), **due))


@at_each_instant
def test_a_moment_on_today_is_past_and_on_the_office_date(now, today):
    moment = moment_on(today, now=now)
    assert moment <= now and office_date(moment) == today
    assert office_date(moment_on(today - timedelta(days=1), now=now)) == today - timedelta(days=1)


def test_a_moment_just_after_midnight_wib_stays_on_that_date():
    now = datetime(2026, 12, 7, 0, 0, 20, tzinfo=WIB)
    moment = moment_on(date(2026, 12, 7), now=now)
    assert moment <= now and office_date(moment) == date(2026, 12, 7)
