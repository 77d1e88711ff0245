"""PostgreSQL: the pool, and the kernel's own tables inside each service's schema."""

from __future__ import annotations

import re

import asyncpg

__all__ = ["create_pool", "ensure_kernel_tables", "quote_ident", "TRANSIENT_DB_ERRORS"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Errors that say nothing about the event being applied: retry the whole batch later.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.LockNotAvailableError,
)


def quote_ident(name: str) -> str:
    """Schema and table names come from code and settings, never from requests; still check."""
    if not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a plain lower-case SQL identifier")
    return f'"{name}"'


class Connection(asyncpg.Connection):
    """A pooled connection that knows whether its session holds state a release must undo.

    asyncpg resets every connection it takes back with a query of its own (unlock advisory
    locks, close cursors, unlisten, reset settings): a round trip on every `pool.fetch`,
    awaited before the result is returned. Our sessions hold none of that, except the
    projector's leadership connection, which takes an advisory lock and says so with
    `holds_session_state()`. Only such a connection gets the full reset; an open transaction
    is rolled back on every release, as asyncpg always does."""

    __slots__ = ("_holds_session_state",)

    def holds_session_state(self) -> None:
        self._holds_session_state = True


async def _reset(conn: asyncpg.Connection) -> None:
    # asyncpg has already rolled back an open transaction and dropped listeners
    if getattr(conn, "_holds_session_state", False):
        conn._holds_session_state = False
        await conn.execute(conn.get_reset_query())


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    # connecting gives up after 3 s (asyncpg's default is 60): an unreachable database is
    # answered 503 at once, not after a minute
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                     command_timeout=30, timeout=3,
                                     connection_class=Connection, reset=_reset)


KERNEL_DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.projection_checkpoints (
    projection text NOT NULL,
    tag        text NOT NULL,
    stream     text NOT NULL,
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, tag, stream)
);
CREATE TABLE IF NOT EXISTS {s}.projection_versions (
    projection   text PRIMARY KEY,
    active_tag   text,
    building_tag text,
    generation   integer NOT NULL DEFAULT 0,
    switched_at  timestamptz
);
CREATE TABLE IF NOT EXISTS {s}.projection_parked (
    projection      text NOT NULL,
    tag             text NOT NULL,
    subject         text NOT NULL,
    status          text NOT NULL CHECK (status IN ('retrying', 'parked')),
    attempts        integer NOT NULL,
    next_attempt_at timestamptz,
    first_stream    text NOT NULL,
    first_seq       bigint NOT NULL,
    last_error      text NOT NULL,
    held_since      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, tag, subject)
);
CREATE TABLE IF NOT EXISTS {s}.access_outbox (
    id         text PRIMARY KEY,
    subject    text NOT NULL,
    headers    jsonb NOT NULL,
    body       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.projection_held_events (
    projection text NOT NULL,
    tag        text NOT NULL,
    stream     text NOT NULL,
    seq        bigint NOT NULL,
    subject    text NOT NULL,
    headers    jsonb NOT NULL,
    body       bytea NOT NULL,
    PRIMARY KEY (projection, tag, stream, seq)
);
-- the service's copy of its own cases' events (shared.case_cache): never the truth, so
-- unlogged (no WAL, no fsync; emptied after a crash, when loads read the streams again)
CREATE UNLOGGED TABLE IF NOT EXISTS {s}.case_cache (
    stream     text NOT NULL,
    subject    text NOT NULL,
    sequence   integer NOT NULL,
    stream_seq bigint NOT NULL,
    hash       text NOT NULL,
    headers    jsonb NOT NULL,
    body       bytea NOT NULL,
    PRIMARY KEY (stream, subject, sequence)
);
"""


async def ensure_kernel_tables(conn: asyncpg.Connection, schema: str) -> None:
    # Two services starting at once may race on CREATE ... IF NOT EXISTS; serialise them.
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('bapas.kernel_ddl'))")
        await conn.execute(KERNEL_DDL.format(s=quote_ident(schema)))
