"""Running a service: the one place that connects, checks and starts things.

Each service's `__main__` hands its `ServiceDefinition` to `main()`. Start-up order: settings,
logging, NATS, the durability profile (refuse to start without `sync_interval: always` or
with streams that differ), streams, PostgreSQL and the kernel tables, then the service's own
parts (routes, projections, reactions, schedulers), then HTTP. SIGTERM stops HTTP first, then
the consumers, then the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import logging
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI
from faststream.nats import NatsBroker
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from . import natsfast
from .access import ACCESS, AccessRecorder
from .asyncapi import Contract, asyncapi_document
from .case_cache import CaseCache
from .db import create_pool, ensure_kernel_tables
from .decider import CommandRunner, Decider
from .errors import MigrationNeeded, ProfileError
from .events import EventCatalog, EventRegistry
from .logging import configure_logging
from .metrics import KernelMetrics
from .projector import Projection, ProjectionRunner, Reactor, parked_cases
from .settings import Settings
from .store import EventStore
from .streams import Topology, check_server_profile, ensure_streams
from .web.app import create_app
from .privacy import (ERASED_NOTICE, IndexKey, KeyReplica, KeyRing, MasterKeys,
                      ensure_key_tables)
from .web.auth import TokenService, identity_provider

__all__ = ["ServiceDefinition", "ServiceParts", "Kernel", "main", "serve", "build_app"]

log = structlog.get_logger("bapas.runtime")
# a task still running this long after it was cancelled is logged with its stack (and left:
# the process is about to end); within `bapas up`'s share of a stop for its services
TASK_STOP_SECONDS = 3.0
EX_CONFIG = 78  # sysexits: configuration error


@dataclass
class ServiceParts:
    routers: list[APIRouter] = field(default_factory=list)
    consumers: list[Projection | Reactor] = field(default_factory=list)
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    setup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # before serving


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    title: str
    description: str
    registries: tuple[EventRegistry, ...]
    build: Callable[[Kernel], ServiceParts]
    version: str = "0.1.0"
    contract: Callable[[Topology], Contract] | None = None  # for its AsyncAPI document
    # settings this service needs beyond every service's, checked before it starts
    needs: tuple[Callable[[Settings], object], ...] = ()


def master_keys(settings: Settings) -> MasterKeys:
    """BAPAS_PRIVACY_MASTER_KEYS; in development, one derived from the token secret."""
    if settings.privacy_master_keys is not None:
        return MasterKeys.parse(settings.privacy_master_keys.get_secret_value())
    if settings.development:
        return MasterKeys.development(settings.secret())
    raise ValueError("outside development mode BAPAS_PRIVACY_MASTER_KEYS must be set "
                     "(kid=base64 of 32 random bytes; `bapas privacy new-key` makes one)")


def index_key(settings: Settings) -> IndexKey:
    """BAPAS_PRIVACY_INDEX_KEY; in development, one derived from the token secret."""
    if settings.privacy_index_key is not None:
        return IndexKey.parse(settings.privacy_index_key.get_secret_value())
    if settings.development:
        return IndexKey.development(settings.secret())
    raise ValueError("outside development mode BAPAS_PRIVACY_INDEX_KEY must be set (at "
                     "least 32 random characters, e.g. `openssl rand -base64 32`; set it "
                     "once: the NIK index is named with it)")


class Kernel:
    """The connections and kernel objects of one service process."""

    def __init__(self, *, service: str, settings: Settings, nc: NATS, pool: asyncpg.Pool,
                 registries: tuple[EventRegistry, ...], broker: NatsBroker | None = None
                 ) -> None:
        self.service = service
        self.settings = settings
        self.topology = settings.topology
        self.schema = self.topology.schema(service)
        self.nc = nc
        self.broker = broker  # FastStream's, for the reactors' subscribers; started by start()
        self.pool = pool
        self.metrics = KernelMetrics()
        self.catalog = EventCatalog(ACCESS, *registries)
        # this service's copy of its cases in its own schema, so a long case loads from
        # the copy and the stream's last message (the copy is checked against it)
        self.case_cache = CaseCache(pool, self.schema, metrics=self.metrics)
        # the persons' data keys: personal values are sealed per person (shared.privacy);
        # where offices keep databases of their own, keys are also shared over KEYS
        self.keys = KeyRing(pool, self.topology.schema("privacy"), master_keys(settings))
        self.store = EventStore(nc, self.topology, self.catalog, metrics=self.metrics,
                                cache=self.case_cache, keys=self.keys)
        # where every office's cases can be read: on an office's leaf, the hub's copy (not
        # cached: another domain's streams, and cases this service does not write)
        self.national_store = (
            EventStore(nc, self.topology, self.catalog, metrics=self.metrics,
                       api_prefix=f"$JS.{settings.hub_domain}.API", keys=self.keys)
            if self.topology.office else self.store)
        if self.topology.replicated_keys:
            readers = [self.store, *([self.national_store] if self.topology.office else [])]
            self.keys.replica = KeyReplica(nc.jetstream(), self.topology, readers)
        self.tokens = TokenService(settings.secret(), settings.jwt_issuer,
                                   provider=identity_provider(settings))
        self.access = AccessRecorder(nc, self.topology, service, pool=pool, schema=self.schema)
        self.runners: list[ProjectionRunner] = []
        self.profile_problem: str | None = None
        self._tasks: list[asyncio.Task] = []

    @classmethod
    async def connect(cls, service: str, settings: Settings,
                      registries: tuple[EventRegistry, ...]) -> Kernel:
        topology = settings.topology
        await check_server_profile(settings.monitor_url)
        nc = await connect_nats(settings.nats_url, f"bapas-{service}")
        broker = subscriber_broker(settings.nats_url, f"bapas-{service}-subscribers")
        try:
            await ensure_streams(nc.jetstream(), topology, settings.stream_replicas)
            pool = await create_pool(settings.dsn, max_size=20)
        except BaseException:
            await _quietly_close(broker, nc)
            raise
        async with pool.acquire() as conn:
            await ensure_kernel_tables(conn, topology.schema(service))
            await ensure_key_tables(conn, topology.schema("privacy"))
        return cls(service=service, settings=settings, nc=nc, pool=pool, registries=registries,
                   broker=broker)

    def command_runner(self, context: str, decider: Decider) -> CommandRunner:
        return CommandRunner(self.store, context, decider, metrics=self.metrics)

    def projection_runner(self, target: Projection | Reactor) -> ProjectionRunner:
        return ProjectionRunner(target, nc=self.nc, pool=self.pool, topology=self.topology,
                                schema=self.schema, catalog=self.catalog, metrics=self.metrics,
                                batch_size=self.settings.projection_batch,
                                retry_delays=self.settings.projection_retry_delays,
                                broker=self.broker if target.via_faststream else None,
                                hub_domain=self.settings.hub_domain, keys=self.keys)

    async def start(self, parts: ServiceParts) -> None:
        """Start consumers and background jobs; read models exist when this returns."""
        for prepare in parts.setup:
            await prepare()
        if self.broker is not None and any(t.via_faststream for t in parts.consumers):
            await self.broker.start()  # its own connection, only where a subscriber needs it
        for target in parts.consumers:
            runner = self.projection_runner(target)
            await runner.ensure_created()
            self.runners.append(runner)
            self._tasks.append(asyncio.create_task(runner.run(), name=f"consumer:{target.name}"))
        # an erasure anywhere: these persons' keys leave this process's memory at once
        # (a notice missed, by a process down at the time, costs at most the key cache's
        # lifetime: shared.privacy.KEY_CACHE_SECONDS)
        self._erasures = await self.nc.subscribe(
            self.topology.notice(ERASED_NOTICE), cb=self._forget_erased)
        jobs = [*parts.background, self.access.drain]
        if self.keys.replica is not None:
            jobs.append(self.keys.keep_shared)
        if self.topology.leaves:  # at a hub: keep the office leaves' sources moving
            from .offices import LinkKeeper
            jobs.append(LinkKeeper(self.nc, self.topology).run)
        for job in jobs:
            self._tasks.append(asyncio.create_task(_forever(job), name=getattr(job, "__name__", "job")))
        self._tasks.append(asyncio.create_task(self._watch_profile(), name="profile-watch"))

    async def _forget_erased(self, msg: Msg) -> None:
        try:
            subjects = json.loads(msg.data)
        except ValueError:
            return
        if isinstance(subjects, list):
            self.keys.forget(str(s) for s in subjects)

    async def announce_erasure(self, subjects: list[str]) -> None:
        """Tell every process that these persons' keys are destroyed."""
        await self.nc.publish(self.topology.notice(ERASED_NOTICE),
                              json.dumps(subjects).encode())
        await self.nc.flush()

    async def _watch_profile(self, every: float = 60.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await check_server_profile(self.settings.monitor_url)
                self.profile_problem = None
            except ProfileError as exc:
                self.profile_problem = str(exc)
                log.error("durability profile no longer holds", problem=str(exc))

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, str] = {}
        checks["nats"] = "ok" if self.nc.is_connected else "disconnected"
        parked: list[dict[str, Any]] = []
        waiting = 0
        try:
            async with asyncio.timeout(2):
                async with self.pool.acquire() as conn:
                    parked = await parked_cases(conn, self.schema)
                waiting = await self.access.waiting()
            checks["postgres"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["postgres"] = f"unreachable: {type(exc).__name__}"
        checks["durability_profile"] = self.profile_problem or "ok"
        ok = all(v == "ok" for v in checks.values())
        return ok, {"checks": checks,
                    "consumers": [r.status.as_dict() for r in self.runners],
                    "held_cases": parked,
                    "access_records_waiting": waiting,  # for NATS, in the access outbox
                    "degraded": any(p["status"] == "parked" for p in parked)}

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=TASK_STOP_SECONDS)
            for task in stuck:  # what it waits on, for whoever reads the log
                frames = io.StringIO()
                task.print_stack(file=frames)
                log.error("task did not stop when asked", task=task.get_name(),
                          stack=frames.getvalue())
        self._tasks.clear()
        await self.access.close()  # the queued records of reads, before NATS and the pool go
        await self.case_cache.close()  # its last writes, before the pool goes
        # consumers are stopped and every publish was awaited: nothing left to drain
        # (draining waits on the pull subscriptions' open requests)
        await _quietly_close(self.broker, self.nc)
        try:
            await asyncio.wait_for(self.pool.close(), 10)
        except Exception:  # noqa: BLE001 - a connection stuck mid-query must not keep locks
            self.pool.terminate()


