"""The registration service: receives clients into guidance.

Wiring only: the registrar (command handlers), the client directory and the monthly report
(read models), the transfer intake (reaction) and the HTTP routes.
"""

from __future__ import annotations

from services.guidance.events import EVENTS as GUIDANCE_EVENTS
from shared.asyncapi import Contract, access_channel, case_channel
from shared.runtime import Kernel, ServiceDefinition, ServiceParts, index_key
from shared.streams import Topology

from .api import build_router
from .events import EVENTS
from .projections import ClientDirectory, MonthlyReport
from .reactions import FollowGuidanceClosure, ShredErasedKeys, TransferIntake
from .registrar import Registrar, refuse_unkeyed_nik_index


def build(kernel: Kernel) -> ServiceParts:
    index = index_key(kernel.settings)
    registrar = Registrar(kernel.store, index, kernel.metrics)
    origin = (registrar if kernel.national_store is kernel.store
              else Registrar(kernel.national_store, index, kernel.metrics))
    return ServiceParts(setup=[lambda: refuse_unkeyed_nik_index(kernel.store)],
                        routers=[build_router(kernel, registrar, origin)],
                        consumers=[ClientDirectory(), MonthlyReport(),
                                   TransferIntake(registrar, origin),
                                   FollowGuidanceClosure(registrar),
                                   *([ShredErasedKeys(kernel)]
                                     if kernel.topology.replicated_keys else [])])


def contract(topology: Topology) -> Contract:
    """Its own events and the record of reads of its clients; the other contexts it follows."""
    return Contract(sends=(case_channel(topology, EVENTS), access_channel(topology)),
                    receives=(case_channel(topology, GUIDANCE_EVENTS),))


definition = ServiceDefinition(
    name="registration",
    title="bapas registration",
    description="Receives clients into guidance: identity (NIK), legal basis, officer "
                "assignment, address, corrections and transfers between offices. Every "
                "call needs a bearer token; offices see only their own clients.",
    registries=(EVENTS, GUIDANCE_EVENTS),
    build=build,
    contract=contract,
    needs=(index_key,),
)
