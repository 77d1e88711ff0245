"""`bapas up`: the whole system on one machine.

Starts an embedded nats-server (JetStream, fsync always), or with `--cluster 3` three of them
routed on loopback with streams of three replicas, and an embedded PostgreSQL under the
data folder unless `BAPAS_NATS_URL` / `BAPAS_DATABASE_URL` point elsewhere; provisions the
streams and schemas; starts each service as its own process; waits until every /readyz
answers; prints one line per service and a development token; restarts a service that dies;
and on Ctrl-C or SIGTERM stops everything, services first, leaving no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import nats.js.errors

from ..settings import SERVICE_PORTS, Settings
from .servers import (NatsCluster, NatsHub, NatsLeaf, NatsServer, PostgresServer,
                      _die_with_parent, _tail, free_port, port_is_free)

__all__ = ["run_platform", "SERVICES", "load_secret", "read_run_file", "service_url"]

SERVICES = tuple(SERVICE_PORTS)
OFFICE_SERVICES = ("registration", "guidance", "supervision")  # what runs on an office's leaf
READY_TIMEOUT = 120.0
STOP_SECONDS = 10.0  # SIGTERM to nothing left running
SERVICES_STOP_SECONDS = 6.0  # of which the services' graceful stop may take this much
DEV_OFFICE = "jaksel"


def load_secret(data: Path, *, create: bool = False) -> str | None:
    """The development token key, kept in the data folder (mode 0600)."""
    path = data / "secret"
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    data.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def service_url(run: dict, service: str, office: str | None = None) -> str | None:
    """A service's URL in the running platform: the office's own when it has a leaf here,
    else the hub's (with --offices), else the one service of that name."""
    known = run.get("services") or {}
    return (known.get(f"{office} {service}") if office else None) or \
        known.get(service) or known.get(f"hub {service}")


def read_run_file(data: Path) -> dict | None:
    try:
        return json.loads((data / "run.json").read_text())
    except (OSError, ValueError):
        return None


@dataclass
class _Deployment:
    """Services that share one nats-server (or cluster) and one database: the whole system,
    the hub of an offices' topology, or one office on its leaf (`office`)."""

    where: str  # "" (the whole system), "hub", or the office code
    nats_url: str
    monitor_url: str
    dsn: str
    services: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)  # BAPAS_OFFICE / BAPAS_LEAF_OFFICES

    def settings(self, base: Settings) -> Settings:
        return base.model_copy(update={
            "office": self.env.get("BAPAS_OFFICE", ""),
            "leaf_offices": self.env.get("BAPAS_LEAF_OFFICES", "")})


@dataclass
class _Service:
    name: str
    port: int
    log: Path
    where: str = ""  # its deployment: "", "hub" or an office code
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def label(self) -> str:
        """`registration`; with offices `hub registration`, `jaksel registration`."""
        return f"{self.where} {self.name}" if self.where else self.name
    restarts: int = 0
    streak: int = 0  # deaths within a minute of their start, in a row
    next_start: float = 0.0
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Embedded:
    """A server `bapas up` runs itself and restarts when it dies, on the same data and ports."""

    name: str
    server: NatsServer | PostgresServer
    restarts: int = 0
    streak: int = 0  # deaths within a minute of their start, in a row
    next_start: float = 0.0
    started: float = field(default_factory=time.monotonic)


class _Stop(Exception):
    pass


