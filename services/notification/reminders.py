"""Reminders to clients: a text a few days before a report (wajib lapor) is due, once per
due date (the delivery id derives from the client and the due date)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg

from shared.ids import derived_id
from shared.office_time import WIB

from .domain import reminder_text


async def queue_reminders(pool: asyncpg.Pool, schema: str, today, days_ahead: int) -> int:
    s = f'"{schema}"'
    rows = await pool.fetch(
        f"SELECT client_id, office, full_name, phone, next_due_on FROM {s}.contacts "
        "WHERE status = 'ACTIVE' AND phone IS NOT NULL AND next_due_on BETWEEN $1 AND $2",
        today, today + timedelta(days=days_ahead))
    now = datetime.now(UTC)
    queued = 0
    for r in rows:
        due = r["next_due_on"].isoformat()
        delivery_id = derived_id(r["client_id"], "report-reminder", due)
        result = await pool.execute(
            f"INSERT INTO {s}.deliveries (id, channel, target, recipient, event_id, event_type, "
            "office, client_id, headers, body, status, next_attempt_at, created_at) VALUES "
            "($1, 'SMS', $2, $3, $1, 'ReportReminder', $4, $5, $6::jsonb, $7, 'PENDING', $8, $8) "
            "ON CONFLICT (id) DO NOTHING",
            delivery_id, f"client:{r['client_id']}", r["phone"], r["office"], r["client_id"],
            json.dumps({"due_on": due}),
            reminder_text(r["full_name"], r["office"], due).encode(), now)
        queued += result.endswith(" 1")
    return queued


def reminder_scheduler(pool: asyncpg.Pool, schema: str, days_ahead: int, every: float):
    async def report_reminders() -> None:
        while True:
            await queue_reminders(pool, schema, datetime.now(WIB).date(), days_ahead)
            await asyncio.sleep(every)

    return report_reminders
