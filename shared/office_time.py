"""The offices' calendar. Every office keeps Western Indonesia Time (WIB, UTC+7): the day a
visit, a decision or a closure falls on, and the register year, are WIB dates, whatever the
zone of the machine a service runs on."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

__all__ = ["WIB", "office_date"]

WIB = timezone(timedelta(hours=7), "WIB")


def office_date(at: datetime) -> date:
    """The office's calendar date of an instant (which must carry its zone)."""
    return at.astimezone(WIB).date()