class _StopFlag:
    """Set by the signal handler, waited on by the main thread. Not a `threading.Event`:
    its `set()` takes the lock that `wait()` holds for a moment, and a signal handler runs
    in the main thread, so a SIGTERM landing inside `wait()` would deadlock `bapas up` (it
    did, about once in forty stops). Setting a bool takes no lock."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._set and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.05, left))
        return self._set


def _backoff(proc: _Service | _Embedded, lived: float) -> float:
    """Seconds before the next start: growing while it keeps dying, reset after a minute's
    good run. `restarts` keeps counting, for `bapas status`."""
    proc.streak = 0 if lived > 60 else proc.streak + 1
    return min(30.0, 0.5 * 2 ** (proc.streak - 1 if proc.streak else 0))


class Platform:
    def __init__(self, data: Path, cluster: int = 1, offices: tuple[str, ...] = (),
                 office: str | None = None, hub_url: str | None = None) -> None:
        self.data = data.resolve()
        self.cluster = cluster
        self.offices = offices  # `--offices a,b`: a hub and a leaf per office, on this machine
        self.office, self.hub_url = office, hub_url  # `--office X --hub URL`: one office
        self.stop_requested = _StopFlag()
        self.nats: NatsServer | NatsCluster | None = None
        self.pg: PostgresServer | None = None
        self.services: list[_Service] = []
        self.embedded: list[_Embedded] = []
        self.env: dict[str, str] = {}
        self.run_info: dict = {}
        self._leaves: list[NatsLeaf] = []

    # -------------------------------------------------------------------------- lifecycle

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop_requested.set())
        try:
            self._start()
            self._announce()
            self._watch()
            return 0
        except _Stop:
            return 0
        except Exception as exc:  # noqa: BLE001 - say what failed, then clean up
            click.echo(f"bapas up: {exc}", err=True)
            return 1
        finally:
            self._shutdown()

    def _check_stop(self) -> None:
        if self.stop_requested.is_set():
            raise _Stop

    def _start(self) -> None:
        os.environ.setdefault("BAPAS_ENV", "development")
        settings = Settings()
        first = OFFICE_SERVICES if self.office else (*SERVICES, "console")
        busy = [f"{name} port {settings.port(name)} (set BAPAS_{name.upper()}_PORT)"
                for name in first if not port_is_free(settings.port(name))]
        if busy:
            raise RuntimeError("ports in use (is another `bapas up` running?): " + "; ".join(busy))
        self.data.mkdir(parents=True, exist_ok=True)
        (self.data / "logs").mkdir(exist_ok=True)
        secret = (settings.jwt_secret.get_secret_value() if settings.jwt_secret
                  else load_secret(self.data, create=True))
        nats_url, monitor_url = settings.nats_url, settings.monitor_url
        replicas = settings.stream_replicas
        leaves: dict[str, NatsLeaf] = {}
        if self.offices or self.office:
            if "BAPAS_NATS_URL" in os.environ:
                raise RuntimeError("--offices and --office run nats-servers of their own; "
                                   "unset BAPAS_NATS_URL")
            if self.offices and self.cluster > 1:
                hub = NatsCluster(self.data / "nats" / "hub", self.cluster,
                                  ports=[_prefer(4222), _prefer(4223), _prefer(4224)])
                click.echo(f"starting the hub: a {self.cluster}-node nats-server cluster "
                           f"(JetStream domain hub, streams of {self.cluster} replicas) in "
                           f"{hub.data_dir}")
                hub.start()
                self.embedded.extend(_Embedded(f"hub {n.name}", n) for n in hub.nodes)
                self.nats = hub
                nats_url, monitor_url = hub.url, hub.monitor_url
                replicas = max(replicas, self.cluster)
            elif self.offices:
                hub = NatsHub(self.data / "nats" / "hub", port=_prefer(4222),
                              monitor_port=_prefer(8222), leaf_port=_prefer(7422))
                click.echo(f"starting the hub nats-server (JetStream domain hub) in "
                           f"{hub.data_dir}")
                hub.start()
                self.embedded.append(_Embedded("nats hub", hub))
                self.nats = hub
                nats_url, monitor_url = hub.url, hub.monitor_url
            for code in self.offices or (self.office,):
                leaf = NatsLeaf(self.data / "nats" / code, office=code,
                                hub_url=self.hub_url or self.nats.leaf_url,
                                port=None if self.offices else _prefer(4222),
                                monitor_port=None if self.offices else _prefer(8222))
                click.echo(f"starting the {code} leaf nats-server (JetStream domain {code}) "
                           f"in {leaf.data_dir}")
                leaf.start()
                self.embedded.append(_Embedded(f"nats {code}", leaf))
                leaves[code] = leaf
            if self.nats is None:  # one office against a real hub
                self.nats = next(iter(leaves.values()))
        elif "BAPAS_NATS_URL" not in os.environ and self.cluster > 1:
            self.nats = NatsCluster(self.data / "nats", self.cluster,
                                    ports=[_prefer(4222), _prefer(4223), _prefer(4224)])
            click.echo(f"starting a {self.cluster}-node nats-server cluster (JetStream, sync "
                       f"always, streams of {self.cluster} replicas) in {self.nats.data_dir}")
            self.nats.start()
            self.embedded.extend(_Embedded(n.name, n) for n in self.nats.nodes)
            nats_url, monitor_url = self.nats.url, self.nats.monitor_url
            replicas = max(replicas, self.cluster)
        elif "BAPAS_NATS_URL" not in os.environ:
            self.nats = NatsServer(self.data / "nats", port=_prefer(4222), monitor_port=_prefer(8222))
            click.echo(f"starting nats-server (JetStream, sync always) in {self.nats.data_dir}")
            self.nats.start()
            self.embedded.append(_Embedded("nats-server", self.nats))
            nats_url, monitor_url = self.nats.url, self.nats.monitor_url
        self._leaves = list(leaves.values())
        self._check_stop()
        dsn = settings.database_url
        if not dsn:
            self.pg = PostgresServer(self.data / "postgres", port=_prefer(5432))
            click.echo(f"starting PostgreSQL in {self.pg.data_dir}")
            self.pg.start()
            self.embedded.append(_Embedded("postgres", self.pg))
            dsn = self.pg.dsn
        self._check_stop()
        # what runs where: the whole system; or a hub and each office on its leaf
        deployments: list[_Deployment] = []
        if self.offices:
            deployments.append(_Deployment("hub", nats_url, monitor_url, dsn, SERVICES, {
                "BAPAS_LEAF_OFFICES": ",".join(self.offices),
                "BAPAS_STREAM_REPLICAS": str(replicas)}))
        if leaves:
            for code, leaf in leaves.items():
                deployments.append(_Deployment(
                    code, leaf.url, leaf.monitor_url,
                    self._database(dsn, f"bapas_{code}") if self.offices else dsn,
                    OFFICE_SERVICES, {"BAPAS_OFFICE": code, "BAPAS_STREAM_REPLICAS": "1"}))
        else:
            deployments.append(_Deployment("", nats_url, monitor_url, dsn, SERVICES,
                                           {"BAPAS_STREAM_REPLICAS": str(replicas)}))
        self.env = {**os.environ, "BAPAS_ENV": settings.env, "BAPAS_JWT_SECRET": secret,
                    "BAPAS_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
        for dep in deployments:
            asyncio.run(_provision(dep.nats_url, dep.monitor_url, dep.dsn,
                                   dep.settings(settings), int(dep.env["BAPAS_STREAM_REPLICAS"]),
                                   dep.services))
        click.echo("streams and schemas provisioned")
        for dep in deployments:
            for name in dep.services:
                port = (settings.port(name) if dep.where in ("", "hub") or not self.offices
                        else _office_port(self.offices.index(dep.where), name))
                log = f"{dep.where}-{name}.log" if dep.where else f"{name}.log"
                svc = _Service(name, port, self.data / "logs" / log, dep.where, {
                    "BAPAS_NATS_URL": dep.nats_url, "BAPAS_NATS_MONITOR_URL": dep.monitor_url,
                    "BAPAS_DATABASE_URL": dep.dsn, f"BAPAS_{name.upper()}_PORT": str(port),
                    **dep.env})
                self._spawn(svc)
                self.services.append(svc)
        if not self.office:  # the console, beside the whole system (or the hub)
            self._spawn_console(settings, deployments[0])
        self._write_run_file(nats_url, monitor_url, dsn, settings.host, settings.namespace)
        self._wait_ready(settings.host)

    def _spawn_console(self, settings: Settings, dep: _Deployment) -> None:
        """The officers' console, calling the services `bapas up` has just started."""
        urls = {f"BAPAS_{s.name.upper()}_URL": f"http://{settings.host}:{s.port}"
                for s in self.services if s.where == dep.where}
        svc = _Service("console", settings.port("console"), self.data / "logs" / "console.log",
                       "", {**urls, "BAPAS_CONSOLE_PORT": str(settings.port("console"))})
        self._spawn(svc)
        self.services.append(svc)

    def _database(self, dsn: str, name: str) -> str:
        """An office's own database beside the hub's, on the embedded PostgreSQL (as each
        office would have its own on its own machine)."""
        if self.pg is None:
            raise RuntimeError("--offices keeps each office's projections in a database of "
                               "its own on the embedded PostgreSQL; unset BAPAS_DATABASE_URL")
        return self.pg.create_database(name)

    def _spawn(self, svc: _Service) -> None:
        with open(svc.log, "ab") as out:
            svc.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{svc.name}"], env={**self.env, **svc.env},
                stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=lambda: _die_with_parent(signal.SIGTERM))
        svc.started = time.monotonic()

    def _wait_ready(self, host: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        waiting = {s.label: s for s in self.services}
        while waiting:
            self._check_stop()
            for name, svc in list(waiting.items()):
                if svc.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited during start-up (code {svc.proc.returncode});"
                                       f" its log {svc.log} ends with:\n{_tail(svc.log)}")
                if _ready(f"http://{host}:{svc.port}"):
                    del waiting[name]
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {READY_TIMEOUT:.0f}s: {', '.join(waiting)}; "
                                   f"see {self.data / 'logs'}")
            self.stop_requested.wait(0.2)
        self.host = host

    def _announce(self) -> None:
        width = max(len(s.label) for s in self.services)
        for svc in self.services:
            click.echo(f"{svc.label.ljust(width)}  http://{self.host}:{svc.port}")
        from ..web.auth import TokenService
        office = self.office or (self.offices[0] if self.offices else DEV_OFFICE)
        token = TokenService(self.env["BAPAS_JWT_SECRET"]).issue(
            "pk-0007", office, ["pk", "supervisor", "head"])
        click.echo(f"{'token'.ljust(width)}  {token}")
        click.echo(f"(development token: office {office}, roles pk, supervisor, head; "
                   f"`bapas token --office X --role Y` mints others)")
        click.echo(f"logs in {self.data / 'logs'}; Ctrl-C stops everything", nl=True)

    def _watch(self) -> None:
        """Restart a service or an embedded server that dies, with growing pauses if it
        keeps dying; a server comes back on the same data folder and ports."""
        while not self.stop_requested.wait(0.5):
            for svc in self.services:
                self._tend(svc, svc.proc, lambda svc=svc: self._spawn(svc))
            for emb in self.embedded:
                # a postmaster's backends outlive it for a moment and hold its shared
                # memory, which would refuse the next start: its process group ends first
                self._tend(emb, emb.server.proc, emb.server.spawn, end_group=True,
                           note=" on the same data")

    def _tend(self, child: _Service | _Embedded, proc: subprocess.Popen | None,
              spawn: Callable[[], None], *, end_group: bool = False, note: str = "") -> None:
        """One child's turn in the watch: once it has died (`poll()` also reaps it), say
        so and schedule its start; when that time comes, start it again."""
        if proc is None or proc.poll() is None:
            return
        now = time.monotonic()
        if child.next_start == 0.0:
            if end_group:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            delay = _backoff(child, now - child.started)
            child.next_start = now + delay
            click.echo(f"{child.name} exited (code {proc.returncode}); restarting in "
                       f"{delay:.1f}s{note}", err=True)
        elif now >= child.next_start:
            child.restarts += 1
            child.next_start = 0.0
            child.started = now
            spawn()
            self._save_restarts()

    def _save_restarts(self) -> None:
        self.run_info["restarts"] = {
            **{s.label: s.restarts for s in self.services},
            **{e.name: e.restarts for e in self.embedded}}
        (self.data / "run.json").write_text(json.dumps(self.run_info, indent=2))

    def _shutdown(self) -> None:
        for svc in self.services:
            if svc.proc and svc.proc.poll() is None:
                svc.proc.send_signal(signal.SIGTERM)
        # Everything is down within STOP_SECONDS whatever state the servers are in (a
        # service waiting on a dead server, a frozen server): what has not stopped in its
        # share of the time is killed.
        began = time.monotonic()
        deadline = began + SERVICES_STOP_SECONDS
        for svc in self.services:
            if svc.proc is None:
                continue
            try:
                svc.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                svc.proc.kill()
                svc.proc.wait(5)
        servers = [*self._leaves, self.nats, self.pg]
        for server in dict.fromkeys(s for s in servers if s):
            server.stop(timeout=max(0.5, (began + STOP_SECONDS - 1 - time.monotonic())
                                    / (len(servers) - 1)))
        (self.data / "run.json").unlink(missing_ok=True)
        if self.services or self.nats or self.pg:
            click.echo("stopped")

    def _write_run_file(self, nats_url: str, monitor_url: str, dsn: str, host: str,
                        namespace: str) -> None:
        self.run_info = {
            "pid": os.getpid(), "nats_url": nats_url, "nats_monitor_url": monitor_url,
            "database_url": dsn, "namespace": namespace,
            "services": {s.label: f"http://{host}:{s.port}" for s in self.services},
            "offices": {leaf.office: {"url": leaf.url, "monitor_url": leaf.monitor_url}
                        for leaf in self._leaves},
            "leaf_offices": list(self.offices),
            "embedded": [_where(e) for e in self.embedded]}
        self._save_restarts()


