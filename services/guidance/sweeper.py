"""The litmas clock: a case whose litmas is not in by its due time gets LitmasOverdue, once.

Runs in every replica on the real clock. The event id derives from the case and its due
time, so two replicas sweeping at once, or a sweep that repeats, append it once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import structlog

from shared.decider import CommandRunner
from shared.events import Metadata
from shared.ids import derived_id, new_id
from shared.streams import CaseRef

from .domain import MarkLitmasOverdue

log = structlog.get_logger("bapas.guidance.sweeper")


async def sweep_overdue_litmas(pool: asyncpg.Pool, schema: str, runner: CommandRunner,
                               now: datetime) -> int:
    """One sweep: returns how many cases it marked."""
    here, offices = runner.store.topology.written_offices_sql(2)
    rows = await pool.fetch(
        f'SELECT client_id, office, litmas_due_at FROM "{schema}".cases WHERE status = '
        "'OPEN' AND NOT litmas_submitted AND NOT litmas_overdue AND litmas_due_at <= $1 "
        f"AND {here} ORDER BY litmas_due_at LIMIT 500", now, offices)
    marked = 0
    for row in rows:
        due = row["litmas_due_at"].isoformat()
        decision = await runner.run(
            CaseRef(row["office"], row["client_id"]), MarkLitmasOverdue(now),
            Metadata("system:litmas-sweep", new_id()), at=now,
            event_id=lambda i, cid=row["client_id"], due=due: derived_id(
                cid, "litmas-overdue", due, i))
        if decision.events:
            marked += 1
            log.info("litmas overdue", client_id=row["client_id"], office=row["office"],
                     due_at=due)
    return marked


def litmas_sweeper(pool: asyncpg.Pool, schema: str, runner: CommandRunner, every: float):
    async def litmas_sweep() -> None:
        while True:
            await sweep_overdue_litmas(pool, schema, runner, datetime.now(UTC))
            await asyncio.sleep(every)

    return litmas_sweep
