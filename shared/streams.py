"""Where events live: stream and subject names, and the durability profile they must hold.

One stream per context, one subject per case and context:
`bapas.<office>.<context>.<client_id>`. The office comes first so that permissions and
regional replication are subject filters. A namespace (tests, side-by-side installs) prefixes
subjects, stream names and database schemas so that several installs share one server.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass, replace

import httpx
from nats.js import JetStreamContext
from nats.js.api import (DiscardPolicy, ExternalStream, RetentionPolicy, StorageType,
                         StreamConfig, StreamSource)
from nats.js.errors import NotFoundError

from .errors import ProfileError

__all__ = ["Topology", "CaseRef", "stream_profile", "ensure_streams", "check_server_profile",
           "CONTEXT_STREAMS", "KEYS", "DUPLICATE_WINDOW_S"]

# Contexts whose events are case histories (each its own stream), plus the record of reads.
CONTEXT_STREAMS = ("registration", "guidance", "supervision", "access")
# Where offices keep databases of their own (leaves and their hub): the persons' data keys,
# wrapped by the master key, one message per person (shared.privacy.KeyReplica).
KEYS = "keys"
DUPLICATE_WINDOW_S = 600.0
_TOKEN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


def valid_token(value: str) -> bool:
    """True if `value` may stand as one subject token (an office code or a client id)."""
    return _TOKEN.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class CaseRef:
    """One case in one office."""

    office: str
    client_id: str

    def __post_init__(self) -> None:
        for name in ("office", "client_id"):
            if not valid_token(getattr(self, name)):
                raise ValueError(f"{name} {getattr(self, name)!r} is not a valid subject token")


@dataclass(frozen=True, slots=True)
class Topology:
    """Names of streams, subjects and schemas, and which offices' cases are written here.

    Offices may keep their cases on a JetStream of their own (an office leaf, DESIGN §8):
    - on an office's leaf, `office` names it: the streams hold that office's subjects only
      and nothing else is written there;
    - on the hub, `leaves` names the offices that have a leaf: the hub's streams source
      theirs (JetStream domain = office code) and nothing of theirs is written at the hub.
      Every other office writes directly at the hub, as with no leaves at all.
    A case is written only in its home office's stream.
    """

    namespace: str = ""
    office: str = ""
    leaves: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.namespace and not _NAMESPACE.fullmatch(self.namespace):
            raise ValueError("namespace must be lower-case letters, digits and _ (max 31)")
        for office in (self.office, *self.leaves):
            if office and not valid_token(office):
                raise ValueError(f"office {office!r} is not a valid office code")
        if self.office and self.leaves:
            raise ValueError("an office's leaf sources no other leaves (set office or leaves)")

    def writes(self, office: str) -> bool:
        """True if cases of `office` are written to the streams this topology names."""
        if self.office:
            return office == self.office
        return office not in self.leaves

    def written_offices_sql(self, param: int) -> tuple[str, object]:
        """An SQL condition on a column `office` (and its parameter `$param`) that holds for
        the offices written here, for jobs that pick cases from a projection to act on."""
        if self.office:
            return f"office = ${param}", self.office
        return f"NOT (office = ANY(${param}::text[]))", list(self.leaves)

    @property
    def replicated_keys(self) -> bool:
        """True where offices keep databases of their own: a person's data key is then
        shared through the KEYS stream (an office's leaf, sourced by the hub)."""
        return bool(self.office or self.leaves)

    @property
    def streams_of_offices(self) -> tuple[str, ...]:
        """The contexts whose streams an office leaf holds and the hub sources."""
        return (*CONTEXT_STREAMS, KEYS) if self.replicated_keys else CONTEXT_STREAMS

    def key_subject(self, office: str, client_id: str) -> str:
        return f"{self.root}.{office}.{KEYS}.{client_id}"

    @property
    def root(self) -> str:
        return f"{self.namespace}.bapas" if self.namespace else "bapas"

    def stream(self, context: str) -> str:
        name = context.upper()
        return f"{self.namespace.upper()}_{name}" if self.namespace else name

    def subject(self, context: str, ref: CaseRef) -> str:
        return f"{self.root}.{ref.office}.{context}.{ref.client_id}"

    def context_filter(self, context: str, office: str = "*") -> str:
        return f"{self.root}.{office}.{context}.*"

    @property
    def feed_root(self) -> str:
        """The agency feed (redacted, derived): `agency.<office>.<EventType>`."""
        return f"{self.namespace}.agency" if self.namespace else "agency"

    def feed_subject(self, office: str, event_type: str) -> str:
        return f"{self.feed_root}.{office}.{event_type}"

    def notice(self, name: str) -> str:
        """A core-NATS notice between processes (`notice.<name>`): outside the event
        subjects, so it crosses the links between office leaves and the hub."""
        return f"{self.namespace}.notice.{name}" if self.namespace else f"notice.{name}"

    def schema(self, service: str) -> str:
        return f"{self.namespace}_{service}" if self.namespace else service

    def durable(self, *parts: str) -> str:
        name = "_".join(p.replace(".", "_") for p in parts)
        return f"{self.namespace}_{name}" if self.namespace else name

    def parse_subject(self, subject: str) -> tuple[str, str, str]:
        """(office, context, client_id) of a case subject of this namespace."""
        prefix = self.root + "."
        parts = subject[len(prefix):].split(".") if subject.startswith(prefix) else []
        if len(parts) != 3:
            raise ValueError(f"{subject!r} is not a case subject under {prefix}")
        office, context, client_id = parts
        return office, context, client_id


def leaf_source(topology: Topology, context: str, office: str) -> StreamSource:
    """The hub's source of one office leaf's stream: the same stream name, in the JetStream
    domain named after the office, reached over the leaf connection."""
    return StreamSource(name=topology.stream(context),
                        external=ExternalStream(api=f"$JS.{office}.API"))


def stream_profile(topology: Topology, context: str, replicas: int = 1) -> StreamConfig:
    """The settings every event stream holds (DESIGN §2); on an office's leaf it holds that
    office's subjects, at a hub it also sources every office leaf's stream (DESIGN §8)."""
    return StreamConfig(
        name=topology.stream(context),
        subjects=[topology.context_filter(context, topology.office or "*")],
        sources=[leaf_source(topology, context, o) for o in topology.leaves] or None,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_msgs=-1,
        max_bytes=-1,
        max_age=0,
        # a person's key message replaces the one before it (a destroyed key, its wrapped
        # bytes): the stream keeps no copy of a destroyed key
        max_msgs_per_subject=1 if context == KEYS else -1,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        allow_atomic=True,
    )


def _plain(value: object) -> object:
    return getattr(value, "value", value)  # nats-py gives enums on write, strings on read


def _differences(actual: StreamConfig, wanted: StreamConfig) -> list[str]:
    out = []
    checks = [
        ("subjects", sorted(actual.subjects or []), sorted(wanted.subjects or [])),
        ("retention", _plain(actual.retention), _plain(wanted.retention)),
        ("storage", _plain(actual.storage), _plain(wanted.storage)),
        ("max_msgs", actual.max_msgs, -1),
        ("max_bytes", actual.max_bytes, -1),
        ("max_age", actual.max_age or 0, 0),
        ("max_msgs_per_subject", actual.max_msgs_per_subject, wanted.max_msgs_per_subject),
        ("deny_delete", bool(actual.deny_delete), True),
        ("deny_purge", bool(actual.deny_purge), True),
        ("allow_direct", bool(actual.allow_direct), True),
        ("allow_atomic", bool(actual.allow_atomic), True),
    ]
    for name, have, want in checks:
        if have != want:
            out.append(f"{name} is {have!r}, must be {want!r}")
    if (actual.num_replicas or 1) < (wanted.num_replicas or 1):
        out.append(f"num_replicas is {actual.num_replicas}, must be at least "
                   f"{wanted.num_replicas} (BAPAS_STREAM_REPLICAS)")
    if (actual.duplicate_window or 0) < DUPLICATE_WINDOW_S:
        out.append(f"duplicate_window is {actual.duplicate_window}s, must be at least "
                   f"{DUPLICATE_WINDOW_S:.0f}s")
    return out


def _source_key(source: StreamSource) -> tuple[str, str]:
    return source.name, (source.external.api if source.external else "")


def _missing_sources(actual: StreamConfig, wanted: StreamConfig) -> list[StreamSource]:
    have = {_source_key(s) for s in actual.sources or []}
    return [s for s in wanted.sources or [] if _source_key(s) not in have]


async def ensure_streams(js: JetStreamContext, topology: Topology, replicas: int = 1,
                         contexts: tuple[str, ...] | None = None) -> list[str]:
    """Create missing streams with the profile; refuse streams that differ from it.

    Existing streams are never rewritten: changing a stream that holds the source of truth is
    an operator's decision, so a difference stops the service with the change to make.
    Returns the names of streams created.
    """
    created, problems = [], []
    for context in contexts or topology.streams_of_offices:
        wanted = stream_profile(topology, context, replicas)
        try:
            info = await js.stream_info(wanted.name)
        except NotFoundError:
            await js.add_stream(wanted)
            created.append(wanted.name)
            continue
        for diff in _differences(info.config, wanted):
            problems.append(f"stream {wanted.name}: {diff}")
        if not problems and _missing_sources(info.config, wanted):
            # a new office leaf: adding a source writes nothing over what the stream holds
            await js.update_stream(replace(info.config, sources=[
                *(info.config.sources or []), *_missing_sources(info.config, wanted)]))
    if problems:
        raise ProfileError(
            "event streams differ from the durability profile:\n  " + "\n  ".join(problems)
            + "\nChange them with `nats stream edit` (or recreate an empty stream); the service "
              "will not rewrite a stream that holds events.")
    return created


def default_monitor_url(nats_url: str) -> str:
    """Port 8222 on each host of `nats_url` (comma-separated for a cluster)."""
    hosts = [urllib.parse.urlparse(u.strip()).hostname or "127.0.0.1" for u in nats_url.split(",")]
    return ",".join(f"http://{h}:8222" for h in dict.fromkeys(hosts))


async def check_server_profile(monitor_url: str, timeout: float = 5.0) -> dict:
    """Refuse a server that does not fsync every write (`sync_interval: always`).

    The setting is read from the server's monitoring endpoint (/varz): clients cannot see it
    otherwise. `monitor_url` may list a cluster's nodes, comma-separated: every node that
    answers must hold the profile and at least one must answer (a node down for maintenance
    does not stop a service from starting). Returns the JetStream config a node reported.
    """
    urls = [u.strip() for u in monitor_url.split(",") if u.strip()]
    reported: list[dict] = []
    unreachable: list[ProfileError] = []
    for url in urls:
        try:
            reported.append(await _node_profile(url, timeout))
        except _Unreachable as exc:
            unreachable.append(exc)
    if not reported:
        raise unreachable[0]
    return reported[0]


class _Unreachable(ProfileError):
    pass


async def _node_profile(monitor_url: str, timeout: float) -> dict:
    url = monitor_url.rstrip("/") + "/varz"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            resp = await client.get(url)
            resp.raise_for_status()
            varz = resp.json()
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        raise _Unreachable(
            f"cannot read the NATS server's settings from {url} ({exc}). The durability profile "
            "must be verified before events are written: enable the monitoring port "
            "(`http: 8222` in nats-server.conf) or set BAPAS_NATS_MONITOR_URL to it "
            "(comma-separated, one per node of a cluster).") from exc
    js_cfg = (varz.get("jetstream") or {}).get("config")
    if not js_cfg:
        raise ProfileError(f"the NATS server at {url} runs without JetStream: "
                           "add `jetstream { sync_interval: always }` to its config.")
    if not js_cfg.get("sync_always"):
        interval = js_cfg.get("sync_interval")
        every = f"every {interval / 1e9:g}s" if isinstance(interval, (int, float)) else "late"
        raise ProfileError(
            f"the NATS server at {url} does not fsync every write (it syncs {every}, not "
            "`always`). An acknowledged event could be lost on power failure. Set "
            "`jetstream { sync_interval: always }` in nats-server.conf and restart the server.")
    return js_cfg
