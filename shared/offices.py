"""The links between office leaves and the hub (DESIGN §8), seen from the hub.

Each event stream at the hub sources the same stream of every office leaf, through the
JetStream domain named after the office. While a link is down the hub's source stalls; the
server retries it with a growing pause (10 s per failure, up to 2 minutes) and a
consumer-create request sent into a dead link waits 30 s for its answer, so after a long
cut the hub would take up to minutes to notice that the office is back. `LinkKeeper`
watches the sources of every hub service's streams and, once an office's domain answers
again while its source still stalls, gives the source afresh: removed and added back in
two stream updates. A source added again starts after the last message of that office the
hub stored (the server finds it from the `Nats-Stream-Source` headers), so nothing is
stored twice and nothing skipped. A source found missing (a new office, or a keeper
stopped between the two updates) is added.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, replace

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS

from .streams import Topology, leaf_source

__all__ = ["LinkKeeper", "OfficeLink", "office_links"]

log = structlog.get_logger("bapas.offices")

STALLED_AFTER_S = 4.0  # sources carry a heartbeat every second
SETTLE_S = 10.0  # a source given afresh is left alone this long
_NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)


@dataclass
class OfficeLink:
    """One office leaf as the hub sees it."""

    office: str
    reachable: bool  # its JetStream domain answers through the leaf connection
    stalled: list[str]  # hub streams whose source of this office has no recent activity
    waiting: int | None  # events the leaf holds that the hub has not yet (None: unknown);
    # the record of reads counts only while the hub's last of them came from the leaf


async def domain_answers(nc: NATS, domain: str, timeout: float = 1.0) -> bool:
    try:
        await nc.request(f"$JS.{domain}.API.INFO", b"", timeout=timeout)
        return True
    except _NATS_ERRORS:
        return False


async def source_states(nc: NATS, stream: str, timeout: float = 5.0) -> dict[str, dict]:
    """The stream's sources as the server reports them, by API prefix (`$JS.<office>.API`).
    (nats-py's StreamSourceInfo leaves out `external`, which tells sources of the same
    stream name in different domains apart.)"""
    reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=timeout)
    doc = json.loads(reply.data)
    if "error" in doc:
        raise nats.js.errors.APIError.from_error(doc["error"])
    return {(src.get("external") or {}).get("api", ""): src for src in doc.get("sources") or []}


def _stalled(source: dict) -> bool:
    active = source.get("active", -1)  # nanoseconds since it last saw anything; -1: never
    return active < 0 or active > STALLED_AFTER_S * 1e9 or bool(source.get("error"))


def _origin_seq(headers: dict[str, str] | None) -> int | None:
    """The origin stream's sequence of a sourced message:
    `Nats-Stream-Source: <stream>:<hash> <seq> <filter> <transform> <subject> ...`."""
    value = (headers or {}).get("Nats-Stream-Source", "")
    parts = value.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def office_links(nc: NATS, topology: Topology, contexts: tuple[str, ...] | None = None,
                       leaves: dict[str, NATS] | None = None) -> list[OfficeLink]:
    """Each office leaf: whether it answers at the hub, which sources stall, and how many of
    its events the hub has yet to receive (the leaf's last sequence against the origin
    sequence of the last message of that office the hub holds, per stream). The leaf is
    read through the hub, or through a connection of its own in `leaves` (which tells what
    waits even while the link is down)."""
    js = nc.jetstream()
    infos = {c: await source_states(nc, topology.stream(c))
             for c in contexts or topology.streams_of_offices}
    out = []
    for office in topology.leaves:
        reachable = await domain_answers(nc, office)
        stalled, waiting = [], 0
        own = (leaves or {}).get(office)
        leaf_js = own.jetstream() if own is not None else nc.jetstream(domain=office)
        for context, sources in infos.items():
            name = topology.stream(context)
            source = sources.get(leaf_source(topology, context, office).external.api)
            if source is None or _stalled(source):
                stalled.append(name)
            if waiting is None or not (reachable or own is not None):
                waiting = None
                continue
            try:
                leaf_last = (await leaf_js.stream_info(name)).state.last_seq
                got = await _last_sourced(js, name, topology.context_filter(context, office))
            except _NATS_ERRORS:
                waiting = None
                continue
            if got is None:  # the hub holds nothing of this office's here yet
                waiting += leaf_last
            elif got >= 0:
                waiting += max(0, leaf_last - got)
            # else: the hub's last record of the office there is its own (ACCESS: a read at
            # the hub), so what it received from the leaf is not known from it: not counted
        out.append(OfficeLink(office, reachable, stalled, waiting))
    return out


async def _last_sourced(js, stream: str, subjects: str) -> int | None:  # noqa: ANN001
    """The origin sequence of the hub's last message on `subjects`; None if it has none,
    -1 if that message was not sourced (written at the hub itself)."""
    try:
        msg = await js.get_last_msg(stream, subjects, direct=True)
    except nats.js.errors.NotFoundError:
        return None
    seq = _origin_seq(msg.headers)
    return -1 if seq is None else seq


class LinkKeeper:
    """Keeps every office leaf's sources at the hub moving (see the module docstring)."""

    def __init__(self, nc: NATS, topology: Topology, every: float = 2.0) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.topology = topology
        self.every = every
        self.kicks = 0
        self._kicked: dict[tuple[str, str], float] = {}  # (stream, office) -> monotonic

    async def run(self) -> None:
        while True:
            with contextlib.suppress(*_NATS_ERRORS):
                await self.check()
            await asyncio.sleep(self.every)

    async def check(self) -> None:
        for context in self.topology.streams_of_offices:
            name = self.topology.stream(context)
            sources = await source_states(self.nc, name)
            for office in self.topology.leaves:
                have = sources.get(leaf_source(self.topology, context, office).external.api)
                if have is not None and not _stalled(have):
                    continue
                key = (name, office)
                now = asyncio.get_running_loop().time()
                if have is not None and now - self._kicked.get(key, -1e9) < SETTLE_S:
                    continue  # given afresh a moment ago: let it start
                if have is not None and not await self._leaf_has(office, name):
                    continue  # the link is down (or the leaf not set up): the source waits
                self._kicked[key] = now
                await self._source_afresh(context, office, present=have is not None)

    async def _leaf_has(self, office: str, stream: str) -> bool:
        try:
            await self.nc.jetstream(domain=office, timeout=1.0).stream_info(stream)
            return True
        except _NATS_ERRORS:
            return False

    async def _source_afresh(self, context: str, office: str, *, present: bool) -> None:
        name = self.topology.stream(context)
        wanted = leaf_source(self.topology, context, office)
        config = (await self.js.stream_info(name)).config
        others = [s for s in config.sources or []
                  if not (s.external and s.external.api == wanted.external.api)]
        if present:
            await self.js.update_stream(replace(config, sources=others))
        await self.js.update_stream(replace(config, sources=[*others, wanted]))
        self.kicks += 1
        log.info("office source given afresh" if present else "office source added",
                 stream=name, office=office)
