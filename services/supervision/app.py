"""The supervision service: reporting plans, contacts, missed reports and violations.

Wiring only: the command runner, the compliance board and the monthly report (read
models), the reaction to registration and guidance, the missed-report sweeper and the HTTP
routes.
"""

from __future__ import annotations

from services.guidance.events import EVENTS as GUIDANCE_EVENTS
from services.registration.events import EVENTS as REGISTRATION_EVENTS
from shared.asyncapi import Contract, access_channel, case_channel
from shared.runtime import Kernel, ServiceDefinition, ServiceParts
from shared.streams import Topology

from .api import build_router
from .domain import DECIDER
from .events import CONTEXT, EVENTS
from .projections import ComplianceBoard, MonthlyReport
from .reactions import FollowOtherContexts
from .settings import SupervisionSettings
from .sweeper import report_sweeper


def build(kernel: Kernel) -> ServiceParts:
    settings = SupervisionSettings()
    runner = kernel.command_runner(CONTEXT, DECIDER)
    return ServiceParts(
        routers=[build_router(kernel, runner, settings.due_soon_days)],
        consumers=[ComplianceBoard(), MonthlyReport(), FollowOtherContexts(runner)],
        background=[report_sweeper(kernel.pool, kernel.schema, runner, settings.sweep_seconds)])


def contract(topology: Topology) -> Contract:
    """Its own events and the record of reads of its clients; the other contexts it follows."""
    return Contract(sends=(case_channel(topology, EVENTS), access_channel(topology)),
                    receives=(case_channel(topology, REGISTRATION_EVENTS),
                              case_channel(topology, GUIDANCE_EVENTS)))


definition = ServiceDefinition(
    name="supervision",
    title="bapas supervision",
    description="Supervision of each client: the reporting plan (wajib lapor), reports, home "
                "and workplace visits, missed reports found on the real clock, and "
                "violations; three missed reports in a row ask the TPP to review the case.",
    registries=(EVENTS, REGISTRATION_EVENTS, GUIDANCE_EVENTS),
    build=build,
    contract=contract,
)
