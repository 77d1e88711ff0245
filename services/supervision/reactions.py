"""Supervision follows registration (a client starts, an officer changes) and guidance (a
closed case ends supervision). Events are the only contract between the services."""

from __future__ import annotations

from services.guidance.events import GuidanceClosed
from services.registration import events as registration
from shared.decider import CommandRunner, react
from shared.events import RecordedEvent
from shared.projector import Reactor

from . import domain as d


class FollowOtherContexts(Reactor):
    name = "follow_registration_and_guidance"
    contexts = ("registration", "guidance")

    def __init__(self, runner: CommandRunner) -> None:
        self.runner = runner

    def handlers(self):
        return {registration.ClientRegistered: self.registered,
                registration.OfficerAssigned: self.assigned,
                GuidanceClosed: self.closed}

    async def _run(self, e: RecordedEvent, cmd: object, *, presume_new: bool = False) -> None:
        await react(self.runner, self.name, e, cmd, presume_new=presume_new)

    async def registered(self, e: RecordedEvent[registration.ClientRegistered]) -> None:
        x = e.data
        # a client just registered: its case here is new, so it is not read first
        await self._run(e, d.StartSupervision(
            client_id=x.client_id, office=x.office, program=x.program.value,
            officer_id=x.officer_id, is_child=x.is_child, period_start_on=x.period.start_on,
            period_end_on=x.period.end_on, at=x.registered_at), presume_new=True)

    async def assigned(self, e: RecordedEvent[registration.OfficerAssigned]) -> None:
        await self._run(e, d.FollowOfficer(e.data.officer_id))

    async def closed(self, e: RecordedEvent[GuidanceClosed]) -> None:
        await self._run(e, d.EndSupervision(reason=f"guidance closed: {e.data.reason}",
                                            ended_on=e.data.closed_on))
