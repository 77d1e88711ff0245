"""Registration's command handlers: load -> decide -> append, with bounded retries.

A registration changes three cases at once (the client, the office's register book, the
NIK index), so it has a handler of its own; the other commands change one client.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import nats.js.errors
import structlog

from shared.decider import CommandRunner, Decision
from shared.errors import ConcurrencyError, DomainConflict, DomainError, MigrationNeeded
from shared.events import Event, Metadata, NewEvent
from shared.ids import derived_id
from shared.metrics import KernelMetrics
from shared.privacy import IndexKey
from shared.store import AppendResult, CaseVersion, CaseWrite, EventStore, LoadedCase
from shared.streams import CaseRef

from .domain import (DECIDER, BookState, Client, ClientRegistered, CloseRegistration, NikReleased,
                     NikState, RegisterClient, TransferClient, book_key, decide, evolve_book,
                     evolve_nik, register)
from .events import CONTEXT, UNKEYED_NIK_CASE, nik_case


@dataclass(frozen=True)
class Registered:
    event: ClientRegistered
    version: CaseVersion
    duplicate: bool


def fold_client(loaded: LoadedCase) -> Client:
    return DECIDER.fold([e.data for e in loaded.events])


log = structlog.get_logger("bapas.registration")


@dataclass(eq=False)
class _Ask:
    """One registration waiting for its office's register book."""

    cmd: RegisterClient
    meta: Metadata
    ref: CaseRef
    nik_ref: CaseRef
    answer: asyncio.Future
    fresh: bool  # the client id was just made for this request: no case can hold it yet


@dataclass(frozen=True)
class _Appended:
    """An ask accepted in this group: its client's write is `writes[index]`."""

    index: int
    again: bool = False  # a second ask for the same client id: it answers as a repeat


@dataclass
class _Group:
    """What one round of decisions made of the registrations that waited together: the
    writes, and per ask what it answers (stored before, appended now, or refused)."""

    writes: list[CaseWrite]
    outcomes: list[Registered | _Appended | DomainError]


# The most registrations decided together: 3 messages each, well below the server's
# atomic-batch ceiling of 1,000 messages.
MAX_GROUP = 64


