"""The registration service: its parts, wired onto the kernel."""

from __future__ import annotations

from shared.events import EventRegistry
from shared.runtime import Kernel, ServiceDefinition, ServiceParts

EVENTS = EventRegistry("registration")


def build(kernel: Kernel) -> ServiceParts:
    return ServiceParts()


definition = ServiceDefinition(
    name="registration",
    title="bapas registration",
    description="Receives clients into guidance: identity, legal basis, officer assignment, address, transfers.",
    registries=(EVENTS,),
    build=build,
)
