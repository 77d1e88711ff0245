"""The supervision service: its parts, wired onto the kernel."""

from __future__ import annotations

from shared.events import EventRegistry
from shared.runtime import Kernel, ServiceDefinition, ServiceParts

EVENTS = EventRegistry("supervision")


def build(kernel: Kernel) -> ServiceParts:
    return ServiceParts()


definition = ServiceDefinition(
    name="supervision",
    title="bapas supervision",
    description="Reporting plans (wajib lapor), visits, missed reports and violations.",
    registries=(EVENTS,),
    build=build,
)
