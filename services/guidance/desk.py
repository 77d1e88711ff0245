"""Guidance's command handlers: one case through the runner, a group session across many."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from shared.decider import CommandRunner
from shared.errors import ConcurrencyError, DomainConflict, DomainError
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.ids import derived_id
from shared.metrics import KernelMetrics
from shared.store import CaseWrite, EventStore, LoadedCase
from shared.streams import CaseRef

from . import domain as d
from .events import CONTEXT


class GuidanceDesk:
    def __init__(self, store: EventStore, metrics: KernelMetrics | None = None,
                 max_attempts: int = 5) -> None:
        self.store = store
        self.runner = CommandRunner(store, CONTEXT, d.DECIDER, max_attempts=max_attempts,
                                    metrics=metrics)
        self.max_attempts = max_attempts

    async def load(self, ref: CaseRef) -> tuple[d.Case, LoadedCase]:
        loaded = await self.store.load(CONTEXT, ref)
        return d.DECIDER.fold([e.data for e in loaded.events]), loaded

    async def hold_group_session(self, office: str, client_ids: list[str], cmd: d.HoldSession,
                                 meta: Metadata, at: datetime,
                                 may_act: Callable[[d.Case], bool]) -> list[RecordedEvent]:
        """One session that lands in every participant's case, with a shared group id, or in
        none: a case that cannot take part refuses the whole session, naming it."""
        for _ in range(self.max_attempts):
            writes, faults = [], []
            for client_id in client_ids:
                ref = CaseRef(office, client_id)
                state, loaded = await self.load(ref)
                if state.status is d.Status.NEW or not may_act(state):
                    faults.append({"client_id": client_id, "reason": "no such case in this "
                                   "office"})
                    continue
                if state.status is d.Status.CLOSED:
                    faults.append({"client_id": client_id, "reason": "guidance is closed"})
                    continue
                try:
                    events = d.decide(replace(cmd, session_id=derived_id(
                        cmd.group_id, client_id, "session")), state)
                except DomainError as refused:
                    faults.append({"client_id": client_id, "reason": refused.message})
                    continue
                writes.append(CaseWrite(ref, [NewEvent(
                    derived_id(cmd.group_id, client_id, i), e, at, meta)
                    for i, e in enumerate(events)], loaded.version))
            if faults:
                raise DomainError(
                    "the group session was not recorded: "
                    + "; ".join(f"{f['client_id']}: {f['reason']}" for f in faults),
                    field="client_ids", rule="group_member_refused", extra={"clients": faults})
            try:
                results = await self.store.append_together(CONTEXT, writes)
            except ConcurrencyError:
                continue
            return [e for r in results for e in r.events]
        raise DomainConflict("the cases changed while the session was recorded; try again",
                             rule="concurrent_change")