async def _forever(job: Callable[[], Awaitable[None]]) -> None:
    """Background jobs (schedulers) must not die silently: restart after an error."""
    while True:
        try:
            await job()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from exc
            log.error("background job failed; restarting", job=getattr(job, "__name__", "?"),
                      exc_info=exc)
            await asyncio.sleep(2)


async def _quietly_close(broker: NatsBroker | None, nc: NATS) -> None:
    if broker is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.stop(), 5)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), 5)


# A server that stops answering without closing its connections (frozen, partitioned) is
# found by missed pings: within about PING_INTERVAL * (MAX_OUTSTANDING_PINGS + 1) seconds the
# client drops it and reconnects to another node. nats-py's default (two minutes) would hold
# every request of a service connected to a frozen cluster node for that long.
PING_INTERVAL = 1.5
MAX_OUTSTANDING_PINGS = 2


def subscriber_broker(url: str, name: str) -> NatsBroker:
    """FastStream's broker, for the subscribers of reactors and notification consumers. It
    declares no stream (our provisioning does) and runs no subscriber until a consumer's
    leader starts one; its per-message logs go to debug, its errors to our log."""
    return NatsBroker(servers=url.split(","), name=name, max_reconnect_attempts=-1,
                      reconnect_time_wait=0.5, connect_timeout=3, graceful_timeout=5,
                      ping_interval=PING_INTERVAL, max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                      logger=logging.getLogger("bapas.faststream"), log_level=logging.DEBUG)


