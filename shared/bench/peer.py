"""The registration workload written with the `eventsourcing` library, for `bapas bench api
--peer`: what a careful Python team would build with that library on the same PostgreSQL.

The same rules as ours hold, and the database enforces them, not the benchmark:

- one aggregate per client (`ClientFile`), created with the registration;
- a unique NIK: a `NikClaim` aggregate whose id is derived from the NIK, created in the same
  transaction as the client. A second claim of the same NIK is a second version 1 of the same
  aggregate, which the events table's primary key refuses (IntegrityError), in this process
  or any other;
- a gap-free register number per office: a `RegisterBook` aggregate per office issues the
  next number; the book, the client and the claim are saved in one transaction, so a number
  exists only if its registration does, and two writers that read the same book version
  conflict on its next version (optimistic concurrency): the loser reloads and decides again.

Like ours (issue 14: the registrar's group commit), registrations of one office that wait
for the book together are decided together and saved in one transaction, sharing one commit
(one fsync): with 32 callers and one book, a transaction per registration would serialise on
the book's version and leave every other caller retrying. The library's aggregate cache
(fast-forwarded from the database at each read) keeps a long book cheap to load, as
snapshots would after a restart.

The callers call `PeerRegistry.register` from threads: the library is synchronous (psycopg
3 with a connection pool), and NIK checks before the group runs happen in the callers, in
parallel, as a request handler would do them.
"""

from __future__ import annotations

import queue
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

__all__ = ["PeerRegistry", "PeerRefused", "peer_env"]

NAMESPACE = uuid.UUID("6f1d1c52-3f6b-4f8e-9a55-2c5a3e0b7d41")
MAX_GROUP = 64       # as ours: registrations decided together at most
MAX_ATTEMPTS = 5     # a conflict on the book re-runs the whole group's decision


class PeerRefused(Exception):
    """A registration the rules refuse (the NIK is held by another client)."""


class RegisterBook(Aggregate):
    """An office's register of clients: numbers 1, 2, 3... with no gap."""

    def __init__(self, office: str) -> None:
        self.office = office
        self.last_number = 0

    @staticmethod
    def create_id(office: str) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"book:{office}")

    class NumberIssued(Aggregate.Event):
        number: int
        client_id: str

        def apply(self, aggregate: RegisterBook) -> None:
            aggregate.last_number = self.number

    def issue(self, client_id: str) -> int:
        self.trigger_event(self.NumberIssued, number=self.last_number + 1, client_id=client_id)
        return self.last_number


class NikClaim(Aggregate):
    """A NIK held by one client: exists once per NIK, by its derived id."""

    def __init__(self, nik: str, client_id: str) -> None:
        self.nik = nik
        self.client_id = client_id

    @staticmethod
    def create_id(nik: str, client_id: str) -> uuid.UUID:
        return claim_id(nik)


def claim_id(nik: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"nik:{nik}")


class ClientFile(Aggregate):
    """A registered client: the registration as the office made it."""

    def __init__(self, office: str, register_number: str, registration: dict[str, Any]) -> None:
        self.office = office
        self.register_number = register_number
        self.registration = registration


@dataclass(eq=False)
class _Ask:
    office: str
    body: dict[str, Any]
    answer: Future


class PeerRegistry(Application):
    """Registrations through one register book per office, decided in groups."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env=env)
        self._queues: dict[str, queue.SimpleQueue[_Ask | None]] = {}
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the callers' side

    def register(self, office: str, body: dict[str, Any]) -> tuple[str, str]:
        """(client id, register number); PeerRefused when the NIK is taken."""
        nik = body["person"]["nik"]
        if claim_id(nik) in self.repository:  # the common refusal, found without the book
            raise PeerRefused(f"NIK {nik} is held by another client")
        ask = _Ask(office, body, Future())
        self._queue(office).put(ask)
        return ask.answer.result()

    def close(self) -> None:
        for q in self._queues.values():
            q.put(None)
        for worker in self._workers:
            worker.join(10)
        super().close()

    def _queue(self, office: str) -> queue.SimpleQueue[_Ask | None]:
        with self._lock:
            q = self._queues.get(office)
            if q is None:
                q = self._queues[office] = queue.SimpleQueue()
                worker = threading.Thread(target=self._serve, args=(office, q), daemon=True,
                                          name=f"peer-book-{office}")
                self._workers.append(worker)
                worker.start()
            return q

    # --------------------------------------------------------------- the book's own thread

    def _serve(self, office: str, q: queue.SimpleQueue[_Ask | None]) -> None:
        while True:
            first = q.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    ask = q.get_nowait()
                except queue.Empty:
                    break
                if ask is None:
                    q.put(None)
                    break
                group.append(ask)
            try:
                self._register_group(office, group)
            except Exception as exc:  # noqa: BLE001 - every caller hears what went wrong
                for ask in group:
                    if not ask.answer.done():
                        ask.answer.set_exception(exc)

    def _book(self, office: str) -> RegisterBook:
        try:
            return self.repository.get(RegisterBook.create_id(office))
        except AggregateNotFoundError:
            return RegisterBook(office=office)

    def _register_group(self, office: str, group: list[_Ask]) -> None:
        recheck = False
        for attempt in range(MAX_ATTEMPTS):
            book = self._book(office)
            files, claims, taken, accepted = [], [], set(), []
            for ask in group:
                nik = ask.body["person"]["nik"]
                # after a conflict the NIKs are read again: another writer may hold one now
                if nik in taken or (recheck and claim_id(nik) in self.repository):
                    ask.answer.set_exception(PeerRefused(f"NIK {nik} is held by another client"))
                    continue
                taken.add(nik)
                client_id = str(uuid.uuid4())
                number = book.issue(client_id)
                register_number = f"{office.upper()}-{number:06d}"
                files.append(ClientFile(office=office, register_number=register_number,
                                        registration=ask.body))
                claims.append(NikClaim(nik=nik, client_id=client_id))
                accepted.append((ask, str(files[-1].id), register_number))
            group = [a for a, _, _ in accepted]
            if not accepted:
                return
            try:
                self.save(book, *files, *claims)
            except IntegrityError:
                recheck = True  # the book moved on, or a NIK was claimed meanwhile
                continue
            for ask, client_id, register_number in accepted:
                ask.answer.set_result((client_id, register_number))
            return
        for ask in group:
            ask.answer.set_exception(RuntimeError(
                f"the register book stayed contended for {MAX_ATTEMPTS} attempts"))


def peer_env(dsn: str, schema: str, pool_size: int) -> dict[str, str]:
    """The library's settings for our PostgreSQL, in a schema of its own."""
    parts = urlsplit(dsn)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": parts.username or "postgres",
        "POSTGRES_PASSWORD": parts.password or "",
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "4",
        "POSTGRES_MAX_WAITING": "0",
        "CREATE_TABLE": "y",
        # the book is read at every group: kept in memory and fast-forwarded from the table
        "AGGREGATE_CACHE_MAXSIZE": "1000",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
    }
