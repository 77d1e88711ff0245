"""The wajib-lapor clock: due dates whose window closed without a report are missed.

Runs in every replica on the real clock. A missed report is one fact per due date: its id
derives from the case and the due date, so replicas sweeping at once, a sweep that repeats,
or a process killed mid-sweep and restarted, record each miss exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import asyncpg
import structlog

from shared.decider import CommandRunner
from shared.events import Metadata
from shared.ids import new_id
from shared.streams import CaseRef

from . import domain as d

log = structlog.get_logger("bapas.supervision.sweeper")


async def sweep_missed_reports(pool: asyncpg.Pool, schema: str, runner: CommandRunner,
                               today: date) -> int:
    """One sweep as of `today` (an office date); returns how many misses it recorded."""
    here, offices = runner.store.topology.written_offices_sql(2)
    rows = await pool.fetch(
        f"SELECT client_id, office FROM \"{schema}\".board WHERE status = 'ACTIVE' "
        "AND next_due_on IS NOT NULL AND next_due_on + grace_days < $1 "
        f"AND next_due_on <= period_end AND {here} "
        "ORDER BY next_due_on LIMIT 1000", today, offices)
    recorded = 0
    for row in rows:
        decision = await runner.run(
            CaseRef(row["office"], row["client_id"]), d.SweepMissedReports(today),
            Metadata("system:report-sweep", new_id()), identify=d.identify(row["client_id"]))
        missed = [e for e in decision.events if e.type == "ReportMissed"]
        recorded += len(missed)
        for e in missed:
            log.info("report missed", client_id=row["client_id"], office=row["office"],
                     due_on=str(e.data.due_on), consecutive=e.data.consecutive)
    return recorded


def report_sweeper(pool: asyncpg.Pool, schema: str, runner: CommandRunner, every: float):
    async def report_sweep() -> None:
        while True:
            await sweep_missed_reports(pool, schema, runner, d.office_date(datetime.now(UTC)))
            await asyncio.sleep(every)

    return report_sweep
