"""The audit service: its parts, wired onto the kernel."""

from __future__ import annotations

from shared.events import EventRegistry
from shared.runtime import Kernel, ServiceDefinition, ServiceParts

EVENTS = EventRegistry("audit")


def build(kernel: Kernel) -> ServiceParts:
    return ServiceParts()


definition = ServiceDefinition(
    name="audit",
    title="bapas audit",
    description="Read-only: any case's history as it was on any date, verified.",
    registries=(EVENTS,),
    build=build,
)
