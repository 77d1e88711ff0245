"""Deciders and the command runner: load -> decide -> append, re-deciding on conflict.

A decider is three pure things: an initial state, `decide(command, state) -> events` and
`evolve(state, event) -> state`. The runner is the only place that does IO around them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import structlog

from .errors import ConcurrencyError, DomainConflict, DomainError
from .events import Event, Metadata, NewEvent, RecordedEvent
from .ids import derived_id, new_id
from .metrics import KernelMetrics
from .store import AppendResult, CaseVersion, EventStore
from .streams import CaseRef

__all__ = ["Decider", "CommandRunner", "Decision", "react"]

C = TypeVar("C")
S = TypeVar("S")
log = structlog.get_logger("bapas.decider")


@dataclass(frozen=True, slots=True)
class Decider(Generic[C, S]):
    initial_state: S
    decide: Callable[[C, S], Sequence[Event]]
    evolve: Callable[[S, Event], S]

    def fold(self, events: Sequence[Event], state: S | None = None) -> S:
        s = self.initial_state if state is None else state
        for e in events:
            s = self.evolve(s, e)
        return s


@dataclass(frozen=True, slots=True)
class Decision(Generic[S]):
    """What a command did: the events now stored (possibly none) and the case after them."""

    events: list[RecordedEvent]
    state: S
    version: CaseVersion
    duplicate: bool = False


class CommandRunner(Generic[C, S]):
    """Runs commands against one context's decider, with bounded retries on conflict."""

    def __init__(self, store: EventStore, context: str, decider: Decider[C, S], *,
                 max_attempts: int = 5, metrics: KernelMetrics | None = None) -> None:
        self.store = store
        self.context = context
        self.decider = decider
        self.max_attempts = max_attempts
        self._metrics = metrics or KernelMetrics()

    async def load_state(self, ref: CaseRef) -> tuple[S, CaseVersion, list[RecordedEvent]]:
        loaded = await self.store.load(self.context, ref)
        return self.decider.fold([e.data for e in loaded.events]), loaded.version, loaded.events

    async def run(self, ref: CaseRef, command: C, meta: Metadata, *,
                  at: datetime | None = None,
                  event_id: Callable[[int], str] | None = None,
                  identify: Callable[[Event], str | None] | None = None,
                  guard: Callable[[S], None] | None = None,
                  presume_new: bool = False) -> Decision[S]:
        """Decide `command` on the case and append the outcome.

        Event ids are fixed on the first attempt and reused by every retry, so that an append
        whose answer was lost is recognised as ours. `event_id(i)` gives deterministic ids
        (reactions); `identify(event)` names facts that must exist once whoever records them
        (a missed report is one fact per due date, whether a sweep or a visit finds it).
        Events whose ids the case already holds are not appended again. `guard(state)` runs
        on the loaded case before deciding (may the caller act on it?), so that checking and
        deciding share one read.

        `presume_new` decides the first attempt on an empty case without reading it (a case
        that a registration has just begun is empty nearly always): the append expects the
        case to hold nothing, so if it holds anything the append is refused and the command
        is decided again on the case as loaded.

        With the caller's `Idempotency-Key` (`meta.idempotency_key`) the ids derive from it: a
        repeat of a command the case already holds (its answer was lost, the caller retried)
        is not decided again (an advance repeated would advance twice) but answered with
        the events the first one stored.
        """
        ids: list[str] = []
        name = type(command).__name__
        key = meta.idempotency_key
        if event_id is None and key is not None:
            def event_id(i: int) -> str:
                return derived_id("command", self.context, ref.office, ref.client_id, key, i)
        # attempt 0, when the case is presumed new, reads nothing; the others read the case
        for attempt in range(0 if presume_new else 1, self.max_attempts + 1):
            presumed = attempt == 0
            if presumed:
                state, version, history = self.decider.fold([]), CaseVersion.new(), []
            else:
                state, version, history = await self.load_state(ref)
            try:
                if guard is not None:
                    guard(state)
                if key is not None and event_id is not None:
                    earlier = _stored_by(event_id, history)
                    if earlier:
                        self._metrics.decisions.labels(name, "repeated").inc()
                        return Decision(earlier, state, version, duplicate=True)
                produced = list(self.decider.decide(command, state))
            except DomainError:
                if presumed:
                    continue  # refused on an empty case: the case as it is decides
                raise
            if presumed and not produced:
                continue  # nothing to do on an empty case: read it
            while len(ids) < len(produced):
                ids.append(event_id(len(ids)) if event_id else new_id())
            chosen = [(identify(ev) if identify else None) or ids[i]
                      for i, ev in enumerate(produced)]
            held = {e.id for e in history}
            when = at or datetime.now(UTC)
            new = [NewEvent(chosen[i], ev, when, meta)
                   for i, ev in enumerate(produced) if chosen[i] not in held]
            if not new:
                self._metrics.decisions.labels(name, "unchanged").inc()
                return Decision([], state, version, duplicate=bool(produced))
            try:
                result: AppendResult = await self.store.append(self.context, ref, new, version)
            except ConcurrencyError:
                (log.debug if presumed else log.info)(
                    "decision conflicted; deciding again", command=name, attempt=attempt,
                    client_id=ref.client_id)
                continue
            for ev in result.events:
                state = self.decider.evolve(state, ev.data)
            self._metrics.decisions.labels(name, "appended").inc()
            return Decision(result.events, state, result.version, result.duplicate)
        self._metrics.decisions.labels(name, "conflict").inc()
        raise DomainConflict(
            f"the case changed {self.max_attempts} times while this command was being decided; "
            "try again", rule="concurrent_change")


def _stored_by(event_id: Callable[[int], str], history: list[RecordedEvent]
               ) -> list[RecordedEvent]:
    """The events a command with these ids already stored on the case, in order."""
    by_id = {e.id: e for e in history}
    out: list[RecordedEvent] = []
    while (found := by_id.get(event_id(len(out)))) is not None:
        out.append(found)
    return out


async def react(runner: CommandRunner, reaction: str, cause: RecordedEvent,
                command: object, *, presume_new: bool = False) -> Decision | None:
    """Run `command` on the case `cause` is about, as the reaction named `reaction`.

    The events get ids derived from the cause and the reaction, so a reaction that runs
    again appends nothing; they carry the cause as causation and its correlation. A case
    that refuses (closed, say) is logged and the reaction is done: retrying would not
    change its answer.
    """
    try:
        return await runner.run(
            CaseRef(cause.office, cause.client_id), command,
            Metadata(f"system:{reaction}", cause.correlation_id or cause.id, cause.id),
            event_id=lambda i: derived_id(cause.id, reaction, i), presume_new=presume_new)
    except DomainError as refused:
        log.info("reaction refused by the case", reaction=reaction, event=cause.type,
                 client_id=cause.client_id, reason=refused.message)
        return None
