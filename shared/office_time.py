"""The offices' calendar. Every office keeps Western Indonesia Time (WIB, UTC+7): the day a
visit, a decision or a closure falls on, and the register year, are WIB dates, whatever the
zone of the machine a service runs on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

__all__ = ["WIB", "Month", "office_date"]

WIB = timezone(timedelta(hours=7), "WIB")

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


def office_date(at: datetime) -> date:
    """The office's calendar date of an instant (which must carry its zone)."""
    return at.astimezone(WIB).date()


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month of the offices: from midnight WIB of its first day to midnight WIB
    of the next month's first day (2026-12 is 2026-12-01T00:00+07:00 up to, not including,
    2027-01-01T00:00+07:00)."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"month {self.month} is not 1 to 12")
        if not 1 <= self.year <= 9998:  # the next month's first day must exist too
            raise ValueError(f"year {self.year} is not 1 to 9998")

    @classmethod
    def parse(cls, text: str) -> Month:
        """`YYYY-MM`; ValueError for anything else (`2026-13`, `2026-1`, `2026-12-01`)."""
        m = _MONTH.fullmatch(text)
        if m is None:
            raise ValueError(f"{text!r} is not YYYY-MM")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, at: datetime) -> Month:
        """The office's month of an instant (which must carry its zone)."""
        day = office_date(at)
        return cls(day.year, day.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def next_first_day(self) -> date:
        """The first day after the month (the end, exclusive, of its dates)."""
        return date(self.year + self.month // 12, self.month % 12 + 1, 1)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(0), WIB)

    @property
    def end(self) -> datetime:
        """The instant the month ends (exclusive): midnight WIB of the next month."""
        return datetime.combine(self.next_first_day, time(0), WIB)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"