def _office_port(i: int, service: str) -> int | None:
    """An office's services: 8111-8113 for the first office, 8121-8123 for the next..."""
    return _prefer(8101 + 10 * (i + 1) + OFFICE_SERVICES.index(service)) or free_port()


def _where(emb: _Embedded) -> dict[str, str]:
    """What `bapas status` needs to show an embedded server: its name, address and check."""
    if isinstance(emb.server, NatsServer):
        return {"name": emb.name, "url": emb.server.url, "monitor_url": emb.server.monitor_url}
    return {"name": emb.name, "url": emb.server.dsn}


def _prefer(port: int) -> int | None:
    """The conventional port when it is free, else any free one."""
    return port if port_is_free(port) else None


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


async def _provision(nats_url: str, monitor_url: str, dsn: str, settings: Settings,
                     replicas: int, services: tuple[str, ...] = SERVICES) -> None:
    from ..db import create_pool, ensure_kernel_tables
    from ..privacy import ensure_key_tables
    from ..runtime import connect_nats
    from ..streams import check_server_profile, ensure_streams

    topology = settings.topology
    await check_server_profile(monitor_url)
    nc = await connect_nats(nats_url, "bapas-up")
    try:
        for attempt in range(60):  # a fresh cluster may still be placing its meta leader
            try:
                await ensure_streams(nc.jetstream(), topology, replicas)
                break
            except nats.js.errors.ServiceUnavailableError:
                if attempt == 59:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await nc.close()
    pool = await create_pool(dsn, max_size=2)
    try:
        async with pool.acquire() as conn:
            for name in services:
                await ensure_kernel_tables(conn, topology.schema(name))
            await ensure_key_tables(conn, topology.schema("privacy"))
    finally:
        await pool.close()


def run_platform(data: Path, cluster: int = 1, offices: tuple[str, ...] = (),
                 office: str | None = None, hub_url: str | None = None) -> int:
    return Platform(data, cluster, offices, office, hub_url).run()
