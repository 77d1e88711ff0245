"""The guidance service: its parts, wired onto the kernel."""

from __future__ import annotations

from shared.events import EventRegistry
from shared.runtime import Kernel, ServiceDefinition, ServiceParts

EVENTS = EventRegistry("guidance")


def build(kernel: Kernel) -> ServiceParts:
    return ServiceParts()


definition = ServiceDefinition(
    name="guidance",
    title="bapas guidance",
    description="The three-stage guidance path: litmas, TPP decisions, programs, sessions, closure.",
    registries=(EVENTS,),
    build=build,
)
