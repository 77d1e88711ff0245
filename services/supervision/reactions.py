"""Supervision follows registration (a client starts, an officer changes) and guidance (a
closed case ends supervision). Events are the only contract between the services."""

from __future__ import annotations

import structlog

from services.guidance.domain import GuidanceClosed
from services.registration import domain as registration
from shared.decider import CommandRunner
from shared.errors import DomainError
from shared.events import Metadata, RecordedEvent
from shared.ids import derived_id
from shared.projector import Reactor
from shared.streams import CaseRef

from . import domain as d

log = structlog.get_logger("bapas.supervision")


class FollowOtherContexts(Reactor):
    name = "follow_registration_and_guidance"
    contexts = ("registration", "guidance")

    def __init__(self, runner: CommandRunner) -> None:
        self.runner = runner

    def handlers(self):
        return {registration.ClientRegistered: self.registered,
                registration.OfficerAssigned: self.assigned,
                GuidanceClosed: self.closed}

    async def _run(self, e: RecordedEvent, cmd: object) -> None:
        try:
            await self.runner.run(CaseRef(e.office, e.client_id), cmd,
                                  Metadata(f"system:{self.name}", e.correlation_id or e.id, e.id),
                                  event_id=lambda i: derived_id(e.id, self.name, i))
        except DomainError as refused:  # the case says no (ended, say): nothing to redo
            log.info("reaction refused by the case", reaction=self.name, event=e.type,
                     client_id=e.client_id, reason=refused.message)

    async def registered(self, e: RecordedEvent[registration.ClientRegistered]) -> None:
        x = e.data
        await self._run(e, d.StartSupervision(
            client_id=x.client_id, office=x.office, program=x.program.value,
            officer_id=x.officer_id, is_child=x.is_child, period_start_on=x.period.start_on,
            period_end_on=x.period.end_on, at=x.registered_at))

    async def assigned(self, e: RecordedEvent[registration.OfficerAssigned]) -> None:
        await self._run(e, d.FollowOfficer(e.data.officer_id))

    async def closed(self, e: RecordedEvent[GuidanceClosed]) -> None:
        await self._run(e, d.EndSupervision(reason=f"guidance closed: {e.data.reason}",
                                            ended_on=e.data.closed_on))
