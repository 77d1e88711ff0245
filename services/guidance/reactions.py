"""Guidance reacts to registration: a registered client opens a case, an assigned officer
is followed, a transfer closes the case here. No HTTP call between the services: the
events are the only contract."""

from __future__ import annotations

import structlog

from services.registration import domain as registration
from shared.decider import CommandRunner
from shared.errors import DomainError
from shared.events import Metadata, RecordedEvent
from shared.ids import derived_id
from shared.projector import Reactor
from shared.streams import CaseRef

from . import domain as d

log = structlog.get_logger("bapas.guidance")


class FollowRegistration(Reactor):
    name = "follow_registration"
    contexts = ("registration",)

    def __init__(self, runner: CommandRunner, policy: d.Policy) -> None:
        self.runner = runner
        self.policy = policy

    def handlers(self):
        return {registration.ClientRegistered: self.registered,
                registration.OfficerAssigned: self.assigned,
                registration.ClientTransferred: self.transferred}

    async def _run(self, e: RecordedEvent, cmd: object) -> None:
        try:
            await self.runner.run(CaseRef(e.office, e.client_id), cmd,
                                  Metadata(f"system:{self.name}", e.correlation_id or e.id, e.id),
                                  event_id=lambda i: derived_id(e.id, self.name, i))
        except DomainError as refused:  # the case says no (closed, say): nothing to redo
            log.info("reaction refused by the case", reaction=self.name, event=e.type,
                     client_id=e.client_id, reason=refused.message)

    async def registered(self, e: RecordedEvent[registration.ClientRegistered]) -> None:
        x = e.data
        link = x.transferred_from.model_dump() if x.transferred_from else None
        await self._run(e, d.OpenGuidance(
            client_id=x.client_id, office=x.office, program=x.program.value,
            period_start_on=x.period.start_on, period_end_on=x.period.end_on,
            officer_id=x.officer_id, is_child=x.is_child, at=x.registered_at,
            policy=self.policy, transferred_from=link))

    async def assigned(self, e: RecordedEvent[registration.OfficerAssigned]) -> None:
        await self._run(e, d.FollowOfficer(e.data.officer_id, e.data.assigned_at, self.policy))

    async def transferred(self, e: RecordedEvent[registration.ClientTransferred]) -> None:
        x = e.data
        today = x.transferred_at.astimezone(registration.WIB).date()
        await self._run(e, d.CloseGuidance(
            reason=d.CloseReason.TRANSFERRED, closed_on=today, letter_number=None,
            by=x.approved_by, today=today,
            transferred_to={"office": x.to_office, "client_id": x.new_client_id}))