class Registrar:
    def __init__(self, store: EventStore, index: IndexKey, metrics: KernelMetrics | None = None,
                 max_attempts: int = 5) -> None:
        self.store = store
        self.index = index  # names the NIK index cases (events.nik_case)
        self.max_attempts = max_attempts
        # Registrations of one office queue for its register book and are decided and
        # appended together (group commit): whatever waits when the book comes free goes
        # in one atomic batch, so they share one fsync. The expectation on the book still
        # serialises them against other replicas.
        self._waiting: dict[CaseRef, list[_Ask]] = {}
        self._turns: dict[CaseRef, asyncio.Task] = {}
        self.changes = CommandRunner(store, CONTEXT, DECIDER, max_attempts=max_attempts,
                                     metrics=metrics)

    async def load(self, ref: CaseRef) -> tuple[Client, LoadedCase]:
        loaded = await self.store.load(CONTEXT, ref)
        return fold_client(loaded), loaded

    async def register(self, cmd: RegisterClient, meta: Metadata, *,
                       fresh: bool = False) -> Registered:
        """Register a client; a repeat of the same client id answers what is stored.

        Event ids derive from the client id, so a retry after a lost answer (or the same
        Idempotency-Key) appends nothing new. Numbers are given in arrival order, without
        gaps: a refused registration takes none. `fresh`: the client id was made just now
        (a new UUIDv7), so its case is not read first; the append still expects it empty.
        """
        book_ref = CaseRef(cmd.office, book_key(cmd.registered_at))
        ask = _Ask(cmd, meta, CaseRef(cmd.office, cmd.client_id),
                   CaseRef(cmd.office, nik_case(cmd.nik, self.index)),
                   asyncio.get_running_loop().create_future(), fresh)
        self._waiting.setdefault(book_ref, []).append(ask)
        if book_ref not in self._turns:
            self._turns[book_ref] = asyncio.create_task(self._serve(book_ref))
        # the caller may give up (a dropped connection); the registration still goes ahead
        return await asyncio.shield(ask.answer)

    async def _serve(self, book_ref: CaseRef) -> None:
        """Decide and append what waits for the book, group after group, until none waits."""
        try:
            while queue := self._waiting.get(book_ref):
                asks, self._waiting[book_ref] = queue[:MAX_GROUP], queue[MAX_GROUP:]
                started = time.perf_counter()
                try:
                    answers = await self._register_group(book_ref, asks)
                except BaseException as exc:  # noqa: BLE001 - every waiter hears of it
                    answers = [exc] * len(asks)
                    if isinstance(exc, asyncio.CancelledError):
                        for ask in asks + self._waiting.pop(book_ref, []):
                            _answer(ask, exc)
                        raise
                for ask, answer in zip(asks, answers, strict=True):
                    _answer(ask, answer)
                log.debug("registrations decided together", book=book_ref.client_id,
                          registrations=len(asks), waiting=len(self._waiting.get(book_ref, ())),
                          ms=round((time.perf_counter() - started) * 1000, 1))
        finally:
            self._turns.pop(book_ref, None)
            if not self._waiting.get(book_ref):
                self._waiting.pop(book_ref, None)

    async def _client(self, ask: _Ask) -> tuple[Client, LoadedCase]:
        if ask.fresh:
            return Client(), LoadedCase(ask.ref, CONTEXT, [], CaseVersion.new())
        return await self.load(ask.ref)

    async def _register_group(self, book_ref: CaseRef,
                              asks: list[_Ask]) -> list[Registered | BaseException]:
        for attempt in range(self.max_attempts):
            niks = list(dict.fromkeys(a.nik_ref for a in asks))
            loaded = await asyncio.gather(self.store.last(CONTEXT, book_ref),
                                          *(self.store.last(CONTEXT, n) for n in niks),
                                          *(self._client(a) for a in asks))
            book, nik_cases, clients = loaded[0], loaded[1:1 + len(niks)], loaded[1 + len(niks):]
            group = _decide(asks, book, dict(zip(niks, nik_cases, strict=True)), clients)
            try:
                results = await self.store.append_together(CONTEXT, group.writes)
            except ConcurrencyError:  # another replica took a number first: decide again
                await asyncio.sleep(random.uniform(0, 0.02 * 2 ** attempt))
                continue
            return [_registered(o, results) for o in group.outcomes]
        return [DomainConflict("the register book was busy; try again", rule="concurrent_change")
                for _ in asks]

    async def change(self, ref: CaseRef, cmd, meta: Metadata, at: datetime,
                     guard: Callable[[Client], None] | None = None) -> Decision:
        return await self.changes.run(ref, cmd, meta, at=at, guard=guard)

    async def transfer(self, ref: CaseRef, cmd: TransferClient, meta: Metadata) -> Decision:
        """Transfer the client out; the NIK index of this office lets the person go."""
        return await self._release(ref, cmd, meta, cmd.new_client_id, "TRANSFERRED", cmd.at)

    async def close(self, ref: CaseRef, cmd: CloseRegistration, meta: Metadata,
                    key: str, at: datetime) -> Decision:
        """Guidance ended: the record closes and the NIK index lets the person go."""
        return await self._release(ref, cmd, meta, key, cmd.reason, at)

    async def _release(self, ref: CaseRef, cmd: TransferClient | CloseRegistration,
                       meta: Metadata, key: str, reason: str, at: datetime) -> Decision:
        """A change that ends the registration here, and the NIK's release, together."""
        for _ in range(self.max_attempts):
            client, loaded = await self.load(ref)
            events = decide(cmd, client)
            if not events:
                return Decision([], client, loaded.version, duplicate=True)
            registered = client.registered
            assert registered is not None
            nik_ref = CaseRef(ref.office, nik_case(registered.person.nik, self.index))
            nik = await self.store.last(CONTEXT, nik_ref)
            holds = _fold(NikState(), evolve_nik, nik).holder == ref.client_id
            release = [NikReleased(client_id=ref.client_id, reason=reason)] if holds else []
            try:
                results = await self.store.append_together(CONTEXT, [
                    CaseWrite(ref, _new(events, key, "release", at, meta), loaded.version),
                    CaseWrite(nik_ref, _new(release, key, "release-nik", at, meta),
                              nik.version)])
            except ConcurrencyError:
                continue
            state = DECIDER.fold([e.data for e in results[0].events], client)
            return Decision(results[0].events, state, results[0].version, results[0].duplicate)
        raise DomainConflict("the case changed while this was decided; try again",
                             rule="concurrent_change")


