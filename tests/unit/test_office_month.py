"""The offices' month: its bounds in WIB, and the texts that are not a month."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shared.office_time import WIB, Month


def test_a_month_runs_from_midnight_wib_of_its_first_day_to_that_of_the_next_month():
    december = Month.parse("2026-12")
    assert str(december) == "2026-12"
    assert (december.first_day, december.next_first_day) == (date(2026, 12, 1), date(2027, 1, 1))
    assert december.start == datetime(2026, 12, 1, tzinfo=WIB)
    assert december.end == datetime(2027, 1, 1, tzinfo=WIB)
    assert december.end.astimezone(UTC) == datetime(2026, 12, 31, 17, tzinfo=UTC)
    assert Month.parse("2027-02").next_first_day == date(2027, 3, 1)


def test_the_month_of_an_instant_is_its_office_month():
    assert Month.of(datetime(2026, 11, 30, 17, 0, tzinfo=UTC)) == Month(2026, 12)  # 00:00 WIB
    assert Month.of(datetime(2026, 11, 30, 16, 59, tzinfo=UTC)) == Month(2026, 11)


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-12", "2026-12-01",
                                  "2026/12", "", " 2026-12", "2026-12\n", "0000-01", "9999-12",
                                  "\uff12\uff10\uff12\uff16-12"])
def test_anything_else_is_not_a_month(text):
    with pytest.raises(ValueError):
        Month.parse(text)
