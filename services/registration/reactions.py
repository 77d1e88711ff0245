"""Registration's reactions to events, its own and other contexts'."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from services.guidance.events import CloseReason, GuidanceClosed
from shared.events import Metadata, RecordedEvent
from shared.projector import Reactor
from shared.streams import CaseRef

from .domain import CaseLink, ClientTransferred, CloseRegistration, PersonErased, RegisterClient
from .registrar import Registrar

if TYPE_CHECKING:
    from shared.runtime import Kernel


class TransferIntake(Reactor):
    """A client transferred out of one office is registered at the receiving office, under
    the client id the transfer named, linked to the case it came from. No HTTP call between
    offices: the receiving office learns of the transfer from the event."""

    name = "transfer_intake"
    contexts = ("registration",)
    reads_hub = True  # on an office's leaf, transfers from other offices arrive via the hub

    def __init__(self, registrar: Registrar, origin: Registrar | None = None) -> None:
        self.registrar = registrar
        self.origin = origin or registrar  # where the sending office's case is read

    def handlers(self):
        return {ClientTransferred: self.transferred}

    def writes_to(self, event: RecordedEvent) -> str:
        return event.data.to_office  # the receiving office's services take it in

    async def transferred(self, e: RecordedEvent[ClientTransferred]) -> None:
        state, _ = await self.origin.load(CaseRef(e.office, e.client_id))
        old = state.registered
        assert old is not None, "a transfer always follows a registration"
        corrected = {field: state.value(field) for field in state.corrections}
        period = old.period.model_copy(update={
            "start_on": corrected.get("period.start_on", old.period.start_on),
            "end_on": corrected.get("period.end_on", old.period.end_on)})
        person = old.person
        cmd = RegisterClient(
            client_id=e.data.new_client_id, office=e.data.to_office,
            program=state.value("program"), decision=old.decision.model_copy(update={
                k.split(".")[1]: v for k, v in corrected.items() if k.startswith("decision.")}),
            origin_institution=state.value("origin_institution"), period=period,
            full_name=state.value("person.full_name"), nik=person.nik,
            address=state.address or person.address, phone=state.value("person.phone"),
            birth_date=state.value("person.birth_date"), sex=state.value("person.sex"),
            family_contact=old.family_contact, officer_id=None,
            registered_at=e.data.transferred_at,
            transferred_from=CaseLink(office=e.office, client_id=e.client_id))
        await self.registrar.register(cmd, Metadata(actor=f"system:{self.name}",
                                                    correlation_id=e.correlation_id or e.id,
                                                    causation_id=e.id))


class FollowGuidanceClosure(Reactor):
    """When guidance ends (other than by a transfer, which registration itself records), the
    registration closes: the record becomes read-only and the person may be registered
    again later."""

    name = "follow_guidance_closure"
    contexts = ("guidance",)

    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar

    def handlers(self):
        return {GuidanceClosed: self.closed}

    async def closed(self, e: RecordedEvent[GuidanceClosed]) -> None:
        if e.data.reason is CloseReason.TRANSFERRED:
            return
        await self.registrar.close(
            CaseRef(e.office, e.client_id),
            CloseRegistration(reason=e.data.reason.value, closed_on=e.data.closed_on),
            Metadata(f"system:{self.name}", e.correlation_id or e.id, e.id),
            key=e.id, at=datetime.now(UTC))


class ShredErasedKeys(Reactor):
    """Where offices keep databases of their own, a person erased at one office may have
    an earlier case (before a transfer) whose key another office holds: that office's
    registration destroys it when the `PersonErased` event reaches it through the hub, and
    publishes the destroyed key to its KEYS stream (shared.privacy)."""

    name = "shred_erased_keys"
    contexts = ("registration",)
    reads_hub = True  # erasures at other offices arrive via the hub

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    def handlers(self):
        return {PersonErased: self.erased}

    def writes_to(self, event: RecordedEvent) -> str | None:
        return None  # no case is written; each office picks its own cases below

    async def erased(self, e: RecordedEvent[PersonErased]) -> None:
        mine = [c.client_id for c in e.data.cases if self.kernel.topology.writes(c.office)]
        for client_id in mine:
            await self.kernel.keys.destroy(client_id, by=e.data.erased_by,
                                           legal_basis=e.data.legal_basis,
                                           at=e.data.erased_at)
        if mine:
            await self.kernel.announce_erasure(mine)