async def connect_nats(url: str, name: str, *, attempts: int = 30) -> NATS:
    natsfast.install()
    last: Exception | None = None
    nc = NATS()

    async def error_cb(exc: Exception) -> None:
        log.warning("nats error", error=str(exc) or type(exc).__name__)

    async def disconnected_cb() -> None:
        if not (nc.is_closed or nc.is_draining):
            log.warning("nats disconnected; reconnecting")

    async def reconnected_cb() -> None:
        log.info("nats reconnected")

    for _ in range(attempts):
        try:
            await nc.connect(servers=url.split(","), name=name, max_reconnect_attempts=-1,
                             reconnect_time_wait=0.5, connect_timeout=3, error_cb=error_cb,
                             ping_interval=PING_INTERVAL,
                             max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                             disconnected_cb=disconnected_cb, reconnected_cb=reconnected_cb)
            return nc
        except Exception as exc:  # noqa: BLE001
            last = exc
            await asyncio.sleep(1)
    raise ConnectionError(f"cannot reach NATS at {_without_password(url)}: {last}")


def _without_password(url: str) -> str:
    """For messages: `nats://user:secret@host` shows as `nats://user:***@host`."""
    return re.sub(r"(//[^:/@,]+):[^@/,]+@", r"\1:***@", url)


