"""Notification's own tables, which are not rebuilt from the streams: subscriptions, the
officers' contact directory and the delivery log (rebuilding a read model must never send
a past delivery again)."""

from __future__ import annotations

import asyncpg

from shared.db import quote_ident

DDL = """
CREATE TABLE IF NOT EXISTS {s}.subscriptions (
    id                    text PRIMARY KEY,
    office                text NOT NULL,
    agency                text NOT NULL,
    agency_kind           text NOT NULL,
    event_types           text[] NOT NULL,
    data_level            text NOT NULL,
    delivery_kind         text NOT NULL,
    url                   text NOT NULL,
    secret                text NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    status                text NOT NULL DEFAULT 'ACTIVE',
    consecutive_failures  integer NOT NULL DEFAULT 0,
    paused_until          timestamptz,
    created_at            timestamptz NOT NULL,
    created_by            text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.officers (
    office     text NOT NULL,
    officer_id text NOT NULL,
    name       text NOT NULL,
    email      text,
    role       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (office, officer_id)
);
CREATE TABLE IF NOT EXISTS {s}.deliveries (
    id              text PRIMARY KEY,
    channel         text NOT NULL,
    target          text NOT NULL,
    subscription_id text,
    recipient       text,
    event_id        text NOT NULL,
    event_type      text NOT NULL,
    office          text NOT NULL,
    client_id       text,
    headers         jsonb NOT NULL,
    body            bytea NOT NULL,
    status          text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz
);
CREATE INDEX IF NOT EXISTS deliveries_due ON {s}.deliveries (next_attempt_at)
    WHERE status IN ('PENDING', 'RETRYING', 'SENDING');
CREATE INDEX IF NOT EXISTS deliveries_by_subscription ON {s}.deliveries (subscription_id, created_at);
"""


async def ensure_tables(pool: asyncpg.Pool, schema: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('bapas.notification_ddl'))")
        await conn.execute(DDL.format(s=quote_ident(schema)))
