"""The kernel's pool skips asyncpg's reset query on release, except where a session holds
state: the leadership connection's advisory lock still goes with its release."""

from __future__ import annotations

from shared.db import create_pool


async def test_an_advisory_lock_of_a_marked_connection_goes_with_its_release(servers):
    pool = await create_pool(servers.dsn, min_size=1, max_size=1)  # one connection, reused
    try:
        async with pool.acquire() as conn:
            conn.holds_session_state()
            assert await conn.fetchval("SELECT pg_try_advisory_lock(4242)")
        # not unlocked by hand: the reset on release did it
        assert await pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242") == 0
    finally:
        await pool.close()


async def test_an_open_transaction_is_rolled_back_on_release(servers):
    pool = await create_pool(servers.dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TEMP TABLE IF NOT EXISTS reset_probe (x int)")
            tx = conn.transaction()
            await tx.start()
            await conn.execute("INSERT INTO reset_probe VALUES (1)")
        # the same session (one connection): the insert was rolled back, the table kept
        assert await pool.fetchval("SELECT count(*) FROM reset_probe") == 0
    finally:
        await pool.close()
