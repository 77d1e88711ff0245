"""The record of processing (UU 27/2022): who read which client's data, when.

Every read of a client by a person is published, before the answer goes out, to the ACCESS
stream on the client's subject (`bapas.<office>.access.<client_id>`). The record lives with
the events, in the store no service can rewrite, and the audit service reads it from there.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from nats.aio.client import Client as NATS

from .envelope import GENESIS_HASH, Envelope, ce_type, format_time
from .errors import AppendError, require_connected
from .events import Event, EventRegistry
from .ids import new_id
from .streams import CaseRef, Topology
from .web.auth import Principal

__all__ = ["ACCESS", "ClientDataRead", "AccessRecorder"]

ACCESS = EventRegistry("access")


@ACCESS.event()
class ClientDataRead(Event):
    """A person read a client's data through one of the services."""

    actor: str
    actor_office: str
    actor_roles: list[str]
    client_office: str
    service: str
    what: str
    at: datetime


class AccessRecorder:
    def __init__(self, nc: NATS, topology: Topology, service: str, timeout: float = 5.0) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self._topology = topology
        self._service = service

    async def record(self, principal: Principal, ref: CaseRef, what: str,
                     correlation_id: str | None = None) -> None:
        now = datetime.now(UTC)
        data = ClientDataRead(actor=principal.sub, actor_office=principal.office,
                              actor_roles=sorted(principal.roles), client_office=ref.office,
                              service=self._service, what=what, at=now)
        body = data.model_dump_json().encode()
        # Reads are not a case history: each record stands alone (sequence 0) but still
        # carries a hash of its own body.
        env = Envelope(id=new_id(), type=ce_type("ClientDataRead", 1), time=format_time(now),
                       office=ref.office, context="access", client_id=ref.client_id,
                       sequence=0, prevhash=GENESIS_HASH, hash="", actor=principal.sub,
                       correlation_id=correlation_id)
        headers = replace(env, hash=env.computed_hash(body)).headers()
        require_connected(self._nc)  # answered 503: the read is refused, not unrecorded
        try:
            await self._js.publish(self._topology.subject("access", ref), body, headers=headers)
        except Exception as exc:  # the read must not be answered unrecorded
            raise AppendError(f"could not record the read of {ref.client_id}: {exc}") from exc

