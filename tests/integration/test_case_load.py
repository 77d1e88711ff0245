"""Reading a case costs its own events, never the stream's size."""

from __future__ import annotations

from datetime import UTC, datetime

import nats
import pytest

from shared.events import EventCatalog, Metadata, NewEvent
from shared.ids import new_id
from shared.local.servers import NatsServer
from shared.store import CaseVersion, EventStore
from shared.streams import CaseRef, Topology, ensure_streams
from tests.support.ledger import LEDGER, AccountOpened, Credited
from tests.support.wait import eventually

pytestmark = pytest.mark.slow
STREAM_SIZE = 100_000


@pytest.fixture
async def big_stream(tmp_path):
    """A stream of 100,000 events. Filled on a server of its own with the default fsync:
    this test is about reading, and fsyncing 100,000 fills would take half a minute."""
    with NatsServer(tmp_path / "nats", sync_always=False) as server:
        nc = await nats.connect(server.url)
        topology = Topology("load")
        await ensure_streams(nc.jetstream(), topology, contexts=("ledger",))
        yield nc, topology
        await nc.close()


async def test_loading_one_case_reads_only_that_cases_messages(big_stream):
    nc, topology = big_stream
    store = EventStore(nc, topology, EventCatalog(LEDGER))
    meta = Metadata("pk-0007", "corr")
    target = CaseRef("jaksel", new_id())

    def event(data) -> NewEvent:
        return NewEvent(new_id(), data, datetime.now(UTC), meta)

    version = (await store.append("ledger", target, [event(AccountOpened(owner="x"))],
                                  CaseVersion.new())).version
    others = [CaseRef("jaksel", new_id()) for _ in range(2000)]
    body = Credited(amount=1).model_dump_json().encode()
    for i in range(STREAM_SIZE - 5):
        # other cases' messages, interleaved with the target's
        await nc.publish(topology.subject("ledger", others[i % len(others)]), body)
        if i % 25_000 == 0:
            await nc.flush()
            version = (await store.append("ledger", target, [event(Credited(amount=i))],
                                          version)).version
    await nc.flush()
    js = nc.jetstream()
    await eventually(lambda: _messages(js, topology), equals=STREAM_SIZE)

    received_before = nc.stats["in_msgs"]
    loaded = await store.load("ledger", target)
    received = nc.stats["in_msgs"] - received_before

    assert [e.type for e in loaded.events] == ["AccountOpened"] + ["Credited"] * 4
    assert [e.sequence for e in loaded.events] == [1, 2, 3, 4, 5]
    assert loaded.messages_read == 5
    # what crossed the wire: the case's 5 messages and one end-of-batch status, nothing else
    assert received == 6


async def _messages(js, topology: Topology) -> int:
    return (await js.stream_info(topology.stream("ledger"))).state.messages
