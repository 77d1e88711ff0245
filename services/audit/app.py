"""The audit service: read-only; replays any case as it was, verifies it, and tells who
read what. Wiring only."""

from __future__ import annotations

from services.guidance.events import EVENTS as GUIDANCE_EVENTS
from services.registration.events import EVENTS as REGISTRATION_EVENTS
from services.supervision.events import EVENTS as SUPERVISION_EVENTS
from shared.asyncapi import Contract, access_channel, case_channel
from shared.runtime import Kernel, ServiceDefinition, ServiceParts
from shared.streams import Topology

from .api import build_router
from .projections import AccessLog, ClientIndex, EventIndex


def build(kernel: Kernel) -> ServiceParts:
    return ServiceParts(routers=[build_router(kernel)],
                        consumers=[ClientIndex(), AccessLog(), EventIndex(kernel.catalog)])


def contract(topology: Topology) -> Contract:
    """Read-only: every context's events and the record of reads; publishes nothing."""
    return Contract(receives=(
        *(case_channel(topology, r) for r in
          (REGISTRATION_EVENTS, GUIDANCE_EVENTS, SUPERVISION_EVENTS)),
        access_channel(topology)))


definition = ServiceDefinition(
    name="audit",
    title="bapas audit",
    description="Read-only: a client's whole history across contexts and offices, the state "
                "of the case at any instant, verification of the hash chains, exports that "
                "verify offline, and the record of who read which client. Roles auditor "
                "(every office) or head (own office).",
    registries=(REGISTRATION_EVENTS, GUIDANCE_EVENTS, SUPERVISION_EVENTS),
    build=build,
    contract=contract,
)
