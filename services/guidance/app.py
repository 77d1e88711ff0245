"""The guidance service: the stage path, litmas, TPP decisions, sessions and closure.

Wiring only: the desk (command handlers), the case board and the monthly report (read
models), the reaction to registration's events, the litmas sweeper and the HTTP routes.
"""

from __future__ import annotations

from services.registration.events import EVENTS as REGISTRATION_EVENTS
from shared.asyncapi import Contract, access_channel, case_channel
from shared.runtime import Kernel, ServiceDefinition, ServiceParts
from shared.streams import Topology

from .api import build_router
from .desk import GuidanceDesk
from .events import EVENTS
from .projections import CaseBoard, MonthlyReport
from .reactions import FollowRegistration
from .settings import GuidanceSettings
from .sweeper import litmas_sweeper


def build(kernel: Kernel) -> ServiceParts:
    settings = GuidanceSettings()
    desk = GuidanceDesk(kernel.store, kernel.metrics)
    return ServiceParts(
        routers=[build_router(kernel, desk)],
        consumers=[CaseBoard(), MonthlyReport(),
                   FollowRegistration(desk.runner, settings.policy())],
        background=[litmas_sweeper(kernel.pool, kernel.schema, desk.runner,
                                   settings.sweep_seconds)])


def contract(topology: Topology) -> Contract:
    """Its own events and the record of reads of its clients; the other contexts it follows."""
    return Contract(sends=(case_channel(topology, EVENTS), access_channel(topology)),
                    receives=(case_channel(topology, REGISTRATION_EVENTS),))


definition = ServiceDefinition(
    name="guidance",
    title="bapas guidance",
    description="The guidance path of each client: tahap awal, lanjutan and akhir on "
                "decisions of the review panel (TPP), the litmas, programs and sessions, "
                "revocation and closure. A case opens when registration records a client.",
    registries=(EVENTS, REGISTRATION_EVENTS),
    build=build,
    contract=contract,
)
