"""Finding the case a request is about, as the caller may see it (404 otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..decider import Decider, Decision
from ..logging import bind
from ..store import LoadedCase
from ..streams import CaseRef
from .auth import Principal, not_found

if TYPE_CHECKING:  # the runtime builds the web apps: no import back at run time
    from ..runtime import Kernel

__all__ = ["CaseFinder", "ChangedOut"]


class ChangedOut(BaseModel):
    """What a command did to a case: its version after it, and the events it stored (none
    when it changed nothing)."""

    client_id: str
    version: int
    events: list[str]

    @classmethod
    def of(cls, client_id: str, decision: Decision) -> ChangedOut:
        return cls(client_id=client_id, version=decision.version.sequence,
                   events=[e.type for e in decision.events])


class CaseFinder:
    """A context's cases for HTTP handlers. The case lives under the caller's office; an
    auditor reading another office's case is found through `office_of` (a read model).
    States answer `status`, `officer_id` and `is_child`, as the deciders' states do."""

    def __init__(self, kernel: Kernel, context: str, decider: Decider, office_table: str,
                 what: str = "case") -> None:
        self.kernel = kernel
        self.context = context
        self.decider = decider
        self.office_table = f'"{kernel.schema}".{office_table}'
        self.what = what

    def guard(self, principal: Principal, office: str) -> Callable[[Any], None]:
        def check(state: Any) -> None:
            if state.status == "NEW" or not principal.may_read_case(
                    office, state.officer_id, state.is_child):
                raise not_found(self.what)
        return check

    async def acting(self, principal: Principal, client_id: str
                     ) -> tuple[CaseRef, Callable[[Any], None]]:
        """Where a command goes, and the guard the runner applies on the case it loads."""
        bind(client_id=client_id)
        return CaseRef(principal.office, client_id), self.guard(principal, principal.office)

    async def reading(self, principal: Principal, client_id: str
                      ) -> tuple[CaseRef, Any, LoadedCase]:
        bind(client_id=client_id)
        office = principal.office
        if "auditor" in principal.roles:
            row = await self.kernel.pool.fetchrow(
                f"SELECT office FROM {self.office_table} WHERE client_id = $1", client_id)
            office = row["office"] if row else office
        ref = CaseRef(office, client_id)
        loaded = await self.kernel.store.load(self.context, ref)
        state = self.decider.fold([e.data for e in loaded.events])
        self.guard(principal, office)(state)
        return ref, state, loaded
