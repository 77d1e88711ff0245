"""A tiny context used to prove the kernel: accounts opened, credited and debited.

Its projection fails on purpose for a credit whose note is "poison", which lets the tests
make a poison event without faking the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from shared.errors import DomainError
from shared.events import Event, EventRegistry
from shared.projector import Projection, Writer

LEDGER = EventRegistry("ledger")
CONTEXT = "ledger"


@LEDGER.event()
class AccountOpened(Event):
    owner: str


@LEDGER.event(version=2)
class Credited(Event):
    amount: int
    note: str = ""


@LEDGER.upcaster("Credited", from_version=1)
def _credited_v1(data: dict) -> dict:
    # v1 stored the amount as a string in "value"
    return {"amount": int(data["value"]), "note": data.get("memo", "")}


@LEDGER.event()
class Debited(Event):
    amount: int


class Account(BaseModel):
    model_config = ConfigDict(frozen=True)
    opened: bool = False
    balance: int = 0


@dataclass(frozen=True)
class Open:
    owner: str


@dataclass(frozen=True)
class Credit:
    amount: int
    note: str = ""


@dataclass(frozen=True)
class Debit:
    amount: int


def decide(cmd, state: Account) -> list[Event]:
    match cmd:
        case Open(owner):
            if state.opened:
                raise DomainError("the account is already open", rule="already_open")
            return [AccountOpened(owner=owner)]
        case Credit(amount, note):
            if not state.opened:
                raise DomainError("open the account first", rule="not_open")
            return [Credited(amount=amount, note=note)]
        case Debit(amount):
            if amount > state.balance:
                raise DomainError("insufficient balance", field="amount", rule="balance")
            return [Debited(amount=amount)]
    raise TypeError(cmd)


def evolve(state: Account, event: Event) -> Account:
    match event:
        case AccountOpened():
            return state.model_copy(update={"opened": True})
        case Credited(amount=a):
            return state.model_copy(update={"balance": state.balance + a})
        case Debited(amount=a):
            return state.model_copy(update={"balance": state.balance - a})
    return state


class Balances(Projection):
    name = "balances"
    version = 1
    contexts = (CONTEXT,)
    tables = {"balances": """CREATE TABLE {table} (
        client_id text PRIMARY KEY, owner text, balance bigint NOT NULL DEFAULT 0,
        events integer NOT NULL DEFAULT 0, last_seq bigint NOT NULL DEFAULT 0)"""}

    def handlers(self):
        return {AccountOpened: self.opened, Credited: self.credited, Debited: self.debited}

    async def opened(self, w: Writer, e) -> None:
        w.execute("INSERT INTO {balances} (client_id, owner, events, last_seq) "
                  "VALUES ($1, $2, 1, $3)", e.client_id, e.data.owner, e.stream_seq)

    async def credited(self, w: Writer, e) -> None:
        if e.data.note == "poison":
            raise ValueError("this credit cannot be projected")
        w.execute("UPDATE {balances} SET balance = balance + $2, events = events + 1, "
                  "last_seq = $3 WHERE client_id = $1", e.client_id, e.data.amount, e.stream_seq)

    async def debited(self, w: Writer, e) -> None:
        w.execute("UPDATE {balances} SET balance = balance - $2, events = events + 1, "
                  "last_seq = $3 WHERE client_id = $1", e.client_id, e.data.amount, e.stream_seq)
