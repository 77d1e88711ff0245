"""The notification service: its parts, wired onto the kernel."""

from __future__ import annotations

from shared.events import EventRegistry
from shared.runtime import Kernel, ServiceDefinition, ServiceParts

EVENTS = EventRegistry("notification")


def build(kernel: Kernel) -> ServiceParts:
    return ServiceParts()


definition = ServiceDefinition(
    name="notification",
    title="bapas notification",
    description="Agency subscriptions, signed deliveries, the agency feed, officer e-mail.",
    registries=(EVENTS,),
    build=build,
)
