"""The decider shape on the test ledger: given events, when a command, then events or a refusal."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from shared.decider import Decider
from shared.errors import DomainError
from shared.events import Event
from tests.support.ledger import (
    Account, AccountOpened, Credit, Credited, Debit, Debited, Open, decide, evolve,
)

ledger = Decider(Account(), decide, evolve)


class Scenario:
    def __init__(self, history: Sequence[Event]) -> None:
        self.state = ledger.fold(history)

    def when(self, command: object) -> list[Event] | DomainError:
        try:
            return list(ledger.decide(command, self.state))
        except DomainError as exc:
            return exc


def given(*events: Event) -> Scenario:
    return Scenario(events)


def then_refused(outcome: object, *, rule: str, field: str | None = None) -> DomainError:
    assert isinstance(outcome, DomainError), f"expected a refusal, got {outcome!r}"
    assert outcome.rule == rule and outcome.field == field
    assert outcome.status == 422 and outcome.message
    return outcome


# ------------------------------------------------------------------------------ fold

def test_fold_of_nothing_is_the_initial_state():
    assert ledger.fold([]) == Account()


def test_fold_applies_events_in_order():
    state = ledger.fold([AccountOpened(owner="a"), Credited(amount=10), Debited(amount=3),
                         Credited(amount=5)])
    assert state == Account(opened=True, balance=12)


def test_fold_continues_from_a_given_state():
    part = ledger.fold([AccountOpened(owner="a"), Credited(amount=10)])
    assert ledger.fold([Debited(amount=4)], part) == Account(opened=True, balance=6)
    assert part == Account(opened=True, balance=10)  # evolve made new states


def test_fold_leaves_the_initial_state_untouched():
    ledger.fold([AccountOpened(owner="a"), Credited(amount=10)])
    assert ledger.initial_state == Account()


def test_evolve_ignores_an_event_it_does_not_know():
    class Unrelated(Event):
        pass

    state = Account(opened=True, balance=4)
    assert ledger.evolve(state, Unrelated()) == state


# ------------------------------------------------------------------------------ decide

def test_opening_a_new_account():
    assert given().when(Open("siti")) == [AccountOpened(owner="siti")]


def test_an_account_opens_only_once():
    then_refused(given(AccountOpened(owner="siti")).when(Open("siti")), rule="already_open")


def test_crediting_an_open_account():
    assert given(AccountOpened(owner="a")).when(Credit(10, "gaji")) == [
        Credited(amount=10, note="gaji")]


def test_crediting_needs_an_open_account():
    then_refused(given().when(Credit(10)), rule="not_open")


def test_debiting_within_the_balance():
    outcome = given(AccountOpened(owner="a"), Credited(amount=10)).when(Debit(10))
    assert outcome == [Debited(amount=10)]


def test_debiting_more_than_the_balance_is_refused_naming_the_field():
    refusal = then_refused(given(AccountOpened(owner="a"), Credited(amount=10)).when(Debit(20)),
                           rule="balance", field="amount")
    assert "balance" in refusal.message


def test_the_balance_counts_every_event_in_the_history():
    history = (AccountOpened(owner="a"), Credited(amount=10), Debited(amount=8))
    then_refused(given(*history).when(Debit(3)), rule="balance", field="amount")
    assert given(*history, Credited(amount=1)).when(Debit(3)) == [Debited(amount=3)]


def test_an_unknown_command_is_a_programming_error_not_a_refusal():
    with pytest.raises(TypeError):
        given().when("close the account")
