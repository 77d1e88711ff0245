"""The notification service: agencies subscribe, officers are told, nothing is lost.

Wiring only: the delivery router (events -> delivery log), the agency feed, the
dispatcher and the reminder scheduler, and the HTTP routes.
"""

from __future__ import annotations

import httpx

from services.guidance.events import EVENTS as GUIDANCE_EVENTS
from services.registration.events import EVENTS as REGISTRATION_EVENTS
from services.supervision.events import EVENTS as SUPERVISION_EVENTS
from shared.asyncapi import Contract, case_channel
from shared.runtime import Kernel, ServiceDefinition, ServiceParts
from shared.streams import Topology

from .api import build_router
from .channels import EmailSender, HttpSmsGateway, WebhookSender
from .dispatcher import Dispatcher
from .feed import AgencyFeed, ensure_feed, feed_channels
from .reminders import reminder_scheduler
from .router import DeliveryRouter
from .schema import ensure_tables
from .settings import NotificationSettings


def build(kernel: Kernel) -> ServiceParts:
    settings = NotificationSettings()
    client = httpx.AsyncClient(timeout=settings.send_timeout_seconds, follow_redirects=False)
    dispatcher = Dispatcher(
        kernel.pool, kernel.schema, settings.retry_policy(),
        webhooks=WebhookSender(client),
        email=EmailSender(settings.smtp_host, settings.smtp_port, settings.smtp_from,
                          settings.send_timeout_seconds),
        sms=HttpSmsGateway(client, settings.sms_webhook_url),
        lease_seconds=settings.lease_seconds, poll_seconds=settings.poll_seconds)

    async def tables() -> None:
        await ensure_tables(kernel.pool, kernel.schema)

    async def feed_stream() -> None:
        await ensure_feed(kernel.nc, kernel.topology, kernel.settings.stream_replicas)

    return ServiceParts(
        routers=[build_router(kernel, settings, client)],
        consumers=[DeliveryRouter(kernel.schema, kernel.catalog),
                   AgencyFeed(kernel.nc, kernel.topology, kernel.catalog)],
        background=[dispatcher.run,
                    reminder_scheduler(kernel.pool, kernel.schema, settings.reminder_days,
                                       settings.reminder_poll_seconds)],
        setup=[tables, feed_stream])


def contract(topology: Topology) -> Contract:
    """Publishes the agency feed; reads the three contexts (webhooks and e-mail are not
    NATS, so not in the AsyncAPI document)."""
    return Contract(sends=feed_channels(topology),
                    receives=tuple(case_channel(topology, r) for r in
                                   (REGISTRATION_EVENTS, GUIDANCE_EVENTS, SUPERVISION_EVENTS)))


definition = ServiceDefinition(
    name="notification",
    title="bapas notification",
    description="Agencies subscribe to an office's events (signed CloudEvents webhooks, or "
                "the redacted AGENCY_FEED stream); officers get e-mail notices and clients "
                "reminders. Each delivery is recorded once and sent at least once.",
    registries=(REGISTRATION_EVENTS, GUIDANCE_EVENTS, SUPERVISION_EVENTS),
    build=build,
    contract=contract,
)
