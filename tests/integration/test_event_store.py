"""The event store on a real nats-server: concurrency, idempotency, atomic batches, reading."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from shared.decider import CommandRunner, Decider
from shared.envelope import GENESIS_HASH, Envelope, ce_type, format_time, verify_chain
from shared.errors import ConcurrencyError, DomainError, KernelError
from shared.events import EventCatalog, Metadata, NewEvent
from shared.ids import derived_id, new_id
from shared.store import CaseVersion, EventStore
from shared.streams import CaseRef, stream_profile
from tests.support import ledger
from tests.support.ledger import LEDGER, AccountOpened, Credited, Debited

META = Metadata(actor="pk-0007", correlation_id="corr-1")


def ev(data, *, id=None):
    return NewEvent(id or new_id(), data, datetime.now(UTC), META)


@pytest.fixture
def store(nc, topology, streams) -> EventStore:
    return EventStore(nc, topology, EventCatalog(LEDGER))


def case() -> CaseRef:
    return CaseRef("jaksel", new_id())


async def test_two_racing_appends_with_the_same_expectation_store_exactly_one(store):
    ref = case()
    await store.append("ledger", ref, [ev(AccountOpened(owner="a"))], CaseVersion.new())
    loaded = await store.load("ledger", ref)
    results = await asyncio.gather(
        *(store.append("ledger", ref, [ev(Credited(amount=i))], loaded.version) for i in (1, 2)),
        return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["AppendResult", "ConcurrencyError"]
    after = await store.load("ledger", ref)
    assert [e.type for e in after.events] == ["AccountOpened", "Credited"]
    assert after.version.sequence == 2


async def test_the_same_event_id_appended_twice_is_stored_once(store):
    ref = case()
    opened = ev(AccountOpened(owner="a"))
    first = await store.append("ledger", ref, [opened], CaseVersion.new())
    # a retry after a lost answer: same id, same (now stale) expectation
    again = await store.append("ledger", ref, [opened], CaseVersion.new())
    assert again.duplicate and again.events[0].stream_seq == first.events[0].stream_seq
    # and with an up-to-date expectation the server's duplicate window catches it
    again2 = await store.append("ledger", ref, [opened], first.version)
    assert again2.duplicate
    loaded = await store.load("ledger", ref)
    assert [e.id for e in loaded.events] == [opened.id]


async def test_an_atomic_batch_whose_expectation_fails_stores_none_of_its_events(store):
    ref = case()
    await store.append("ledger", ref, [ev(AccountOpened(owner="a"))], CaseVersion.new())
    batch = [ev(Credited(amount=5)), ev(Credited(amount=6)), ev(Debited(amount=1))]
    with pytest.raises(ConcurrencyError):
        await store.append("ledger", ref, batch, CaseVersion.new())  # stale: case has 1 event
    loaded = await store.load("ledger", ref)
    assert [e.type for e in loaded.events] == ["AccountOpened"]
    # the same batch with the right expectation lands whole, in order, chained
    result = await store.append("ledger", ref, batch, loaded.version)
    assert [e.sequence for e in result.events] == [2, 3, 4]
    loaded = await store.load("ledger", ref)
    assert [e.id for e in loaded.events[1:]] == [e.id for e in batch]
    assert [e.stream_seq for e in loaded.events[1:]] == [e.stream_seq for e in result.events]
    assert verify_chain([(Envelope.from_headers(e.headers, e.subject, e.stream_seq), e.body)
                         for e in loaded.events]).intact


async def test_a_repeated_batch_is_recognised_as_already_stored(store):
    ref = case()
    batch = [ev(AccountOpened(owner="a")), ev(Credited(amount=3))]
    first = await store.append("ledger", ref, batch, CaseVersion.new())
    again = await store.append("ledger", ref, batch, CaseVersion.new())
    assert again.duplicate
    assert [e.stream_seq for e in again.events] == [e.stream_seq for e in first.events]
    assert len((await store.load("ledger", ref)).events) == 2


async def test_many_cases_in_parallel_stay_separate_and_ordered(store):
    refs = [case() for _ in range(40)]

    async def work(ref: CaseRef) -> None:
        v = (await store.append("ledger", ref, [ev(AccountOpened(owner=ref.client_id))],
                                CaseVersion.new())).version
        for amount in range(1, 4):
            v = (await store.append("ledger", ref, [ev(Credited(amount=amount))], v)).version

    await asyncio.gather(*(work(r) for r in refs))
    for ref in refs:
        loaded = await store.load("ledger", ref)
        assert [e.sequence for e in loaded.events] == [1, 2, 3, 4]
        assert [e.data.amount for e in loaded.events[1:]] == [1, 2, 3]
        assert loaded.events[0].data.owner == ref.client_id


async def test_an_old_event_version_is_read_through_its_upcaster(nc, store, topology):
    ref = case()
    opened = await store.append("ledger", ref, [ev(AccountOpened(owner="a"))], CaseVersion.new())
    body = json.dumps({"value": "125", "memo": "gaji"}).encode()
    env = Envelope(id=new_id(), type=ce_type("Credited", 1), time=format_time(datetime.now(UTC)),
                   office=ref.office, context="ledger", client_id=ref.client_id, sequence=2,
                   prevhash=opened.version.hash, hash="")
    from dataclasses import replace
    env = replace(env, hash=env.computed_hash(body))
    await nc.jetstream().publish(topology.subject("ledger", ref), body, headers=env.headers())
    loaded = await store.load("ledger", ref)
    credited = loaded.events[1]
    assert credited.version == 1 and isinstance(credited.data, Credited)
    assert credited.data == Credited(amount=125, note="gaji")
    assert credited.body == body  # the stored bytes are untouched: the chain still holds
    assert verify_chain([(Envelope.from_headers(e.headers, e.subject, e.stream_seq), e.body)
                         for e in loaded.events]).intact


async def test_an_unknown_type_names_subject_and_sequence(nc, store, topology):
    ref = case()
    subject = topology.subject("ledger", ref)
    env = Envelope(id=new_id(), type=ce_type("Teleported", 1),
                   time=format_time(datetime.now(UTC)), office=ref.office, context="ledger",
                   client_id=ref.client_id, sequence=1, prevhash=GENESIS_HASH, hash="x")
    ack = await nc.jetstream().publish(subject, b"{}", headers=env.headers())
    from shared.errors import EventDecodeError
    with pytest.raises(EventDecodeError) as err:
        await store.load("ledger", ref)
    assert subject in str(err.value) and f"stream sequence {ack.seq}" in str(err.value)
    assert "Teleported" in str(err.value)


async def test_the_command_runner_re_decides_on_conflict(store):
    runner = CommandRunner(store, "ledger", Decider(ledger.Account(), ledger.decide, ledger.evolve))
    ref = case()
    await runner.run(ref, ledger.Open("a"), META)
    await runner.run(ref, ledger.Credit(10), META)
    # two debits of 7 race: both start from balance 10; one is stored, the other re-decides
    # on the fresh state (balance 3) and is refused by the rule, not by the store
    results = await asyncio.gather(runner.run(ref, ledger.Debit(7), META),
                                   runner.run(ref, ledger.Debit(7), META),
                                   return_exceptions=True)
    kinds = sorted(type(r).__name__ for r in results)
    assert kinds == ["Decision", "DomainError"]
    refused = next(r for r in results if isinstance(r, DomainError))
    assert refused.rule == "balance"
    state, version, _ = await runner.load_state(ref)
    assert state.balance == 3 and version.sequence == 3


async def test_a_command_presumed_new_on_a_case_that_exists_is_decided_on_the_case(store):
    runner = CommandRunner(store, "ledger", Decider(ledger.Account(), ledger.decide, ledger.evolve))
    ref = case()
    opened = await runner.run(ref, ledger.Open("a"), META, presume_new=True)  # not read first
    assert opened.version.sequence == 1
    await runner.run(ref, ledger.Credit(10), META)
    # presumed empty, the append expects nothing there and is refused; decided again on the
    # case as it is, the rule refuses a second opening
    with pytest.raises(DomainError):
        await runner.run(ref, ledger.Open("b"), META, presume_new=True)
    # and a debit presumed new sees the balance, not an empty account
    debited = await runner.run(ref, ledger.Debit(4), META, presume_new=True)
    assert debited.state.balance == 6 and debited.version.sequence == 3


async def test_a_reaction_with_derived_ids_appends_once_however_often_it_runs(store):
    runner = CommandRunner(store, "ledger", Decider(ledger.Account(), ledger.decide, ledger.evolve))
    ref = case()
    await runner.run(ref, ledger.Open("a"), META)
    cause = new_id()
    ids = lambda i: derived_id(cause, "welcome-bonus", i)  # noqa: E731
    results = [await runner.run(ref, ledger.Credit(50, "bonus"), META, event_id=ids)
               for _ in range(3)]
    assert len(results[0].events) == 1 and results[1].events == [] and results[2].events == []
    state, _, history = await runner.load_state(ref)
    assert state.balance == 50 and len(history) == 2


async def test_the_hash_chain_detects_an_altered_body_and_a_missing_event(nc, store, topology):
    ref = case()
    v = CaseVersion.new()
    for data in (AccountOpened(owner="a"), Credited(amount=10), Credited(amount=20),
                 Debited(amount=5)):
        v = (await store.append("ledger", ref, [ev(data)], v)).version
    assert (await store.verify("ledger", ref)).intact
    original = await store.read_subject(topology.stream("ledger"), topology.subject("ledger", ref))
    await nc.jetstream().add_stream(stream_profile(topology, "scratch"))

    async def copy(into: CaseRef, change) -> None:
        """Publish a copy of the case into the scratch stream, changed by `change`."""
        for i, m in enumerate(original):
            body = change(i, m.data)
            if body is None:
                continue
            headers = {k: v for k, v in m.headers.items() if k.startswith(("ce-", "content"))}
            await nc.jetstream().publish(topology.subject("scratch", into), body, headers=headers)

    altered = case()
    await copy(altered, lambda i, body: body.replace(b"20", b"90") if i == 2 else body)
    check = await store.verify("scratch", altered)
    assert not check.intact and check.reason == "altered" and check.broken_at == 2

    missing = case()
    await copy(missing, lambda i, body: None if i == 1 else body)
    check = await store.verify("scratch", missing)
    assert not check.intact and check.reason == "missing" and check.broken_at == 1
    assert check.event_id == original[2].headers["ce-id"]


async def test_several_cases_change_together_or_not_at_all(store):
    from shared.store import CaseWrite
    a, b = case(), case()
    va = (await store.append("ledger", a, [ev(AccountOpened(owner="a"))], CaseVersion.new())).version
    transfer = [CaseWrite(a, [ev(Debited(amount=0))], va),
                CaseWrite(b, [ev(AccountOpened(owner="b")), ev(Credited(amount=1))],
                          CaseVersion.new())]
    ra, rb = await store.append_together("ledger", transfer)
    assert ra.version.sequence == 2 and rb.version.sequence == 2
    assert rb.events[0].stream_seq == ra.events[0].stream_seq + 1
    # a stale expectation on the second case refuses the whole decision
    with pytest.raises(ConcurrencyError):
        await store.append_together("ledger", [
            CaseWrite(a, [ev(Credited(amount=5))], ra.version),
            CaseWrite(b, [ev(Credited(amount=5))], CaseVersion.new())])
    assert [len((await store.load("ledger", r)).events) for r in (a, b)] == [2, 2]
    # a repeat of a stored decision is recognised, case by case
    again = await store.append_together("ledger", transfer)
    assert all(r.duplicate for r in again)
    assert [e.id for e in again[1].events] == [e.id for e in rb.events]


async def test_the_last_event_of_a_case_is_read_alone(store):
    ref = case()
    assert (await store.last("ledger", ref)).events == []
    v = CaseVersion.new()
    for amount in range(1, 40):
        data = AccountOpened(owner="a") if amount == 1 else Credited(amount=amount)
        v = (await store.append("ledger", ref, [ev(data)], v)).version
    last = await store.last("ledger", ref)
    assert last.messages_read == 1 and last.events[0].data == Credited(amount=39)
    assert last.version == v


async def test_events_read_by_sequence_come_in_order_and_a_missing_one_is_skipped(store):
    ref, other = case(), case()
    v, w = CaseVersion.new(), CaseVersion.new()
    for amount in range(1, 30):  # two cases interleaved, so the sequences have gaps
        data = AccountOpened(owner="a") if amount == 1 else Credited(amount=amount)
        v = (await store.append("ledger", ref, [ev(data)], v)).version
        w = (await store.append("ledger", other, [ev(data)], w)).version
    stream, subject = store.topology.stream("ledger"), store.topology.subject("ledger", ref)
    seqs = [int(m.headers["Nats-Sequence"]) for m in await store.read_subject(stream, subject)]
    assert len(seqs) == 29
    beyond = seqs[-1] + 1_000  # the streams deny deletes: a sequence not stored yet

    read = await store.read_seqs(stream, subject, [*seqs[:7], beyond, *seqs[7:]])
    assert [int(m.headers["Nats-Sequence"]) for m in read] == seqs
    assert [m.data for m in read] == [m.data for m in await store.read_subject(stream, subject)]
    assert await store.read_seqs(stream, subject, []) == []
    with pytest.raises(KernelError, match="not " + subject.replace(".", r"\.")):
        await store.read_seqs(stream, subject, [seqs[0], seqs[0] + 1])  # +1: the other case


async def test_two_writers_of_the_same_facts_at_once_store_them_once(store):
    """Deterministic ids (a sweep in two replicas): both batches carry the same event ids;
    one is stored, the other is recognised as already stored, neither fails."""
    ref = case()
    opened = (await store.append("ledger", ref, [ev(AccountOpened(owner="a"))],
                                 CaseVersion.new())).version
    facts = [ev(Credited(amount=i), id=derived_id(ref.client_id, "fact", i)) for i in range(20)]
    results = await asyncio.gather(*(store.append("ledger", ref, facts, opened) for _ in range(4)))
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    loaded = await store.load("ledger", ref)
    assert [e.id for e in loaded.events[1:]] == [f.id for f in facts]


async def test_a_decision_overlapping_facts_another_writer_stored_is_decided_again(store):
    """A sweep stores two derived facts while a report's decision carries the same two and
    one of its own: the report's batch is refused whole, as a conflict to decide again."""
    ref = case()
    opened = (await store.append("ledger", ref, [ev(AccountOpened(owner="a"))],
                                 CaseVersion.new())).version
    facts = [ev(Credited(amount=i), id=derived_id(ref.client_id, "fact", i)) for i in range(2)]
    await store.append("ledger", ref, facts, opened)
    with pytest.raises(ConcurrencyError):
        await store.append("ledger", ref, [*facts, ev(Debited(amount=1))], opened)
    assert len((await store.load("ledger", ref)).events) == 3