def build_app(defn: ServiceDefinition, kernel: Kernel, parts: ServiceParts) -> FastAPI:
    app = create_app(service=defn.name, title=defn.title, description=defn.description,
                     version=defn.version, tokens=kernel.tokens, metrics=kernel.metrics,
                     readiness=kernel.readiness, routers=parts.routers,
                     asyncapi=None if defn.contract is None else lambda: asyncapi_document(
                         defn.title, defn.version, defn.description,
                         defn.contract(kernel.topology)))
    app.state.kernel = kernel
    return app


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful stop, which would skip our own clean-up."""

    @contextlib.contextmanager
    def capture_signals(self):  # noqa: ANN201
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _stop(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def settle_heap() -> None:
    """Take what start-up built (modules, schemas, routes) out of the garbage collector's
    sight, once a service is up: a full collection then walks only what requests allocate.
    `bapas bench audit` saw full collections over the start-up heap pause a 20 ms history
    answer for 60 ms; with the heap frozen they took about a millisecond."""
    gc.collect()
    gc.freeze()


@contextlib.asynccontextmanager
async def started(defn: ServiceDefinition, settings: Settings
                  ) -> AsyncIterator[tuple[Kernel, FastAPI]]:
    """A service as its process runs it: connected and checked, its parts built and
    started, its app ready to serve; closed when the block ends, however it ends."""
    kernel = await Kernel.connect(defn.name, settings, defn.registries)
    try:
        parts = defn.build(kernel)
        app = build_app(defn, kernel, parts)
        await kernel.start(parts)
        yield kernel, app
    finally:
        await kernel.close()
        log.info("stopped")


async def serve(defn: ServiceDefinition, settings: Settings) -> None:
    async with started(defn, settings) as (_, app):
        settle_heap()
        config = uvicorn.Config(app, host=settings.host, port=settings.port(defn.name),
                                http="httptools", log_config=None, access_log=False,
                                lifespan="off",
                                timeout_graceful_shutdown=10)
        server = _Server(config)
        log.info("serving", url=f"http://{settings.host}:{settings.port(defn.name)}")
        await server.serve()
        if not server.started:
            raise SystemExit(f"could not listen on {settings.host}:{settings.port(defn.name)}")


def _run(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop where it is installed (not on Windows): libuv's event loop costs less per
    request and per NATS message than asyncio's own."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def main(defn: ServiceDefinition) -> None:
    """Entry point of `python -m services.<name>`."""
    try:
        settings = Settings()
        master_keys(settings)
        for need in defn.needs:
            need(settings)
    except Exception as exc:  # pydantic's message names every field at fault
        print(f"bapas {defn.name}: invalid settings: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None
    configure_logging(defn.name, fmt=settings.log_format, level=settings.log_level)
    try:
        _run(serve(defn, settings))
    except (ProfileError, MigrationNeeded) as exc:
        log.error("refusing to start", problem=str(exc))
        print(f"bapas {defn.name}: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None
    except (ConnectionError, OSError) as exc:
        log.error("cannot start", error=str(exc))
        print(f"bapas {defn.name}: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
