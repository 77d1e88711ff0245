"""The monthly office report (laporan bulanan) over HTTP: which office and which month a
request asks for, and who may ask. Each context answers with the counts it owns under
`GET /v1/reports/monthly`; a console puts the three answers together."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Query

from ..office_time import Month
from .auth import CurrentPrincipal
from .problems import Problem

__all__ = ["FACTS_TABLE", "REPORT_READERS", "MonthlyScope", "ReportScope", "Tally", "counts",
           "record_fact"]

# A monthly report's counted facts (guidance's and supervision's read models): one row per
# fact, `kind` what is counted, `key` the code it is counted under, on an office date.
FACTS_TABLE = """
    CREATE TABLE {table} (
        event_id text NOT NULL,
        kind     text NOT NULL,
        office   text NOT NULL,
        on_date  date NOT NULL,
        key      text NOT NULL,
        PRIMARY KEY (event_id, kind)
    );
    CREATE INDEX ON {table} (office, on_date);
"""


def record_fact(w: Any, e: Any, kind: str, on: object, key: str) -> None:
    """One counted fact of event `e` into `{report_facts}` (a projection Writer's batch)."""
    w.execute_unordered("INSERT INTO {report_facts} (event_id, kind, office, on_date, key) "
                        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                        e.id, kind, e.office, on, key)

# the office's staff and the panel read their own office's report; auditors any office's
REPORT_READERS = ("pk", "supervisor", "head", "tpp", "auditor")
OFFICE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"


MonthParam = Annotated[str | None, Query(
    description="the office's calendar month (WIB) as YYYY-MM; default: the "
    "current month", examples=["2026-12"])]
OfficeParam = Annotated[str | None, Query(
    pattern=OFFICE_PATTERN, description="another office's report: auditors only")]


@dataclass(frozen=True, slots=True)
class ReportScope:
    office: str
    month: Month


async def report_scope(principal: CurrentPrincipal, month: MonthParam = None,
                       office: OfficeParam = None) -> ReportScope:
    if not principal.has(*REPORT_READERS):
        raise Problem(403, "Forbidden", "the monthly report needs one of the roles "
                      + ", ".join(REPORT_READERS), rule="role_required")
    if office and office != principal.office and "auditor" not in principal.roles:
        raise Problem(403, "Forbidden", "only auditors read another office's report",
                      rule="office_scope", field="query.office")
    return ReportScope(office=office or principal.office,
                       month=_month(month) if month is not None else Month.of(datetime.now(UTC)))


def _month(text: str) -> Month:
    try:
        return Month.parse(text)
    except ValueError:
        message = "must be a calendar month as YYYY-MM (month 01 to 12), e.g. 2026-12"
        raise Problem(422, "Invalid request", f"query.month: {message}", rule="month_format",
                      field="query.month", errors=[{"field": "query.month",
                                                    "rule": "month_format",
                                                    "message": message}]) from None


MonthlyScope = Annotated[ReportScope, Depends(report_scope)]


class Tally:
    """A report query's rows `(kind, key, n)`, by kind: what is counted, and the bar each
    count goes to."""

    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._found: dict[str, list[tuple[str, int]]] = {}
        for r in rows:
            self._found.setdefault(r["kind"], []).append((r["key"], r["n"]))

    def of(self, kind: str, known: Iterable[str] = ()) -> dict[str, int]:
        """The counts of `kind` by key, every known key included (0 where none)."""
        return counts(known, self._found.get(kind, []))

    def total(self, kind: str) -> int:
        return sum(n for _, n in self._found.get(kind, []))


def counts(known: Iterable[str], found: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Every known key (0 where none was counted), then any other key found, so a chart
    has every bar and nothing counted is dropped."""
    out = dict.fromkeys(known, 0)
    for key, n in found:
        out[key] = out.get(key, 0) + n
    return out
