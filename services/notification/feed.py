"""The agency feed: every public event, redacted to the IDENTIFIERS level, on
`agency.<office>.<EventType>` in the derived stream AGENCY_FEED.

Agencies read it from accounts of their own, through exports of their office's subjects and
of one pull consumer per agency filtered on them, which the operator creates
(deploy/nats-accounts.conf explains why: an agency user inside the services' account could
make the server write into the event streams through reply subjects)."""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from services.guidance.events import EVENTS as GUIDANCE_EVENTS
from services.registration.events import EVENTS as REGISTRATION_EVENTS
from services.supervision.events import EVENTS as SUPERVISION_EVENTS
from shared.asyncapi import Channel
from shared.envelope import ce_type
from shared.events import EventCatalog, RecordedEvent
from shared.projector import Reactor
from shared.streams import DUPLICATE_WINDOW_S, Topology

from .domain import PUBLIC_EVENT_TYPES, DataLevel, attributes, redact
from .events import FEED_PAYLOADS


def feed_stream(topology: Topology, replicas: int = 1) -> StreamConfig:
    """Derived from the event streams and rebuildable: the same durable storage, but a
    subscriber-facing stream, so no atomic batches are needed."""
    return StreamConfig(
        name=topology.stream("agency_feed"), subjects=[f"{topology.feed_root}.>"],
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, discard=DiscardPolicy.OLD,
        max_msgs=-1, max_bytes=-1, max_age=0, duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=replicas, deny_delete=True, deny_purge=True, allow_direct=True)


def feed_channels(topology: Topology) -> tuple[Channel, ...]:
    """The feed for the AsyncAPI document: one channel per public event type, since the
    subject names the type and so the redacted body an agency receives on it."""
    return tuple(
        Channel(name=f"agency_feed.{cls.event_type}",
                address=topology.feed_subject("{office}", cls.event_type),
                description=f"{cls.event_type} of the office's clients at the IDENTIFIERS "
                            f"level (header `ce-datalevel`), in the stream "
                            f"{topology.stream('agency_feed')}: only the allowlisted fields, "
                            "each optional, since an older version of the event may lack it. "
                            "CloudEvents headers as on the event streams, without the actor "
                            "and the hash chain.",
                messages=(FEED_PAYLOADS[cls.event_type],),
                ce_types=(ce_type(cls.event_type, cls.event_version),))
        for registry in (REGISTRATION_EVENTS, GUIDANCE_EVENTS, SUPERVISION_EVENTS)
        for cls in registry.types() if cls.event_type in FEED_PAYLOADS)


async def ensure_feed(nc: NATS, topology: Topology, replicas: int = 1) -> None:
    js = nc.jetstream()
    try:
        await js.stream_info(topology.stream("agency_feed"))
    except NotFoundError:
        await js.add_stream(feed_stream(topology, replicas))


class AgencyFeed(Reactor):
    name = "agency_feed"
    contexts = ("registration", "guidance", "supervision")

    def __init__(self, nc: NATS, topology: Topology, catalog: EventCatalog) -> None:
        self.js = nc.jetstream()
        self.topology = topology
        self.catalog = catalog

    def writes_to(self, event: RecordedEvent) -> None:
        return None  # it writes the feed, no office's case: every office's events, at the hub

    def handlers(self):
        types = {cls.event_type: cls for reg in self.catalog.registries for cls in reg.types()}
        return {types[name]: self.publish for name in PUBLIC_EVENT_TYPES}

    async def publish(self, e: RecordedEvent) -> None:
        headers = attributes(e.headers, DataLevel.IDENTIFIERS)
        headers["Nats-Msg-Id"] = e.id  # republishing after a restart stores nothing twice
        await self.js.publish(self.topology.feed_subject(e.office, e.type),
                              redact(e.type, e.plain_body, DataLevel.IDENTIFIERS), headers=headers)
