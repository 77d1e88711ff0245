"""A projector process for the crash test: applies the ledger slowly so it can be killed
in the middle of a batch. Configured by environment: NS, NATS_URL, DSN, SCHEMA, and INTAKE (`kernel`, the
default, or `faststream`)."""

from __future__ import annotations

import asyncio
import os

import asyncpg
import nats

from shared.events import EventCatalog
from shared.projector import ProjectionRunner
from shared.runtime import subscriber_broker
from shared.streams import Topology
from tests.support.ledger import LEDGER, Balances


class SlowBalances(Balances):
    def handlers(self):
        async def slow(handler, w, e):
            await asyncio.sleep(0.01)
            await handler(w, e)
            await w.flush()  # write now, so that a kill lands between statements

        return {t: (lambda w, e, h=h: slow(h, w, e)) for t, h in super().handlers().items()}


async def main() -> None:
    nc = await nats.connect(os.environ["NATS_URL"])
    pool = await asyncpg.create_pool(os.environ["DSN"], min_size=1, max_size=4)
    broker = None
    if os.environ.get("INTAKE", "kernel") == "faststream":
        broker = subscriber_broker(os.environ["NATS_URL"], "test-projector-proc")
        await broker.start()
    runner = ProjectionRunner(SlowBalances(), nc=nc, pool=pool,
                              topology=Topology(os.environ["NS"]), schema=os.environ["SCHEMA"],
                              catalog=EventCatalog(LEDGER), batch_size=10, fetch_wait=0.2,
                              broker=broker)
    await runner.run()


if __name__ == "__main__":
    asyncio.run(main())
