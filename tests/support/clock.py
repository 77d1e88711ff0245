"""Times for tests, derived from now in the office's zone (WIB), so that a test holds at
every hour of the day and in every time zone of the machine that runs it.

Never stamp "today at 10:00": between 17:00 and 03:00 UTC that lies in the future and the
services refuse it. Never use `date.today()`: that is the machine's date, not the office's.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from shared.office_time import WIB, office_date

__all__ = ["moment_on", "now_utc", "office_today", "stamp_on"]


def now_utc() -> datetime:
    return datetime.now(UTC)


def office_today() -> date:
    """The office's date now (WIB), whatever the machine's zone."""
    return office_date(now_utc())


def moment_on(day: date, *, now: datetime | None = None) -> datetime:
    """An instant on the office's `day` that is in the past when `day` is today or before:
    noon WIB of an earlier or a later day, and a minute ago on today (never before today's
    midnight WIB, so it stays on today's date just after midnight)."""
    now = now or now_utc()
    if day != office_date(now):
        return datetime.combine(day, time(12), WIB)
    midnight = datetime.combine(day, time(0), WIB)
    return max(midnight, now.astimezone(WIB) - timedelta(minutes=1))


def stamp_on(day: date, *, now: datetime | None = None) -> str:
    """`moment_on` as the API takes it: ISO 8601 with the office's offset."""
    return moment_on(day, now=now).astimezone(WIB).isoformat(timespec="seconds")
