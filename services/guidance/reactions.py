"""Guidance reacts to registration: a registered client opens a case, an assigned officer
is followed, a transfer closes the case here. No HTTP call between the services: the
events are the only contract."""

from __future__ import annotations

from services.registration import events as registration
from shared.decider import CommandRunner, react
from shared.events import RecordedEvent
from shared.office_time import office_date
from shared.projector import Reactor

from . import domain as d


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

    async def _run(self, e: RecordedEvent, cmd: object, *, presume_new: bool = False) -> None:
        await react(self.runner, self.name, e, cmd, presume_new=presume_new)

    async def registered(self, e: RecordedEvent[registration.ClientRegistered]) -> None:
        x = e.data
        link = x.transferred_from.model_dump() if x.transferred_from else None
        # a client just registered: its case here is new, so it is not read first
        await self._run(e, d.OpenGuidance(
            client_id=x.client_id, office=x.office, program=x.program.value,
            period_start_on=x.period.start_on, period_end_on=x.period.end_on,
            officer_id=x.officer_id, is_child=x.is_child, at=x.registered_at,
            policy=self.policy, transferred_from=link), presume_new=True)

    async def assigned(self, e: RecordedEvent[registration.OfficerAssigned]) -> None:
        await self._run(e, d.FollowOfficer(e.data.officer_id, e.data.assigned_at, self.policy))

    async def transferred(self, e: RecordedEvent[registration.ClientTransferred]) -> None:
        x = e.data
        today = office_date(x.transferred_at)
        await self._run(e, d.CloseGuidance(
            reason=d.CloseReason.TRANSFERRED, closed_on=today, letter_number=None,
            by=x.approved_by, today=today,
            transferred_to={"office": x.to_office, "client_id": x.new_client_id}))

