"""Supervision (pengawasan) rules as given / when / then: pure, no IO.

`given(*events)` folds a history into the case; `d.decide(command, case)` is the "when";
the "then" is the list of events, or the refusal with its rule code. `recorded(*commands)`
builds a history the way the service would, by deciding each command in turn.

The calendar used throughout: supervision runs 2026-01-05 to 2026-12-31; the default plan
(monthly = 30 days, grace 3) puts the due dates on `due(1)` = 2026-02-04, `due(2)` =
2026-03-06, ... `due(12)` = 2026-12-31 (the last day of the period). The report due on `d`
may come in `(d - 30 + 3, d + 3]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import hypothesis as hp
import pytest
from hypothesis import strategies as st

from services.supervision import domain as d
from shared.errors import DomainConflict, DomainError
from shared.ids import derived_id
from shared.office_time import WIB

CLIENT = "c-1"
STARTED_AT = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
START, END = date(2026, 1, 5), date(2026, 12, 31)
K = d.ContactKind
O = d.Outcome
UMUM, KHUSUS = d.Category.UMUM, d.Category.KHUSUS


def due(k: int, interval: int = 30, first: date = START) -> date:
    """The k-th due date of a plan whose first due date is `first + interval`."""
    return first + timedelta(days=interval * k)


# ---------------------------------------------------------------------------- helpers

def starting(**overrides) -> d.StartSupervision:
    values = dict(client_id=CLIENT, office="jaksel", program="PB", officer_id="pk-0007",
                  is_child=False, period_start_on=START, period_end_on=END, at=STARTED_AT)
    values.update(overrides)
    return d.StartSupervision(**values)


def started(**overrides) -> d.SupervisionStarted:
    (e,) = d.decide(starting(**overrides), d.Supervision())
    return e


def given(*events: d.Event) -> d.Supervision:
    return d.DECIDER.fold(events)


def recorded(*commands: object, first: d.StartSupervision | None = None) -> list[d.Event]:
    """The history these commands record on a freshly started case (refusals propagate)."""
    history = d.decide(first or starting(), d.Supervision())
    state = given(*history)
    for cmd in commands:
        events = d.decide(cmd, state)
        for e in events:
            state = d.evolve(state, e)
        history.extend(events)
    return history


def refused(cmd: object, state: d.Supervision) -> DomainError:
    with pytest.raises(DomainError) as err:
        d.decide(cmd, state)
    assert err.value.message
    return err.value


def at_wib(on: date, hour: int = 10, minute: int = 0) -> datetime:
    """An instant on office date `on` (WIB), in UTC as the API stores it."""
    return datetime(on.year, on.month, on.day, hour, minute, tzinfo=WIB).astimezone(UTC)


# commands

def planning(interval: int = d.DEFAULT_INTERVAL_DAYS, grace: int = d.DEFAULT_GRACE_DAYS,
             remote: bool = False, first: date | None = None,
             today: date = START) -> d.SetPlan:
    return d.SetPlan(interval_days=interval, grace_days=grace, remote_allowed=remote,
                     first_due_on=first, by="pk-0007", today=today)


def visiting(on: date | datetime, kind: d.ContactKind = K.LAPOR_DIRI,
             outcome: d.Outcome = O.MET_COMPLIED, reason: str | None = None,
             visit_id: str = "visit-1", now: datetime | None = None,
             violation_id: str = "viol-visit-1") -> d.LogVisit:
    occurred = on if isinstance(on, datetime) else at_wib(on)
    return d.LogVisit(visit_id=visit_id, kind=kind, occurred_at=occurred, outcome=outcome,
                      notes="catatan", remote_reason=reason, by="pk-0007",
                      now=now or occurred + timedelta(hours=1), violation_id=violation_id)


def sweeping(today: date) -> d.SweepMissedReports:
    return d.SweepMissedReports(today=today)


def violating(category: d.Category = KHUSUS, code: str = "MERESAHKAN_MASYARAKAT",
              violation_id: str = "viol-1") -> d.RecordViolation:
    return d.RecordViolation(violation_id=violation_id, category=category, code=code,
                             notes="laporan warga", by="pk-0007", today=date(2026, 3, 1))


ENDING = d.EndSupervision(reason="guidance closed", ended_on=date(2026, 6, 1))


# events

def plan_set(interval: int = 30, grace: int = 3, remote: bool = False,
             first: date | None = None, next_due: date | None = None) -> d.ReportingPlanSet:
    first = first or START + timedelta(days=interval)
    return d.ReportingPlanSet(interval_days=interval, grace_days=grace, remote_allowed=remote,
                              first_due_on=first, next_due_on=next_due or first,
                              set_by="pk-0007")


def missed(due_on: date, consecutive: int, detected_on: date,
           grace: int = 3) -> d.ReportMissed:
    return d.ReportMissed(due_on=due_on, grace_days=grace, consecutive=consecutive,
                          detected_on=detected_on)


def three_misses_violation(due_on: date, today: date, count: int = 3) -> list[d.Event]:
    vid = derived_id(CLIENT, "missed-reports-violation", due_on)
    return [d.ViolationRecorded(violation_id=vid, category=KHUSUS, code="WAJIB_LAPOR_3X",
                                source=d.Source.MISSED_REPORTS, source_id=due_on.isoformat(),
                                notes=f"{count} consecutive reports missed, the last due on "
                                      f"{due_on}",
                                recorded_by="system", recorded_on=today),
            d.TppReviewRequested(reason=f"{count} consecutive missed reports",
                                 violation_id=vid, requested_on=today)]


def types(events: Sequence[d.Event]) -> list[type]:
    return [type(e) for e in events]


PLANNED = (started(), plan_set())
REMOTE_PLANNED = (started(), plan_set(remote=True))
ENDED = (*PLANNED, d.SupervisionEnded(reason="guidance closed", ended_on=date(2026, 6, 1)))

ACTIVE_COMMANDS = {
    "follow": d.FollowOfficer("pk-0009"),
    "plan": planning(),
    "visit": visiting(date(2026, 2, 1)),
    "violation": violating(),
}


# ------------------------------------------------------------------------- start / end

class TestStartAndEnd:
    def test_supervision_starts_active_with_the_guidance_period(self):
        e = started(is_child=True, officer_id=None)
        assert e == d.SupervisionStarted(client_id=CLIENT, office="jaksel", program="PB",
                                         officer_id=None, is_child=True,
                                         period_start_on=START, period_end_on=END,
                                         started_at=STARTED_AT)
        state = given(e)
        assert state.status is d.Status.ACTIVE and state.client_id == CLIENT
        assert (state.period_start_on, state.period_end_on) == (START, END)
        assert state.is_child and state.plan is None and state.next_due_on is None
        assert state.consecutive_missed == 0 and state.settled_through is None

    def test_starting_twice_records_nothing(self):
        assert d.decide(starting(), given(started())) == []
        assert d.decide(starting(program="CB"), given(*PLANNED)) == []

    def test_starting_an_ended_case_records_nothing(self):
        assert d.decide(starting(), given(*ENDED)) == []

    @pytest.mark.parametrize("name", ACTIVE_COMMANDS)
    def test_a_case_never_started_is_not_found(self, name):
        err = refused(ACTIVE_COMMANDS[name], d.Supervision())
        assert err.status == 404 and err.rule == "not_found"
        assert not isinstance(err, DomainConflict)

    def test_a_case_never_started_has_nothing_to_sweep_or_end(self):
        assert d.decide(sweeping(date(2027, 1, 1)), d.Supervision()) == []
        assert d.decide(ENDING, d.Supervision()) == []

    def test_supervision_ends_once(self):
        events = d.decide(ENDING, given(*PLANNED))
        assert events == [d.SupervisionEnded(reason="guidance closed",
                                             ended_on=date(2026, 6, 1))]
        assert given(*PLANNED, *events).status is d.Status.ENDED
        assert d.decide(ENDING, given(*PLANNED, *events)) == []

    @pytest.mark.parametrize("name", ACTIVE_COMMANDS)
    def test_an_ended_case_is_read_only(self, name):
        err = refused(ACTIVE_COMMANDS[name], given(*ENDED))
        assert isinstance(err, DomainConflict)
        assert err.rule == "ended" and err.status == 409

    def test_an_ended_case_records_no_more_misses(self):
        # its due dates are long past, but the case is closed: the sweeper leaves it alone
        assert d.decide(sweeping(date(2026, 12, 1)), given(*ENDED)) == []

    def test_something_that_is_not_a_supervision_command_is_a_programming_error(self):
        with pytest.raises(TypeError):
            d.decide(object(), given(*PLANNED))


# --------------------------------------------------------------------------- officer

class TestFollowOfficer:
    def test_another_officer_is_recorded(self):
        events = d.decide(d.FollowOfficer("pk-0009"), given(*PLANNED))
        assert events == [d.SupervisingOfficerAssigned(officer_id="pk-0009")]
        assert given(*PLANNED, *events).officer_id == "pk-0009"

    def test_the_first_officer_of_an_officerless_case_is_recorded(self):
        events = d.decide(d.FollowOfficer("pk-0007"), given(started(officer_id=None)))
        assert events == [d.SupervisingOfficerAssigned(officer_id="pk-0007")]

    def test_the_same_officer_records_nothing(self):
        assert d.decide(d.FollowOfficer("pk-0007"), given(*PLANNED)) == []


# ------------------------------------------------------------------------------ plan

class TestPlan:
    def test_the_defaults_are_monthly_with_three_days_grace(self):
        # DOMAIN: "default once a month, with a grace period of 3 days"
        assert (d.DEFAULT_INTERVAL_DAYS, d.DEFAULT_GRACE_DAYS) == (30, 3)

    def test_a_default_plan_is_first_due_one_interval_after_the_start(self):
        (e,) = d.decide(planning(), given(started()))
        assert e == plan_set()
        assert e.first_due_on == e.next_due_on == date(2026, 2, 4) == due(1)
        state = given(started(), e)
        assert state.plan == d.Plan(interval_days=30, grace_days=3, remote_allowed=False)
        assert state.next_due_on == due(1)

    def test_the_default_first_due_date_follows_the_interval(self):
        (e,) = d.decide(planning(interval=7, grace=1), given(started()))
        assert e.first_due_on == e.next_due_on == date(2026, 1, 12)

    def test_a_first_due_date_may_be_given_even_in_the_past(self):
        # a case moving over from the paper registers keeps its old schedule
        first = date(2026, 1, 20)
        (e,) = d.decide(planning(first=first, today=date(2026, 5, 1)), given(started()))
        assert (e.first_due_on, e.next_due_on) == (first, first)

    @pytest.mark.parametrize("first", [START, END])
    def test_the_first_due_date_may_fall_on_either_end_of_the_period(self, first):
        (e,) = d.decide(planning(first=first), given(started()))
        assert e.next_due_on == first

    def test_the_first_due_date_cannot_fall_before_supervision_starts(self):
        err = refused(planning(first=START - timedelta(days=1)), given(started()))
        assert (err.field, err.rule) == ("first_due_on", "before_period")

    def test_the_first_due_date_cannot_fall_after_the_period_ends(self):
        err = refused(planning(first=END + timedelta(days=1)), given(started()))
        assert (err.field, err.rule) == ("first_due_on", "after_period")

    def test_a_default_first_due_date_past_a_short_period_is_refused(self):
        short = started(period_end_on=START + timedelta(days=20))
        err = refused(planning(), given(short))
        assert (err.field, err.rule) == ("first_due_on", "after_period")

    @pytest.mark.parametrize("interval", [0, -1, 181, 365])
    def test_the_interval_is_one_to_180_days(self, interval):
        err = refused(planning(interval=interval, grace=0), given(started()))
        assert (err.field, err.rule) == ("interval_days", "interval_range")

    @pytest.mark.parametrize("interval", [1, 180])
    def test_the_interval_bounds_are_allowed(self, interval):
        (e,) = d.decide(planning(interval=interval, grace=0), given(started()))
        assert e.interval_days == interval

    @pytest.mark.parametrize("interval, grace", [(30, 30), (30, 31), (30, -1), (1, 1),
                                                 (7, 60)])
    def test_the_grace_must_be_shorter_than_the_interval(self, interval, grace):
        err = refused(planning(interval=interval, grace=grace), given(started()))
        assert (err.field, err.rule) == ("grace_days", "grace_range")

    @pytest.mark.parametrize("interval, grace", [(30, 29), (30, 0), (1, 0)])
    def test_a_grace_shorter_than_the_interval_is_allowed(self, interval, grace):
        (e,) = d.decide(planning(interval=interval, grace=grace), given(started()))
        assert (e.interval_days, e.grace_days) == (interval, grace)

    def test_remote_reporting_is_part_of_the_plan(self):
        (e,) = d.decide(planning(remote=True), given(started()))
        assert e.remote_allowed and given(started(), e).plan.remote_allowed

    def test_a_new_plan_without_a_first_date_keeps_the_next_due_date(self):
        history = recorded(planning(), visiting(date(2026, 2, 1)))  # covers due(1)
        (e,) = d.decide(planning(interval=14, grace=2), given(*history))
        assert (e.first_due_on, e.next_due_on) == (due(2), due(2))
        state = given(*history, e)
        assert state.plan.interval_days == 14 and state.next_due_on == due(2)

    def test_a_new_plan_never_moves_back_onto_settled_due_dates(self):
        # due(1) and due(2) missed: settled through 2026-03-06
        history = recorded(planning(), sweeping(date(2026, 3, 20)))
        assert given(*history).settled_through == due(2)
        (e,) = d.decide(planning(interval=14, first=due(1)), given(*history))
        # 02-04, 02-18, 03-04 lie on or before the settled date; 03-18 is the first one after
        assert (e.first_due_on, e.next_due_on) == (due(1), date(2026, 3, 18))

    def test_a_new_plan_starting_on_the_settled_due_date_itself_moves_past_it(self):
        history = recorded(planning(), visiting(date(2026, 2, 1)))  # covers 02-04
        (e,) = d.decide(planning(interval=10, first=due(1)), given(*history))
        assert e.next_due_on == due(1) + timedelta(days=10)

    def test_a_new_plan_is_not_a_report_and_keeps_the_count(self):
        history = recorded(planning(), sweeping(date(2026, 3, 20)))
        state = given(*history, *d.decide(planning(interval=14), given(*history)))
        assert state.consecutive_missed == 2
        (third, *_) = d.decide(sweeping(date(2026, 4, 9)), state)
        assert third == missed(due(3), 3, date(2026, 4, 9))  # the kept next due date


# ------------------------------------------------------------------- reporting windows

class TestReportingWindows:
    """The report due on `d` may come in `(d - interval + grace, d + grace]`."""

    # after due(1) is covered, the window of due(2) = 03-06 is (02-07, 03-09]
    COVERED_FIRST = tuple(recorded(planning(), visiting(date(2026, 2, 1))))

    def test_a_report_in_the_window_covers_the_due_date(self):
        (e,) = d.decide(visiting(date(2026, 2, 20)), given(*self.COVERED_FIRST))
        assert e.counts_as_report and e.covers_due_on == due(2)
        assert e == d.VisitLogged(visit_id="visit-1", kind=K.LAPOR_DIRI,
                                  occurred_at=at_wib(date(2026, 2, 20)),
                                  outcome=O.MET_COMPLIED, notes="catatan", remote_reason=None,
                                  logged_by="pk-0007", counts_as_report=True,
                                  covers_due_on=due(2))
        state = given(*self.COVERED_FIRST, e)
        assert state.next_due_on == due(3) and state.settled_through == due(2)
        assert state.consecutive_missed == 0

    @pytest.mark.parametrize("on", [date(2026, 2, 8), due(2), date(2026, 3, 9)])
    def test_the_window_is_open_after_its_start_and_closed_at_the_end_of_grace(self, on):
        (e,) = d.decide(visiting(on), given(*self.COVERED_FIRST))
        assert e.covers_due_on == due(2)

    def test_a_report_on_the_day_the_window_opens_belongs_to_the_previous_window(self):
        (e,) = d.decide(visiting(date(2026, 2, 7)), given(*self.COVERED_FIRST))
        assert e.counts_as_report and e.covers_due_on is None
        assert given(*self.COVERED_FIRST, e).next_due_on == due(2)

    def test_a_report_the_day_after_the_window_closed_misses_it_first(self):
        events = d.decide(visiting(date(2026, 3, 10)), given(*self.COVERED_FIRST))
        assert types(events) == [d.ReportMissed, d.VisitLogged]
        assert events[0] == missed(due(2), 1, detected_on=date(2026, 3, 10))
        assert events[1].covers_due_on == due(3)
        state = given(*self.COVERED_FIRST, *events)
        assert state.next_due_on == due(4) and state.consecutive_missed == 0

    def test_the_first_window_opens_a_grace_after_the_start(self):
        # due(1) = 02-04: window (01-08, 02-07]
        (inside,) = d.decide(visiting(date(2026, 1, 9)), given(*PLANNED))
        assert inside.covers_due_on == due(1)
        (before,) = d.decide(visiting(START), given(*PLANNED))
        assert before.counts_as_report and before.covers_due_on is None
        assert given(*PLANNED, before).next_due_on == due(1)

    def test_a_second_report_in_a_covered_window_covers_nothing(self):
        (e,) = d.decide(visiting(date(2026, 2, 3), visit_id="visit-2"),
                        given(*self.COVERED_FIRST))
        assert e.counts_as_report and e.covers_due_on is None
        assert given(*self.COVERED_FIRST, e).next_due_on == due(2)

    def test_a_report_long_overdue_records_every_closed_window_in_order(self):
        events = d.decide(visiting(date(2026, 4, 10)), given(*PLANNED))
        today = date(2026, 4, 10)
        assert events == [missed(due(1), 1, today), missed(due(2), 2, today),
                          missed(due(3), 3, today), *three_misses_violation(due(3), today),
                          events[-1]]
        assert events[-1].counts_as_report and events[-1].covers_due_on == due(4)
        state = given(*PLANNED, *events)
        assert state.consecutive_missed == 0 and state.next_due_on == due(5)
        assert state.status is d.Status.ACTIVE

    def test_a_late_entered_report_into_a_missed_window_resets_the_count(self):
        # 02-04 missed by the sweep; the client's report of 02-07 is typed in later
        history = recorded(planning(), sweeping(date(2026, 2, 8)))
        assert given(*history).consecutive_missed == 1
        (e,) = d.decide(visiting(date(2026, 2, 7), now=at_wib(date(2026, 2, 20))),
                        given(*history))
        assert e.counts_as_report and e.covers_due_on is None
        state = given(*history, e)
        assert state.consecutive_missed == 0 and state.next_due_on == due(2)

    def test_with_no_grace_the_report_is_due_on_the_day(self):
        history = recorded(planning(interval=7, grace=0))  # due 01-12, 01-19, ...
        (on_time,) = d.decide(visiting(date(2026, 1, 12)), given(*history))
        assert on_time.covers_due_on == date(2026, 1, 12)
        late = d.decide(visiting(date(2026, 1, 13)), given(*history))
        assert late[0] == missed(date(2026, 1, 12), 1, date(2026, 1, 13), grace=0)
        assert late[1].covers_due_on == date(2026, 1, 19)

    def test_the_window_is_read_on_the_office_date_in_wib(self):
        # 02-07 16:59 UTC is 23:59 WIB on 02-07 (in the window of 02-04);
        # 02-07 17:00 UTC is already 02-08 in Jakarta (the window has closed)
        (in_time,) = d.decide(visiting(datetime(2026, 2, 7, 16, 59, tzinfo=UTC)),
                              given(*PLANNED))
        assert in_time.covers_due_on == due(1)
        late = d.decide(visiting(datetime(2026, 2, 7, 17, 0, tzinfo=UTC)), given(*PLANNED))
        assert late[0] == missed(due(1), 1, date(2026, 2, 8))
        assert late[1].covers_due_on == due(2)


# ------------------------------------------------------------------ what counts as a report

COUNTING = {(kind, outcome) for kind in (K.LAPOR_DIRI, K.LAPOR_JARAK_JAUH)
            for outcome in (O.MET_COMPLIED, O.MET_FAILED_TO_COMPLY, O.ACCEPTABLE_ABSENCE)}


class TestWhatCountsAsAReport:
    @pytest.mark.parametrize("kind", list(K))
    @pytest.mark.parametrize("outcome", list(O))
    def test_only_a_report_the_client_made_counts(self, kind, outcome):
        reason = "sakit, di luar kota" if kind is K.LAPOR_JARAK_JAUH else None
        events = d.decide(visiting(date(2026, 2, 1), kind, outcome, reason),
                          given(*REMOTE_PLANNED))
        logged = events[0]
        assert isinstance(logged, d.VisitLogged)
        counts = (kind, outcome) in COUNTING
        assert logged.counts_as_report is counts
        assert logged.covers_due_on == (due(1) if counts else None)
        assert given(*REMOTE_PLANNED, *events).next_due_on == (due(2) if counts else due(1))

    @pytest.mark.parametrize("kind, outcome", [(K.KUNJUNGAN_RUMAH, O.MET_COMPLIED),
                                               (K.KUNJUNGAN_KERJA, O.MET_COMPLIED),
                                               (K.PERTEMUAN_KELUARGA, O.MET_COMPLIED),
                                               (K.PERTEMUAN_MASYARAKAT, O.ACCEPTABLE_ABSENCE),
                                               (K.LAPOR_DIRI, O.NOT_FOUND)])
    def test_a_contact_that_does_not_count_neither_records_misses_nor_resets_the_count(
            self, kind, outcome):
        history = recorded(planning(), sweeping(date(2026, 3, 20)))  # two missed
        events = d.decide(visiting(date(2026, 4, 20), kind, outcome), given(*history))
        # 04-05's window has closed, but only a report brings the misses up to date
        assert types(events) == [d.VisitLogged]
        assert not events[0].counts_as_report and events[0].covers_due_on is None
        state = given(*history, *events)
        assert state.consecutive_missed == 2 and state.next_due_on == due(3)

    def test_a_client_who_moved_away_has_not_reported(self):
        history = recorded(planning(), sweeping(date(2026, 3, 20)))
        events = d.decide(visiting(date(2026, 3, 21), K.LAPOR_DIRI, O.MOVED_UNREPORTED),
                          given(*history))
        assert types(events) == [d.VisitLogged, d.ViolationRecorded]
        assert not events[0].counts_as_report
        assert given(*history, *events).consecutive_missed == 2


# ----------------------------------------------------------------------- missed reports

class TestMissedReports:
    def test_without_a_plan_nothing_is_missed(self):
        assert d.decide(sweeping(date(2026, 12, 1)), given(started())) == []

    def test_a_report_is_missed_only_once_its_grace_has_passed(self):
        assert d.decide(sweeping(due(1)), given(*PLANNED)) == []
        assert d.decide(sweeping(date(2026, 2, 7)), given(*PLANNED)) == []  # due + grace
        events = d.decide(sweeping(date(2026, 2, 8)), given(*PLANNED))
        assert events == [missed(due(1), 1, detected_on=date(2026, 2, 8))]
        state = given(*PLANNED, *events)
        assert state.consecutive_missed == 1 and state.settled_through == due(1)
        assert state.next_due_on == due(2)

    def test_a_miss_carries_the_grace_of_the_plan(self):
        history = (started(), plan_set(interval=14, grace=5))
        (e,) = d.decide(sweeping(date(2026, 1, 25)), given(*history))
        assert e == missed(date(2026, 1, 19), 1, date(2026, 1, 25), grace=5)

    def test_several_closed_windows_are_missed_in_order_and_counted(self):
        events = d.decide(sweeping(date(2026, 3, 10)), given(*PLANNED))
        assert events == [missed(due(1), 1, date(2026, 3, 10)),
                          missed(due(2), 2, date(2026, 3, 10))]

    def test_three_missed_in_a_row_record_a_khusus_violation_and_a_tpp_review(self):
        # DOMAIN scenario 2: count 3, a KHUSUS violation, a TPP review item; still active
        today = date(2026, 4, 9)
        events = d.decide(sweeping(today), given(*PLANNED))
        assert events == [missed(due(1), 1, today), missed(due(2), 2, today),
                          missed(due(3), 3, today), *three_misses_violation(due(3), today)]
        violation, review = events[3], events[4]
        assert (violation.category, violation.code) == (KHUSUS, "WAJIB_LAPOR_3X")
        assert violation.source is d.Source.MISSED_REPORTS
        assert review.violation_id == violation.violation_id
        state = given(*PLANNED, *events)
        assert state.status is d.Status.ACTIVE and state.consecutive_missed == 3
        assert state.plan is not None  # nothing is revoked or stopped

    def test_the_third_miss_found_by_a_later_sweep_records_the_violation_then(self):
        history = recorded(planning(), sweeping(date(2026, 2, 8)), sweeping(date(2026, 3, 10)))
        today = date(2026, 4, 9)
        events = d.decide(sweeping(today), given(*history))
        assert events == [missed(due(3), 3, today), *three_misses_violation(due(3), today)]

    def test_every_third_consecutive_miss_records_another_violation(self):
        today = date(2026, 7, 8)  # due(6) = 07-04 closed on 07-07
        events = d.decide(sweeping(today), given(*PLANNED))
        assert [e.consecutive for e in events if isinstance(e, d.ReportMissed)] == \
            [1, 2, 3, 4, 5, 6]
        violations = [e for e in events if isinstance(e, d.ViolationRecorded)]
        assert [v.source_id for v in violations] == [due(3).isoformat(), due(6).isoformat()]
        assert events[-2:] == three_misses_violation(due(6), today, count=6)
        assert len([e for e in events if isinstance(e, d.TppReviewRequested)]) == 2

    def test_two_missed_then_a_report_resets_the_count(self):
        # DOMAIN scenario 3: two missed, a report received: the count is 0, no violation
        history = recorded(planning(), sweeping(date(2026, 3, 10)))
        assert given(*history).consecutive_missed == 2
        report = d.decide(visiting(date(2026, 4, 1)), given(*history))
        assert types(report) == [d.VisitLogged] and report[0].covers_due_on == due(3)
        state = given(*history, *report)
        assert state.consecutive_missed == 0
        events = d.decide(sweeping(date(2026, 5, 9)), state)
        assert events == [missed(due(4), 1, date(2026, 5, 9))]
        assert not [e for e in history + report + events
                    if isinstance(e, (d.ViolationRecorded, d.TppReviewRequested))]

    def test_an_early_report_that_covers_nothing_still_resets_the_count(self):
        history = recorded(planning(), sweeping(date(2026, 3, 10)))
        (extra,) = d.decide(visiting(date(2026, 3, 9), visit_id="visit-2",
                                     now=at_wib(date(2026, 3, 11))), given(*history))
        assert extra.counts_as_report and extra.covers_due_on is None
        assert given(*history, extra).consecutive_missed == 0

    def test_no_report_is_due_after_the_guidance_period(self):
        events = d.decide(sweeping(date(2027, 3, 1)), given(*PLANNED))
        misses = [e for e in events if isinstance(e, d.ReportMissed)]
        assert [m.due_on for m in misses] == [due(k) for k in range(1, 13)]
        assert misses[-1].due_on == END  # a due date on the last day still counts
        assert len([e for e in events if isinstance(e, d.ViolationRecorded)]) == 4
        later = given(*PLANNED, *events)
        assert d.decide(sweeping(date(2027, 6, 1)), later) == []

    def test_sweeping_again_records_nothing_new(self):
        history = recorded(planning(), sweeping(date(2026, 4, 9)))
        assert d.decide(sweeping(date(2026, 4, 9)), given(*history)) == []
        assert d.decide(sweeping(date(2026, 5, 8)), given(*history)) == []  # 05-05 in grace

    def test_a_missed_reports_violation_id_derives_from_the_client_and_the_due_date(self):
        by_sweep = d.decide(sweeping(date(2026, 4, 9)), given(*PLANNED))
        by_later_sweep = d.decide(sweeping(date(2026, 4, 20)), given(*PLANNED))
        by_report = d.decide(visiting(date(2026, 4, 20)), given(*PLANNED))
        expected = derived_id(CLIENT, "missed-reports-violation", due(3))
        for events in (by_sweep, by_later_sweep, by_report):
            (violation,) = [e for e in events if isinstance(e, d.ViolationRecorded)]
            (review,) = [e for e in events if isinstance(e, d.TppReviewRequested)]
            assert violation.violation_id == review.violation_id == expected
        other = given(started(client_id="c-2"), plan_set())
        (violation,) = [e for e in d.decide(sweeping(date(2026, 4, 9)), other)
                        if isinstance(e, d.ViolationRecorded)]
        assert violation.violation_id != expected


# ---------------------------------------------------------------------------- visits

class TestVisits:
    def test_a_visit_cannot_be_logged_before_it_happens(self):
        at = at_wib(date(2026, 2, 1))
        err = refused(visiting(at, now=at - timedelta(seconds=1)), given(*PLANNED))
        assert (err.field, err.rule) == ("occurred_at", "date_future")
        assert d.decide(visiting(at, now=at), given(*PLANNED))  # the very moment is fine

    @pytest.mark.parametrize("occurred_at", [
        datetime(2026, 1, 4, 16, 59, tzinfo=UTC),    # 01-04 23:59 WIB
        datetime(2026, 12, 31, 17, 0, tzinfo=UTC),   # 2027-01-01 00:00 WIB
        at_wib(date(2025, 12, 1)),
    ])
    def test_a_visit_outside_the_guidance_period_is_refused(self, occurred_at):
        err = refused(visiting(occurred_at, K.KUNJUNGAN_RUMAH,
                               now=datetime(2027, 2, 1, tzinfo=UTC)), given(*PLANNED))
        assert (err.field, err.rule) == ("occurred_at", "outside_period")

    @pytest.mark.parametrize("occurred_at", [
        datetime(2026, 1, 4, 17, 0, tzinfo=UTC),     # 01-05 00:00 WIB: the first day
        datetime(2026, 12, 31, 16, 59, tzinfo=UTC),  # 12-31 23:59 WIB: the last day
    ])
    def test_the_period_is_read_in_office_dates(self, occurred_at):
        (e,) = d.decide(visiting(occurred_at, K.KUNJUNGAN_RUMAH,
                                 now=datetime(2027, 2, 1, tzinfo=UTC)), given(*PLANNED))
        assert e.occurred_at == occurred_at

    def test_a_visit_needs_no_plan(self):
        (e,) = d.decide(visiting(date(2026, 2, 1), K.KUNJUNGAN_RUMAH), given(started()))
        assert not e.counts_as_report and e.covers_due_on is None

    def test_a_report_without_a_plan_counts_but_covers_nothing(self):
        (e,) = d.decide(visiting(date(2026, 2, 1)), given(started()))
        assert e.counts_as_report and e.covers_due_on is None
        assert given(started(), e).next_due_on is None

    @pytest.mark.parametrize("history", [(started(),), PLANNED], ids=["no plan", "not allowed"])
    def test_a_remote_report_needs_a_plan_that_allows_it(self, history):
        err = refused(visiting(date(2026, 2, 1), K.LAPOR_JARAK_JAUH, reason="di luar kota"),
                      given(*history))
        assert (err.field, err.rule) == ("kind", "remote_not_allowed")

    @pytest.mark.parametrize("reason", [None, "", "   "])
    def test_a_remote_report_needs_a_reason(self, reason):
        err = refused(visiting(date(2026, 2, 1), K.LAPOR_JARAK_JAUH, reason=reason),
                      given(*REMOTE_PLANNED))
        assert (err.field, err.rule) == ("remote_reason", "remote_reason_required")

    def test_a_remote_report_with_a_reason_covers_its_due_date(self):
        (e,) = d.decide(visiting(date(2026, 2, 1), K.LAPOR_JARAK_JAUH, reason="di luar kota"),
                        given(*REMOTE_PLANNED))
        assert e.remote_reason == "di luar kota"
        assert e.counts_as_report and e.covers_due_on == due(1)

    def test_a_home_visit_finding_the_client_moved_records_a_khusus_violation(self):
        # DOMAIN scenario 6
        at = at_wib(date(2026, 3, 2))
        events = d.decide(visiting(at, K.KUNJUNGAN_RUMAH, O.MOVED_UNREPORTED,
                                   visit_id="visit-9", violation_id="viol-9"),
                          given(*PLANNED))
        assert events == [
            d.VisitLogged(visit_id="visit-9", kind=K.KUNJUNGAN_RUMAH, occurred_at=at,
                          outcome=O.MOVED_UNREPORTED, notes="catatan", remote_reason=None,
                          logged_by="pk-0007", counts_as_report=False, covers_due_on=None),
            d.ViolationRecorded(violation_id="viol-9", category=KHUSUS,
                                code="PINDAH_TANPA_LAPOR", source=d.Source.VISIT,
                                source_id="visit-9",
                                notes="the client moved without reporting (found on a visit)",
                                recorded_by="pk-0007", recorded_on=date(2026, 3, 2))]
        assert given(*PLANNED, *events).status is d.Status.ACTIVE

    def test_a_move_found_late_at_night_is_recorded_on_the_office_date(self):
        at = datetime(2026, 3, 1, 18, 0, tzinfo=UTC)  # 03-02 01:00 WIB
        events = d.decide(visiting(at, K.KUNJUNGAN_RUMAH, O.MOVED_UNREPORTED),
                          given(started()))
        assert events[1].recorded_on == date(2026, 3, 2)


# ------------------------------------------------------------------------- violations

ALL_CODES = [(category, code) for category, codes in d.VIOLATION_CODES.items()
             for code in codes]


class TestRecordViolation:
    def test_the_codes_are_those_of_the_domain(self):
        assert d.VIOLATION_CODES[UMUM].keys() == {"TERSANGKA", "TERPIDANA"}
        assert d.VIOLATION_CODES[KHUSUS].keys() == {"MERESAHKAN_MASYARAKAT", "WAJIB_LAPOR_3X",
                                                    "PINDAH_TANPA_LAPOR",
                                                    "TIDAK_MENGIKUTI_PROGRAM"}

    @pytest.mark.parametrize("category, code", ALL_CODES)
    def test_an_officer_records_a_violation_of_its_category(self, category, code):
        events = d.decide(violating(category, code), given(*PLANNED))
        assert events == [d.ViolationRecorded(
            violation_id="viol-1", category=category, code=code, source=d.Source.OFFICER,
            source_id=None, notes="laporan warga", recorded_by="pk-0007",
            recorded_on=date(2026, 3, 1))]
        assert given(*PLANNED, *events) == given(*PLANNED)  # no bearing on the schedule

    @pytest.mark.parametrize("category, code", [
        *((UMUM, code) for code in d.VIOLATION_CODES[KHUSUS]),
        *((KHUSUS, code) for code in d.VIOLATION_CODES[UMUM]),
        (KHUSUS, "MENCURI"), (UMUM, ""), (KHUSUS, "wajib_lapor_3x")])
    def test_a_code_outside_its_category_is_refused(self, category, code):
        err = refused(violating(category, code), given(*PLANNED))
        assert (err.field, err.rule) == ("code", "violation_code")


# ---------------------------------------------------------------------------- identify

class TestIdentify:
    event_id = staticmethod(d.identify(CLIENT))

    def test_a_miss_has_one_id_per_due_date_whoever_records_it(self):
        by_sweep = d.decide(sweeping(date(2026, 2, 20)), given(*PLANNED))[0]
        by_report = d.decide(visiting(date(2026, 2, 10)), given(*PLANNED))[0]
        assert isinstance(by_sweep, d.ReportMissed) and isinstance(by_report, d.ReportMissed)
        assert by_sweep.detected_on != by_report.detected_on
        assert self.event_id(by_sweep) == self.event_id(by_report) is not None
        assert self.event_id(missed(due(1), 7, date(2026, 9, 1), grace=0)) == \
            self.event_id(by_sweep)

    def test_another_due_date_or_another_client_is_another_miss(self):
        first = self.event_id(missed(due(1), 1, date(2026, 2, 8)))
        assert self.event_id(missed(due(2), 1, date(2026, 3, 10))) != first
        assert d.identify("c-2")(missed(due(1), 1, date(2026, 2, 8))) != first

    def test_the_three_misses_violation_and_its_review_have_their_own_ids(self):
        today = date(2026, 4, 9)
        violation, review = three_misses_violation(due(3), today)
        ids = {self.event_id(violation), self.event_id(review),
               self.event_id(missed(due(3), 3, today))}
        assert None not in ids and len(ids) == 3
        later = three_misses_violation(due(3), date(2026, 4, 20))
        assert [self.event_id(e) for e in later] == [self.event_id(violation),
                                                     self.event_id(review)]

    def test_other_facts_have_no_fixed_id(self):
        moved = d.decide(visiting(date(2026, 3, 2), K.KUNJUNGAN_RUMAH, O.MOVED_UNREPORTED),
                         given(*PLANNED))
        others = [*PLANNED, *ENDED[-1:], d.SupervisingOfficerAssigned(officer_id="pk-0009"),
                  *moved, *d.decide(violating(), given(*PLANNED))]
        assert [self.event_id(e) for e in others] == [None] * len(others)


# --------------------------------------------------------------------- known problems

class TestLateEntriesAndTheEndOfThePeriod:
    def test_a_report_that_occurred_before_the_misses_does_not_break_their_run(self):
        history = recorded(planning(), visiting(date(2026, 2, 1)),  # covers 02-04
                           sweeping(date(2026, 4, 9)))              # 03-06, 04-05 missed
        assert given(*history).consecutive_missed == 2
        # the officer types in an older contact from the paper register
        paper = visiting(date(2026, 1, 20), visit_id="visit-paper",
                         now=at_wib(date(2026, 4, 15)))
        state = given(*history, *d.decide(paper, given(*history)))
        events = d.decide(sweeping(date(2026, 5, 9)), state)  # 05-05 missed
        # the client last reported on 02-01; 03-06, 04-05, 05-05 passed without a report
        assert events[0] == missed(due(4), 3, date(2026, 5, 9))
        assert types(events) == [d.ReportMissed, d.ViolationRecorded, d.TppReviewRequested]

    def test_a_report_never_covers_a_due_date_after_the_period(self):
        # period 01-05..03-20: due dates 02-04 and 03-06; 04-05 would lie after the end
        history = recorded(planning(), visiting(date(2026, 2, 1)), visiting(date(2026, 3, 1)),
                           first=starting(period_end_on=date(2026, 3, 20)))
        assert given(*history).next_due_on == due(3)
        assert d.decide(sweeping(date(2026, 6, 1)), given(*history)) == []  # never missed
        (e,) = d.decide(visiting(date(2026, 3, 15)), given(*history))
        assert e.counts_as_report
        assert e.covers_due_on is None


# ----------------------------------------------------------------------- property test

PERIOD_DAYS = (END - START).days
OFFICERS = ["pk-0007", "pk-0009"]


@st.composite
def plans(draw) -> d.SetPlan:
    interval = draw(st.integers(7, 60))
    return planning(interval=interval, grace=draw(st.integers(0, interval - 1)),
                    remote=draw(st.booleans()),
                    first=START + timedelta(days=draw(st.integers(0, interval))))


@st.composite
def command_runs(draw) -> list[object]:
    """Sweeps at increasing dates, with reports (in and out of their windows, some typed in
    late, some in the future, some outside the period), visits, re-plans, violations,
    officers, and now and then the end of supervision, interleaved."""
    clock = START
    run: list[object] = []
    steps = ["sweep"] * 4 + ["report"] * 5 + ["visit", "plan", "violation", "officer"]
    ending = draw(st.booleans())  # in half the runs, the end is one step in 15
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(steps + ["end"] * ending))
        if kind == "sweep":
            clock += timedelta(days=draw(st.integers(0, 75)))
            run.append(sweeping(clock))
        elif kind in ("report", "visit"):
            near = clock + timedelta(days=draw(st.integers(-40, 70)))
            anywhere = START + timedelta(days=draw(st.integers(-3, PERIOD_DAYS + 3)))
            on = draw(st.sampled_from([near, near, anywhere]))
            contact = (draw(st.sampled_from([K.LAPOR_DIRI, K.LAPOR_DIRI, K.LAPOR_JARAK_JAUH]))
                       if kind == "report" else draw(st.sampled_from(list(K))))
            outcome = draw(st.sampled_from([O.MET_COMPLIED] * 4 + list(O)))
            occurred = at_wib(on, draw(st.integers(0, 23)))
            n = len(run)
            run.append(visiting(occurred, contact, outcome,
                                reason=draw(st.sampled_from([None, "di luar kota"])),
                                visit_id=f"visit-{n}", violation_id=f"viol-visit-{n}",
                                now=occurred + timedelta(hours=draw(st.integers(-2, 24 * 30)))))
        elif kind == "plan":
            interval = draw(st.integers(0, 61))
            first = draw(st.sampled_from(
                [None, None, clock + timedelta(days=draw(st.integers(-90, 60)))]))
            run.append(planning(interval=interval, grace=draw(st.integers(0, interval)),
                                remote=draw(st.booleans()), first=first, today=clock))
        elif kind == "violation":
            category = draw(st.sampled_from(list(d.Category)))
            code = draw(st.sampled_from([code for _, code in ALL_CODES]))
            run.append(violating(category, code, violation_id=f"viol-{len(run)}"))
        elif kind == "officer":
            run.append(d.FollowOfficer(draw(st.sampled_from(OFFICERS))))
        else:
            run.append(d.EndSupervision(reason="closed", ended_on=clock))
    return run


def run(plan: d.SetPlan, commands: Sequence[object]) -> list[d.Event]:
    history = recorded(plan)
    state = given(*history)
    for cmd in commands:
        try:
            events = d.decide(cmd, state)
        except DomainError:
            continue
        for e in events:
            if isinstance(e, d.ReportMissed):  # found on the sweep's day or the report's
                assert e.detected_on == (cmd.today if isinstance(cmd, d.SweepMissedReports)
                                         else d.office_date(cmd.occurred_at))
            if isinstance(e, d.VisitLogged) and e.covers_due_on is not None:
                # the report lies in the window of the date it covers, under the plan then
                on, c = d.office_date(e.occurred_at), e.covers_due_on
                interval, grace = state.plan.interval_days, state.plan.grace_days
                assert c - timedelta(days=interval - grace) < on <= c + timedelta(days=grace)
            state = d.evolve(state, e)
        history.extend(events)
        if isinstance(cmd, d.SweepMissedReports) and state.status is d.Status.ACTIVE:
            # a sweep leaves no closed window behind, and a second one finds nothing
            assert (state.next_due_on + timedelta(days=state.plan.grace_days) >= cmd.today
                    or state.next_due_on > END)
            assert d.decide(cmd, state) == []
    return history


def check_invariants(history: Sequence[d.Event]) -> None:
    assert isinstance(history[0], d.SupervisionStarted)
    assert isinstance(history[1], d.ReportingPlanSet)

    ended = [i for i, e in enumerate(history) if isinstance(e, d.SupervisionEnded)]
    assert ended in ([], [len(history) - 1])  # nothing after the end

    misses = [e for e in history if isinstance(e, d.ReportMissed)]
    missed_on = [m.due_on for m in misses]
    covered_on = [e.covers_due_on for e in history
                  if isinstance(e, d.VisitLogged) and e.covers_due_on is not None]
    assert missed_on == sorted(set(missed_on))  # each once, strictly increasing
    assert len(covered_on) == len(set(covered_on))
    assert not set(missed_on) & set(covered_on)
    settled = [e.due_on if isinstance(e, d.ReportMissed) else e.covers_due_on
               for e in history if isinstance(e, d.ReportMissed)
               or (isinstance(e, d.VisitLogged) and e.covers_due_on is not None)]
    assert settled == sorted(set(settled))  # never back onto a settled date
    for m in misses:
        assert m.due_on <= END and m.due_on + timedelta(days=m.grace_days) < m.detected_on

    # the run of consecutive misses, as the dates their windows opened: a counting report
    # breaks it for the misses whose window opened before the report was made
    run: list[date] = []
    interval = 0
    for i, e in enumerate(history):
        if isinstance(e, d.ReportingPlanSet):
            interval = e.interval_days
        if isinstance(e, d.VisitLogged):
            assert e.counts_as_report is ((e.kind, e.outcome) in COUNTING)
            if e.counts_as_report:
                run = [o for o in run if o >= d.office_date(e.occurred_at)]
            if e.outcome is O.MOVED_UNREPORTED:
                nxt = history[i + 1]
                assert isinstance(nxt, d.ViolationRecorded)
                assert (nxt.code, nxt.source, nxt.source_id) == \
                    ("PINDAH_TANPA_LAPOR", d.Source.VISIT, e.visit_id)
        elif isinstance(e, d.ReportMissed):
            assert e.consecutive == len(run) + 1
            run.append(e.due_on - timedelta(days=interval - e.grace_days))
            if e.consecutive % 3 == 0:
                violation, review = history[i + 1], history[i + 2]
                assert isinstance(violation, d.ViolationRecorded)
                assert (violation.category, violation.code, violation.source) == \
                    (KHUSUS, "WAJIB_LAPOR_3X", d.Source.MISSED_REPORTS)
                assert violation.violation_id == \
                    derived_id(CLIENT, "missed-reports-violation", e.due_on)
                assert violation.source_id == e.due_on.isoformat()
                assert isinstance(review, d.TppReviewRequested)
                assert review.violation_id == violation.violation_id
        elif isinstance(e, d.ViolationRecorded) and e.source is d.Source.MISSED_REPORTS:
            before = history[i - 1]
            assert isinstance(before, d.ReportMissed) and before.consecutive % 3 == 0
        elif isinstance(e, d.TppReviewRequested):
            assert isinstance(history[i - 1], d.ViolationRecorded)
            assert history[i - 1].source is d.Source.MISSED_REPORTS

    # one violation and one review per third miss, and none otherwise
    thirds = [m for m in misses if m.consecutive % 3 == 0]
    automatic = [e for e in history if isinstance(e, d.ViolationRecorded)
                 and e.source is d.Source.MISSED_REPORTS]
    reviews = [e for e in history if isinstance(e, d.TppReviewRequested)]
    assert len(thirds) == len(automatic) == len(reviews)


def _three_missed_then_a_report() -> list[object]:
    return [sweeping(date(2026, 2, 8)), sweeping(date(2026, 3, 10)),
            visiting(date(2026, 3, 20), visit_id="v-a"), sweeping(date(2026, 5, 9)),
            sweeping(date(2026, 7, 8)), visiting(date(2026, 7, 20), K.LAPOR_JARAK_JAUH,
                                                 reason="sakit", visit_id="v-b"),
            planning(interval=14, first=date(2026, 6, 1), today=date(2026, 7, 20)),
            visiting(date(2026, 9, 1), visit_id="v-c"),
            visiting(date(2026, 9, 2), K.KUNJUNGAN_RUMAH, O.MOVED_UNREPORTED, visit_id="v-d"),
            sweeping(date(2027, 2, 1)), ENDING, sweeping(date(2027, 3, 1))]


@hp.settings(max_examples=300, deadline=None)
@hp.example(plan=planning(remote=True), commands=_three_missed_then_a_report())
@hp.given(plan=plans(), commands=command_runs())
def test_any_sequence_of_commands_keeps_the_reporting_rules(plan, commands):
    history = run(plan, commands)
    hp.event("a three-misses violation",
             any(isinstance(e, d.TppReviewRequested) for e in history))
    check_invariants(history)


def test_the_explicit_example_reaches_the_deep_states():
    history = run(planning(remote=True), _three_missed_then_a_report())
    misses = [e.consecutive for e in history if isinstance(e, d.ReportMissed)]
    assert misses[:4] == [1, 2, 1, 2]  # the report of 03-20 broke the run
    assert 3 in misses
    assert any(isinstance(e, d.TppReviewRequested) for e in history)
    assert any(isinstance(e, d.ViolationRecorded) and e.code == "PINDAH_TANPA_LAPOR"
               for e in history)
    assert isinstance(history[-1], d.SupervisionEnded)
