"""Registration's command handlers: load -> decide -> append, with bounded retries.

A registration changes three cases at once (the client, the office's register book, the
NIK index), so it has a handler of its own; the other commands change one client.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.decider import CommandRunner, Decision
from shared.errors import ConcurrencyError, DomainConflict
from shared.events import Event, Metadata, NewEvent
from shared.ids import derived_id
from shared.metrics import KernelMetrics
from shared.store import CaseVersion, CaseWrite, EventStore, LoadedCase
from shared.streams import CaseRef

from .domain import (DECIDER, BookState, Client, ClientRegistered, CloseRegistration, NikReleased,
                     NikState, RegisterClient, TransferClient, book_key, decide, evolve_book,
                     evolve_nik, nik_key, register)
from .events import CONTEXT


@dataclass(frozen=True)
class Registered:
    event: ClientRegistered
    version: CaseVersion
    duplicate: bool


def fold_client(loaded: LoadedCase) -> Client:
    return DECIDER.fold([e.data for e in loaded.events])


class Registrar:
    def __init__(self, store: EventStore, metrics: KernelMetrics | None = None,
                 max_attempts: int = 5) -> None:
        self.store = store
        self.max_attempts = max_attempts
        # Registrations of one office queue for its register book; taking turns inside the
        # process spares them conflicts, and the expectation still guards other replicas.
        self._books: dict[CaseRef, asyncio.Lock] = {}
        self.changes = CommandRunner(store, CONTEXT, DECIDER, max_attempts=max_attempts,
                                     metrics=metrics)

    async def load(self, ref: CaseRef) -> tuple[Client, LoadedCase]:
        loaded = await self.store.load(CONTEXT, ref)
        return fold_client(loaded), loaded

    async def register(self, cmd: RegisterClient, meta: Metadata) -> Registered:
        """Register a client; a repeat of the same client id answers what is stored.

        Event ids derive from the client id, so a retry after a lost answer (or the same
        Idempotency-Key) appends nothing new.
        """
        ref = CaseRef(cmd.office, cmd.client_id)
        book_ref = CaseRef(cmd.office, book_key(cmd.registered_at))
        nik_ref = CaseRef(cmd.office, nik_key(cmd.nik))
        async with self._books.setdefault(book_ref, asyncio.Lock()):
            return await self._register(cmd, meta, ref, book_ref, nik_ref)

    async def _register(self, cmd: RegisterClient, meta: Metadata, ref: CaseRef,
                        book_ref: CaseRef, nik_ref: CaseRef) -> Registered:
        for attempt in range(self.max_attempts):
            client, loaded = await self.load(ref)
            if client.registered is not None:
                return Registered(client.registered, loaded.version, duplicate=True)
            book = await self.store.last(CONTEXT, book_ref)
            nik = await self.store.last(CONTEXT, nik_ref)
            outcome = register(cmd, client,
                               _fold(BookState(), evolve_book, book),
                               _fold(NikState(), evolve_nik, nik))
            writes = [
                CaseWrite(ref, _new(outcome.client, cmd.client_id, "client", cmd.registered_at,
                                    meta), loaded.version),
                CaseWrite(book_ref, _new(outcome.book, cmd.client_id, "book",
                                         cmd.registered_at, meta), book.version),
                CaseWrite(nik_ref, _new(outcome.nik, cmd.client_id, "nik", cmd.registered_at,
                                        meta), nik.version),
            ]
            try:
                results = await self.store.append_together(CONTEXT, writes)
            except ConcurrencyError:  # another replica took the number first: decide again
                await asyncio.sleep(random.uniform(0, 0.02 * 2 ** attempt))
                continue
            stored = results[0]
            return Registered(stored.events[0].data, stored.version, duplicate=stored.duplicate)
        raise DomainConflict("the register book was busy; try again", rule="concurrent_change")

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
            nik_ref = CaseRef(ref.office, nik_key(registered.person.nik))
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


def _fold(initial, evolve_fn: Callable, loaded: LoadedCase):
    state = initial
    for e in loaded.events:
        state = evolve_fn(state, e.data)
    return state


def _new(events: list[Event], key: str, role: str, at: datetime, meta: Metadata) -> list[NewEvent]:
    return [NewEvent(derived_id(key, role, i), e, at, meta) for i, e in enumerate(events)]
