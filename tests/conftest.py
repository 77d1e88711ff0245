"""Fixtures: real NATS and PostgreSQL for the session, a namespace per test."""

from __future__ import annotations

import uuid

import asyncpg
import nats
import pytest

from shared.settings import Settings
from shared.streams import CONTEXT_STREAMS, Topology, ensure_streams
from tests.support.infra import Servers, provide_servers

TEST_SECRET = "test-secret-for-bapas-tests-only-0123456789"


@pytest.fixture(scope="session")
def servers() -> Servers:
    with provide_servers() as s:
        yield s


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def topology(namespace: str) -> Topology:
    return Topology(namespace)


@pytest.fixture
def settings(servers: Servers, namespace: str) -> Settings:
    return Settings(env="development", nats_url=servers.nats_url,
                    nats_monitor_url=servers.monitor_url, database_url=servers.dsn,
                    namespace=namespace, jwt_secret=TEST_SECRET,
                    projection_retry_delays=(0.2, 0.4))


@pytest.fixture
async def nc(servers: Servers):
    conn = await nats.connect(servers.nats_url, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.2)
    yield conn
    await conn.close()


@pytest.fixture
async def pool(servers: Servers):
    p = await asyncpg.create_pool(servers.dsn, min_size=1, max_size=10)
    yield p
    await p.close()


@pytest.fixture
async def streams(nc, topology: Topology, pool):
    """This test's streams (every context plus the test context `ledger`); after the test,
    every stream and schema of its namespace is removed."""
    contexts = (*CONTEXT_STREAMS, "ledger")
    await ensure_streams(nc.jetstream(), topology, contexts=contexts)
    yield contexts
    js = nc.jetstream()
    for info in await js.streams_info():
        if info.config.name.startswith(topology.namespace.upper() + "_"):
            await js.delete_stream(info.config.name)
    async with pool.acquire() as conn:
        schemas = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                                   topology.namespace + "\\_%")
        await conn.execute("SET lock_timeout = '20s'")  # a leak shows as an error, not a hang
        for row in schemas:
            await conn.execute(f'DROP SCHEMA "{row["nspname"]}" CASCADE')