async def refuse_unkeyed_nik_index(store: EventStore) -> None:
    """Refuse to serve while the stream holds NIK index cases named by an earlier version:
    registrations would not see their claims, and the same NIK could be registered twice."""
    topology = store.topology
    try:
        subjects = await store.subjects(topology.stream(CONTEXT), topology.context_filter(
            CONTEXT, topology.office or "*"))
    except nats.js.errors.NotFoundError:
        return
    old = [s for s in subjects if UNKEYED_NIK_CASE.fullmatch(s.rsplit(".", 1)[-1])]
    if old:
        raise MigrationNeeded(
            f"the NIK index has {len(old)} cases named by an unkeyed digest of the NIK (an "
            "earlier version): stop the services and run `bapas privacy seal-existing "
            "--backup FILE`, which renames them, before registration starts")


def _decide(asks: list[_Ask], book_case: LoadedCase, nik_cases: dict[CaseRef, LoadedCase],
            clients: list[tuple[Client, LoadedCase]]) -> _Group:
    """Decide the waiting registrations one after another, in arrival order, each seeing
    the numbers and NIK claims of those before it; all the accepted ones in one append."""
    book = _fold(BookState(), evolve_book, book_case)
    niks = {ref: _fold(NikState(), evolve_nik, case) for ref, case in nik_cases.items()}
    writes: list[CaseWrite] = []
    outcomes: list[Registered | _Appended | DomainError] = []
    book_events: list[NewEvent] = []
    nik_events: dict[CaseRef, list[NewEvent]] = {}
    taken: dict[str, int] = {}  # client id -> index of its client write in this group
    for ask, (client, loaded) in zip(asks, clients, strict=True):
        cmd = ask.cmd
        if client.registered is not None:
            outcomes.append(Registered(client.registered, loaded.version, duplicate=True))
            continue
        if cmd.client_id in taken:  # the same registration twice at once: one is stored
            outcomes.append(_Appended(taken[cmd.client_id], again=True))
            continue
        try:
            outcome = register(cmd, client, book, niks[ask.nik_ref])
        except DomainError as refusal:  # this one is refused; it takes no number
            outcomes.append(refusal)
            continue
        for event in outcome.book:
            book = evolve_book(book, event)
        for event in outcome.nik:
            niks[ask.nik_ref] = evolve_nik(niks[ask.nik_ref], event)
        at = cmd.registered_at
        taken[cmd.client_id] = len(writes)
        outcomes.append(_Appended(len(writes)))
        writes.append(CaseWrite(ask.ref, _new(outcome.client, cmd.client_id, "client", at,
                                              ask.meta), loaded.version))
        book_events += _new(outcome.book, cmd.client_id, "book", at, ask.meta)
        nik_events.setdefault(ask.nik_ref, []).extend(
            _new(outcome.nik, cmd.client_id, "nik", at, ask.meta))
    if book_events:
        writes.append(CaseWrite(book_case.ref, book_events, book_case.version))
        writes += [CaseWrite(ref, events, nik_cases[ref].version)
                   for ref, events in nik_events.items() if events]
    return _Group(writes, outcomes)


def _registered(outcome: Registered | _Appended | DomainError,
                results: list[AppendResult]) -> Registered | DomainError:
    if not isinstance(outcome, _Appended):
        return outcome
    stored = results[outcome.index]
    return Registered(stored.events[0].data, stored.version,
                      duplicate=outcome.again or stored.duplicate)


def _answer(ask: _Ask, answer: Registered | BaseException) -> None:
    if ask.answer.done():
        return
    if isinstance(answer, BaseException):
        ask.answer.set_exception(answer)
    else:
        ask.answer.set_result(answer)


def _fold(initial, evolve_fn: Callable, loaded: LoadedCase):
    state = initial
    for e in loaded.events:
        state = evolve_fn(state, e.data)
    return state


def _new(events: list[Event], key: str, role: str, at: datetime, meta: Metadata) -> list[NewEvent]:
    return [NewEvent(derived_id(key, role, i), e, at, meta) for i, e in enumerate(events)]
