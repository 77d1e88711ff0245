"""`bapas bench api` and `bapas bench wave`: the running system over HTTP, as offices use it.

What a user feels is measured where they feel it, through the services' HTTP APIs (DESIGN
§9), and each figure is set against a raw reference measured in the same run:

- latencies against `GET /v1/ping`, a route that does nothing once the token is checked,
  called in the same mix by the same callers at the same time: what HTTP, the token check,
  the middleware and this driver cost, so that a ratio says what the route itself adds;
- write rates against raw pipelined JetStream publishes (256 in flight) of 1 KB events with
  our CloudEvents headers, into a scratch stream on the same nats-server (whose
  `sync_interval: always` fsyncs every message), deleted afterwards;
- with `--peer`, registrations against the same workload written with the `eventsourcing`
  library on the same PostgreSQL (shared/bench/peer.py), at the same concurrency.

`bench api` runs, in this order: a seed of cases ready for visits and stage advances; raw
publishes; registrations only, C callers (the registration target); raw publishes again
once the system has caught up (the raw figure is the mean of both); the peer; then an
office's mixed day for `--seconds`: registrations, reports and visits, case reads in each
service, worklists, compliance boards, TPP decisions, stage advances and programs, and pings.

`bench wave` registers N clients through HTTP, then times how long every projection and
reaction of every service takes to catch up (each service's /readyz: every consumer a leader
or standby, nothing being built, every lag 0, three polls in a row).

Both drive the system `bapas up` runs from the data folder, or the one named by --url and
the environment; when nothing answers they start one of their own in a temporary folder on
free ports and stop it at the end. The driver is one Python process on the same machine as
the servers, so its own CPU is part of every figure (the output says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from ..settings import SERVICE_PORTS
from ..streams import default_monitor_url
from ._common import Figure, Stopwatch, Target, format_table, machine_summary, percentile, progress

__all__ = ["run_api", "run_wave", "System", "find_system"]

OFFICE = "jaksel"
RAW_IN_FLIGHT = 256
RAW_MESSAGES = 5_000
IDLE_PINGS = 200
SEED_PER_CALLER = 2         # cases prepared for visits and stage advances, per caller
REQUEST_TIMEOUT = 60.0
SETTLE_TIMEOUT = 300.0
CALM_POLLS = 3              # consecutive polls with every lag 0
POLL_EVERY = 0.5

TARGET_REGISTRATIONS = Target(min_ratio=0.25)  # of raw pipelined publishes/s
TARGET_READ_P50 = Target(max_ratio=3.0)        # of the no-op route's p50
TARGET_READ_P99 = Target(max_ratio=5.0)        # of the no-op route's p99
TARGET_PEER = Target(min_ratio=1.5)            # of the eventsourcing peer's registrations/s
TARGET_CATCH_UP = Target(max_value=120.0)
TARGET_CATCH_UP_STRETCH = Target(max_value=60.0)

PING = "GET /v1/ping"
REGISTER = "POST /v1/clients"
READS = ("GET /v1/clients/{id}", "GET /v1/cases/{id}", "GET /v1/supervision/{id}",
         "GET /v1/officers/{id}/worklist", "GET /v1/compliance")
WRITES = (REGISTER, "POST /v1/supervision/{id}/visits", "POST /v1/cases/{id}/tpp-decisions",
          "POST /v1/cases/{id}/stage", "POST /v1/cases/{id}/programs")
# an office's day: what one caller does next, by weight
MIX = (("register", 15), ("report", 20), ("read_client", 12), ("read_case", 10),
       ("read_supervision", 10), ("worklist", 4), ("compliance", 4), ("advance", 5),
       ("ping", 20))


class BenchError(Exception):
    """The system is not there, refuses what the bench needs, or cannot be started."""


# ------------------------------------------------------------------------------ the system

@dataclass
class System:
    urls: dict[str, str]
    secret: str
    nats_url: str | None
    monitor_url: str | None
    dsn: str | None
    where: str  # how it was found, for the report


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=3):
            return True
    except urllib.error.HTTPError:
        return True  # it answers, if not ready: the bench waits for that
    except OSError:
        return False


def find_system(data: Path, url: str | None) -> System | None:
    """The running system named by --url and the environment, or by <data>/run.json (as
    the other commands find it); None when its registration service does not answer."""
    from ..local.up import load_secret, read_run_file, service_url

    run = read_run_file(data) or {}
    urls = {}
    for name, port in SERVICE_PORTS.items():
        given = url if name == "registration" else os.environ.get(f"BAPAS_{name.upper()}_URL")
        default = f"http://127.0.0.1:{os.environ.get(f'BAPAS_{name.upper()}_PORT', port)}"
        urls[name] = (given or service_url(run, name, None) or default).rstrip("/")
    if not _answers(urls["registration"]):
        return None
    secret = load_secret(data)
    if secret is None and os.environ.get("BAPAS_ENV") == "development":
        secret = os.environ.get("BAPAS_JWT_SECRET")
    if not secret:
        raise BenchError(f"no development secret in {data} (nor BAPAS_JWT_SECRET with "
                         "BAPAS_ENV=development): the bench mints officers' tokens from it")
    nats_url = os.environ.get("BAPAS_NATS_URL") or run.get("nats_url")
    monitor = (os.environ.get("BAPAS_NATS_MONITOR_URL") or run.get("nats_monitor_url")
               or (default_monitor_url(nats_url) if nats_url else None))
    dsn = os.environ.get("BAPAS_DATABASE_URL") or run.get("database_url")
    where = f"running ({data / 'run.json'})" if run else "running (--url and environment)"
    return System(urls, secret, nats_url, monitor, dsn, where)


@contextlib.contextmanager
def the_system(data: Path, url: str | None) -> Iterator[System]:
    """The running system, or one of our own (stopped on the way out, also on Ctrl-C)."""
    found = find_system(data, url)
    if found is not None:
        yield found
        return
    if url:
        raise BenchError(f"nothing answers at {url}")
    from ..local.faults import LocalSystem

    with tempfile.TemporaryDirectory(prefix="bapas-bench-api-") as tmp:
        system = LocalSystem(Path(tmp) / "data")
        progress(f"no system answers for {data}: starting `bapas up` in {tmp} on free ports")
        try:
            system.start()
            run = system.run
            yield System(dict(system.urls), system.secret, run["nats_url"],
                         run.get("nats_monitor_url"), run["database_url"],
                         f"started by the bench in {tmp}, stopped at the end")
        finally:
            progress("stopping the system the bench started")
            system.stop()


# ------------------------------------------------------------------------------ the calls

@dataclass
class Calls:
    """Every call's latency by route, and what was refused."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    refused: Counter = field(default_factory=Counter)

    def count(self, route: str) -> int:
        return len(self.latencies.get(route, ()))

    def sorted(self, route: str) -> list[float]:
        return sorted(self.latencies.get(route, ()))


@dataclass(frozen=True, slots=True)
class Answer:
    """A measured call's answer, read whole."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class Driver:
    """The officers' HTTP client: development tokens per officer, and two connection pools.

    The measured calls go through aiohttp. httpx's AsyncClient cost about 2.9 ms of CPU per
    request with 32 callers on this machine, aiohttp 0.16 ms (the same requests to a bare
    asyncio server). The driver shares the cores with the servers, so httpx took about as
    much CPU as a registration in the whole system and the figures showed the driver.
    httpx stays for what is not measured: seeding through the demo's client, lag polls."""

    def __init__(self, system: System, http: httpx.AsyncClient,
                 session: aiohttp.ClientSession) -> None:
        from ..local.demo import Staff

        self.system = system
        self.http = http
        self.session = session
        self.staff = Staff(OFFICE, "jaktim", system.secret)
        self.calls = Calls()

    def use(self, calls: Calls) -> None:
        self.calls = calls

    async def call(self, route: str, method: str, service: str, path: str, token: str,
                   body: Any = None, ok: tuple[int, ...] = (200,)) -> Answer | None:
        url = self.system.urls[service] + path
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            async with self.session.request(method, url, data=data, headers=headers) as answer:
                r = Answer(answer.status, await answer.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BenchError(f"{method} {url}: no answer ({type(exc).__name__}); is the system "
                             "still running?") from None
        elapsed = (time.perf_counter() - started) * 1000
        if r.status_code in ok:
            self.calls.latencies[route].append(elapsed)
            return r
        rule = ""
        with contextlib.suppress(ValueError, AttributeError):
            rule = r.json().get("rule") or ""
        self.calls.refused[(route, r.status_code, rule)] += 1
        if r.status_code in (401, 403):
            raise BenchError(f"{method} {url} answered {r.status_code}: {r.text[:300]}")
        return None


class Bodies:
    """Registration bodies from the demo's generator: plausible people with valid, unique
    NIKs, their guidance periods moved to include today (visits are logged today)."""

    def __init__(self, seed: int) -> None:
        from ..local.demo import Generator, office_info

        self.today = datetime.now(UTC).date()
        self.gen = Generator(OFFICE, office_info(OFFICE), seed, self.today)
        self.rng = random.Random(seed)
        self.i = 0

    def plan(self):  # noqa: ANN201 - a demo ClientPlan
        from ..local.demo import PROGRAM_WEIGHTS, _weighted

        g, r = self.gen, self.rng
        self.i += 1
        p = g.plan(self.i, _weighted(g.rng, PROGRAM_WEIGHTS), "ACTIVE",
                   ("COMPLIANT", 0, None, None), 1_000)
        start = self.today - timedelta(days=r.randint(10, 120))
        p.start = start
        p.end = start + timedelta(days=max((p.end - p.start).days, 300))
        p.decision = g.decision(p.program, p.origin, start - timedelta(days=r.randint(2, 21)),
                                p.narcotics, p.child)
        p.officer = p.officer or "pk-0001"
        p.stage = "AWAL"
        return p

    def body(self) -> tuple[dict[str, Any], str]:
        from ..local.demo import registration_body

        p = self.plan()
        return registration_body(p), p.officer


async def register(d: Driver, bodies: Bodies) -> tuple[str, str] | None:
    """One registration by the client's officer: (client id, officer), or None if refused."""
    body, officer = bodies.body()
    r = await d.call(REGISTER, "POST", "registration", "/v1/clients", d.staff.pk(officer),
                     body, ok=(201,))
    return (r.json()["client_id"], officer) if r is not None else None


async def in_parallel(callers: int, work: Callable[[int], Awaitable[bool]]) -> None:
    """`callers` loops, each calling `work(caller)` until it answers False."""

    async def loop(i: int) -> None:
        while await work(i):
            pass

    await asyncio.gather(*(loop(i) for i in range(callers)))


def _http(callers: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=callers + 8, max_keepalive_connections=callers + 8)
    return httpx.AsyncClient(timeout=httpx.Timeout(REQUEST_TIMEOUT), limits=limits)


def _session(callers: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=callers + 8),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))


# --------------------------------------------------------------------------- registrations

async def register_many(d: Driver, bodies: Bodies, n: int, callers: int,
                        tick: Callable[[int], None] | None = None) -> tuple[list, float]:
    """n registrations answered 201 (a refused one is counted and another person sent),
    `callers` at a time; (accepted, seconds)."""
    accepted: list[tuple[str, str]] = []
    started = [0]
    attempts_left = [n * 2]

    async def one(_: int) -> bool:
        if started[0] >= n or attempts_left[0] <= 0:
            return False
        started[0] += 1
        attempts_left[0] -= 1
        got = await register(d, bodies)
        if got is None:
            started[0] -= 1  # refused (a NIK held by an earlier run): another person instead
        else:
            accepted.append(got)
            if tick:
                tick(len(accepted))
        return True

    with Stopwatch() as sw:
        await in_parallel(callers, one)
    return accepted, sw.seconds


# ----------------------------------------------------------------------------- catching up

async def lag_view(http: httpx.AsyncClient, urls: dict[str, str]) -> tuple[int | None, list[str]]:
    """(total lag, what is not caught up) over every consumer of every service."""
    total: int | None = 0
    busy: list[str] = []
    for name, url in urls.items():
        try:
            doc = (await http.get(url + "/readyz", timeout=5)).json()
        except (httpx.HTTPError, ValueError) as exc:
            busy.append(f"{name}: {type(exc).__name__}")
            total = None
            continue
        if doc.get("status") != "ready":
            busy.append(f"{name}: {doc.get('status')}")
        for c in doc.get("consumers") or []:
            lags = (c.get("lag") or {}).values()
            if c.get("role") not in ("leader", "standby") or c.get("building") or any(
                    lag != 0 for lag in lags):
                busy.append(f"{name} {c['name']}: {c.get('role')}, lag {c.get('lag')}")
            if c.get("role") == "leader" and total is not None:
                if any(lag is None for lag in lags):
                    total = None
                else:
                    total += sum(lags)
    return total, busy


async def caught_up(http: httpx.AsyncClient, urls: dict[str, str], timeout: float,
                    show: Callable[[int | None, float], None] | None = None,
                    since: float | None = None) -> float:
    """Seconds from `since` (a time.monotonic(); default now) until every consumer of every
    service had nothing left to apply, as the first of CALM_POLLS polls in a row saw it
    (polls are POLL_EVERY apart: that is the figure's resolution)."""
    began = time.monotonic() if since is None else since
    calm_since: float | None = None
    calm = 0
    busy: list[str] = []
    while time.monotonic() - began < timeout:
        polled = time.monotonic()
        total, busy = await lag_view(http, urls)
        if busy:
            calm, calm_since = 0, None
        else:
            calm += 1
            calm_since = calm_since if calm_since is not None else polled
            if calm >= CALM_POLLS:
                return calm_since - began
        if show:
            show(total, time.monotonic() - began)
        await asyncio.sleep(POLL_EVERY)
    raise BenchError(f"not caught up after {timeout:.0f}s: " + "; ".join(busy[:8]))


class Bar:
    """A progress bar on stderr (a line now and then when stderr is not a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, max(1, total)
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.shown = -1.0

    def show(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        if not self.tty:
            if now - self.shown >= 5 or done >= self.total:
                self.shown = now
                progress(f"{self.label}: {done:,}/{self.total:,} {note}".rstrip())
            return
        if now - self.shown < 0.2 and done < self.total:
            return
        self.shown = now
        width = 30
        filled = min(width, width * done // self.total)
        print(f"\r  .. {self.label} [{'#' * filled}{'-' * (width - filled)}] {done:,}/"
              f"{self.total:,} {now - self.started:6.1f}s {note:<24}", end="", file=sys.stderr,
              flush=True)

    def end(self) -> None:
        if self.tty:
            print(file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ raw publishes

async def raw_publishes(nats_url: str, count: int) -> float:
    """Pipelined publishes (RAW_IN_FLIGHT in flight) of 1 KB events with our headers into a
    scratch stream on the system's nats-server, deleted afterwards: messages/s."""
    import nats

    from ..streams import ensure_streams, Topology
    from .kernel import CONTEXT, case_by_case, case_refs, publish_all, raw_cases

    topology = Topology(f"benchapi_{secrets.token_hex(4)}")
    nc = await nats.connect(nats_url, max_reconnect_attempts=3, pending_size=32 * 1024 * 1024)
    js = nc.jetstream()
    try:
        await ensure_streams(js, topology, contexts=(CONTEXT,))
        messages = case_by_case(raw_cases(topology, case_refs("raw", -(-count // 5))), 5)
        await publish_all(js, messages[:200], RAW_IN_FLIGHT)  # the stream's first block
        with Stopwatch() as sw:
            await publish_all(js, messages[200:], RAW_IN_FLIGHT)
        return sw.rate(len(messages) - 200)
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(topology.stream(CONTEXT))
        await nc.close()


async def nats_sync(monitor_url: str | None) -> str:
    if not monitor_url:
        return "nats-server unknown"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            varz = (await http.get(monitor_url.rstrip("/") + "/varz")).json()
    except (httpx.HTTPError, ValueError):
        return "nats-server (no /varz)"
    sync = bool(((varz.get("jetstream") or {}).get("config") or {}).get("sync_always"))
    return f"nats-server {varz.get('version')} ({'sync_interval: always' if sync else 'NOT sync always'})"


# ------------------------------------------------------------------------- the seeded cases

@dataclass
class Case:
    client_id: str
    officer: str
    plan: Any
    stage: str = "AWAL"


async def seed_cases(d: Driver, bodies: Bodies, n: int, callers: int) -> list[Case]:
    """n clients ready for the day: registered, their guidance and supervision cases open,
    a litmas and the AWAL program (so a TPP decision can move them on), a reporting plan."""
    from ..local.demo import Api, Demo, Today

    api = Api(d.system.urls, d.http)
    demo = Demo(OFFICE, bodies.gen.info, api, d.staff, Today(), secrets.token_hex(6))
    plans = [bodies.plan() for _ in range(n)]
    cases: list[Case] = []
    todo = iter(plans)

    async def one(_: int) -> bool:
        from ..local.demo import registration_body

        p = next(todo, None)
        if p is None:
            return False
        rng = random.Random(p.seed)
        me = d.staff.pk(p.officer)
        reg = await api.call("POST", "registration", "/v1/clients", me,
                             json=registration_body(p), ok=(201,))
        cid = reg["client_id"]
        await api.wait("guidance", f"/v1/cases/{cid}", me, what="the guidance case")
        await api.call("POST", "guidance", f"/v1/cases/{cid}/litmas", me, json=demo.litmas(p, rng))
        await api.call("POST", "guidance", f"/v1/cases/{cid}/programs", me, json={
            "stage": "AWAL", "activities": demo.activities(p, "AWAL", rng)})
        await api.wait("supervision", f"/v1/supervision/{cid}", me, what="the supervision case")
        await api.call("PUT", "supervision", f"/v1/supervision/{cid}/plan", me, json={
            "interval_days": p.interval, "grace_days": 3,
            "first_due_on": (bodies.today + timedelta(days=p.interval)).isoformat()})
        cases.append(Case(cid, p.officer, p))
        return True

    await in_parallel(min(callers, n), one)
    return cases


# ------------------------------------------------------------------------------ the day

class Day:
    """One office's mixed day, C callers at once, for a number of seconds."""

    def __init__(self, d: Driver, bodies: Bodies, cases: list[Case],
                 registered: list[tuple[str, str]]) -> None:
        self.d, self.bodies = d, bodies
        self.cases = cases
        self.registered = list(registered) + [(c.client_id, c.officer) for c in cases]
        self.advancing: deque[Case] = deque(c for c in cases if c.stage != "AKHIR")
        self.rng = random.Random(7)
        self.demo: Any = None  # the demo's request builders (programs), set in run()
        ops, weights = zip(*MIX, strict=True)
        self.ops = [getattr(self, op) for op in ops]
        self.weights = list(weights)

    async def run(self, callers: int, seconds: float) -> float:
        from ..local.demo import Api, Demo, Today

        self.demo = Demo(OFFICE, self.bodies.gen.info, Api(self.d.system.urls, self.d.http),
                         self.d.staff, Today(), "bench")
        deadline = time.monotonic() + seconds

        async def step(_: int) -> bool:
            if time.monotonic() >= deadline:
                return False
            op = self.rng.choices(self.ops, self.weights)[0]
            await op()
            return True

        with Stopwatch() as sw:
            await in_parallel(callers, step)
        return sw.seconds

    def _case(self) -> Case:
        return self.rng.choice(self.cases)

    async def register(self) -> None:
        got = await register(self.d, self.bodies)
        if got:
            self.registered.append(got)

    async def report(self) -> None:
        c = self._case()
        occurred = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        if self.rng.random() < 0.6:
            body = {"kind": "LAPOR_DIRI", "occurred_at": occurred, "outcome": "MET_COMPLIED",
                    "notes": "Klien lapor diri; kondisi baik."}
        else:
            body = {"kind": "KUNJUNGAN_RUMAH", "occurred_at": occurred,
                    "outcome": "MET_COMPLIED",
                    "notes": "Bertemu klien dan keluarga; klien sudah bekerja."}
        await self.d.call("POST /v1/supervision/{id}/visits", "POST", "supervision",
                          f"/v1/supervision/{c.client_id}/visits", self.d.staff.pk(c.officer),
                          body)

    async def read_client(self) -> None:
        client_id, officer = self.rng.choice(self.registered)
        await self.d.call("GET /v1/clients/{id}", "GET", "registration",
                          f"/v1/clients/{client_id}", self.d.staff.pk(officer))

    async def read_case(self) -> None:
        c = self._case()
        await self.d.call("GET /v1/cases/{id}", "GET", "guidance", f"/v1/cases/{c.client_id}",
                          self.d.staff.pk(c.officer))

    async def read_supervision(self) -> None:
        c = self._case()
        await self.d.call("GET /v1/supervision/{id}", "GET", "supervision",
                          f"/v1/supervision/{c.client_id}", self.d.staff.pk(c.officer))

    async def worklist(self) -> None:
        officer = self._case().officer
        await self.d.call("GET /v1/officers/{id}/worklist", "GET", "guidance",
                          f"/v1/officers/{officer}/worklist", self.d.staff.pk(officer))

    async def compliance(self) -> None:
        officer = self._case().officer
        await self.d.call("GET /v1/compliance", "GET", "supervision",
                          f"/v1/compliance?officer_id={officer}", self.d.staff.pk(officer))

    async def advance(self) -> None:
        """The TPP approves the next stage, the case moves on, its program is drawn up."""
        from ..local.demo import STAGES

        if not self.advancing:
            return await self.report()
        c = self.advancing.popleft()  # one caller per case: no self-made conflicts
        try:
            me = self.d.staff.pk(c.officer)
            nxt = STAGES[STAGES.index(c.stage) + 1]
            today = datetime.now(UTC).date()
            r = await self.d.call("POST /v1/cases/{id}/tpp-decisions", "POST", "guidance",
                                  f"/v1/cases/{c.client_id}/tpp-decisions", me, {
                                      "subject": "STAGE", "outcome": "APPROVED",
                                      "met_on": (today - timedelta(days=1)).isoformat(),
                                      "members": ["Kepala Bapas (ketua)", "Kasubsi BK "
                                                  "(sekretaris)"],
                                      "notes": f"Disetujui masuk tahap {nxt.lower()}."})
            if r is None:
                return None
            r = await self.d.call("POST /v1/cases/{id}/stage", "POST", "guidance",
                                  f"/v1/cases/{c.client_id}/stage", me,
                                  {"to_stage": nxt, "tpp_decision_id": r.json()["decision_id"]})
            if r is None:
                return None
            c.stage = nxt
            await self.d.call("POST /v1/cases/{id}/programs", "POST", "guidance",
                              f"/v1/cases/{c.client_id}/programs", me, {
                                  "stage": nxt, "activities": self.demo.activities(
                                      c.plan, nxt, random.Random(c.plan.seed))})
        finally:
            if c.stage != "AKHIR":
                self.advancing.append(c)
        return None

    async def ping(self) -> None:
        service = self.rng.choice(("registration", "guidance", "supervision"))
        await self.d.call(PING, "GET", service, "/v1/ping", self.d.staff.pk("pk-0001"),
                          ok=(204,))


# ------------------------------------------------------------------------------- reporting

def route_table(calls: Calls, seconds: float, raw_rate: float) -> str:
    ping = calls.sorted(PING)
    p50_ref, p99_ref = percentile(ping, 0.5), percentile(ping, 0.99)
    header = ("route", "count", "refused", "p50 ms", "×no-op", "p99 ms", "×no-op", "rate/s",
              "×raw publish")
    rows = [header]
    refused = Counter()
    for (route, _, _), n in calls.refused.items():
        refused[route] += n
    for route in (PING, *READS, *WRITES):
        lat = calls.sorted(route)
        if not lat and not refused[route]:
            continue
        p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
        rate = len(lat) / seconds if seconds else 0.0
        rows.append((route, f"{len(lat):,}", f"{refused[route]:,}", f"{p50:.2f}",
                     "" if route == PING else f"{p50 / p50_ref:.2f}", f"{p99:.2f}",
                     "" if route == PING else f"{p99 / p99_ref:.2f}", f"{rate:,.1f}",
                     f"{rate / raw_rate:.3f}" if route in WRITES and raw_rate else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def refusals(calls: Calls) -> list[str]:
    return [f"  refused: {route} HTTP {status} {rule}: {n}"
            for (route, status, rule), n in sorted(calls.refused.items())]


def header(title: str, system: System, sync: str, callers: int) -> None:
    print(title)
    print(f"  machine     {machine_summary()}")
    print(f"  system      {system.urls['registration']} ... ({system.where})")
    print(f"  {sync}")
    print(f"  driver      {callers} callers, one aiohttp session (keep-alive pool) in one "
          f"process on the same machine: it shares the {os.cpu_count()} cores with the servers",
          flush=True)


# ------------------------------------------------------------------------------ bench api

def run_api(*, data: Path, url: str | None, callers: int, registrations: int, seconds: float,
            peer: bool) -> int:
    if peer:
        try:
            import eventsourcing  # noqa: F401
        except ImportError:
            print("bapas bench api --peer needs the `eventsourcing` library: "
                  "pip install -e '.[bench]' (make installs it)", file=sys.stderr)
            return 2
    return _guard(lambda: _with_system(data, url, lambda s: _api(
        s, callers, registrations, seconds, peer)))


def run_wave(*, data: Path, url: str | None, callers: int, clients: int) -> int:
    return _guard(lambda: _with_system(data, url, lambda s: _wave(s, callers, clients)))


def _guard(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except BenchError as exc:
        print(f"bapas bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: whatever the bench started is stopped", file=sys.stderr)
        return 130


def _with_system(data: Path, url: str | None, main: Callable[[System], Awaitable[int]]) -> int:
    with the_system(data, url) as system:
        return asyncio.run(main(system))


async def _api(system: System, callers: int, registrations: int, seconds: float,
               peer: bool) -> int:
    if not system.nats_url:
        raise BenchError("the raw reference publishes to the system's nats-server: give its "
                         "URL in BAPAS_NATS_URL (or run the system with `bapas up`)")
    if peer and not system.dsn:
        raise BenchError("the peer runs on the system's PostgreSQL: give BAPAS_DATABASE_URL")
    header("bapas bench api", system, await nats_sync(system.monitor_url), callers)
    bodies = Bodies(random.SystemRandom().randrange(1, 10**9))
    figures: list[Figure] = []
    async with _http(callers) as http, _session(callers) as session:
        d = Driver(system, http, session)
        await caught_up(http, system.urls, SETTLE_TIMEOUT)
        progress(f"seeding {SEED_PER_CALLER * callers} cases ready for visits and advances")
        cases = await seed_cases(d, bodies, SEED_PER_CALLER * callers, callers)
        await caught_up(http, system.urls, SETTLE_TIMEOUT)

        raw1 = await raw_publishes(system.nats_url, RAW_MESSAGES)
        progress(f"raw pipelined publishes: {raw1:,.0f}/s")
        only = Calls()
        d.use(only)
        bar = Bar("registrations only", registrations)
        accepted, took = await register_many(d, bodies, registrations, callers,
                                             lambda n: bar.show(n))
        ended = time.monotonic()
        bar.end()
        reg_rate = len(accepted) / took
        progress(f"registrations: {reg_rate:,.0f}/s; waiting for the projections")
        settle = await caught_up(http, system.urls, SETTLE_TIMEOUT, since=ended)
        raw2 = await raw_publishes(system.nats_url, RAW_MESSAGES)
        raw = (raw1 + raw2) / 2
        progress(f"caught up {settle:.1f}s after; raw pipelined publishes: {raw2:,.0f}/s")

        peer_rate = None
        if peer:
            progress(f"the eventsourcing peer: {registrations:,} registrations, {callers} "
                     "threads")
            peer_rate = await asyncio.to_thread(run_peer, system.dsn, bodies, registrations,
                                                callers)
            progress(f"peer: {peer_rate:,.0f}/s")

        idle = Calls()  # the floor with nothing queued ahead: one caller on a calm system
        d.use(idle)
        for _ in range(IDLE_PINGS):
            await d.call(PING, "GET", "guidance", "/v1/ping", d.staff.pk("pk-0001"), ok=(204,))

        day_calls = Calls()
        d.use(day_calls)
        progress(f"an office's day: {callers} callers for {seconds:.0f}s")
        day = Day(d, bodies, cases, accepted)
        took_day = await day.run(callers, seconds)

    total = len(cases) + len(accepted) + day_calls.count(REGISTER)
    lat = only.sorted(REGISTER)
    print(f"\nregistrations only, {callers} callers: {len(accepted):,} in {took:.1f}s = "
          f"{reg_rate:,.0f}/s (p50 {percentile(lat, 0.5):.1f} ms, p99 "
          f"{percentile(lat, 0.99):.1f} ms); every projection caught up {settle:.1f}s after")
    print(f"raw reference: js.publish, {RAW_IN_FLIGHT} in flight, 1 KB events with our "
          f"headers, on the system's nats-server: {raw1:,.0f}/s before, {raw2:,.0f}/s after")
    print(f"\nan office's day, {callers} callers, {took_day:.1f}s (latency ratios: to "
          f"{PING} in the same mix; rate ratios: to the raw publishes):")
    print(route_table(day_calls, took_day, raw))
    idle_ping = idle.sorted(PING)
    print(f"({PING} with one caller on the calm system: p50 {percentile(idle_ping, 0.5):.2f} ms,"
          f" p99 {percentile(idle_ping, 0.99):.2f} ms; what the day adds to it is queueing for "
          "the cores)")
    for line in refusals(only) + refusals(day_calls):
        print(line)
    figures.append(Figure(f"registrations/s, {callers} callers", reg_rate, "regs/s",
                          f"js.publish, {RAW_IN_FLIGHT} in flight", raw, TARGET_REGISTRATIONS))
    ping = day_calls.sorted(PING)
    for route in READS:
        lat = day_calls.sorted(route)
        if not lat:
            continue
        figures.append(Figure(f"{route} p50", percentile(lat, 0.5), "ms", f"{PING} p50",
                              percentile(ping, 0.5), TARGET_READ_P50))
        figures.append(Figure(f"{route} p99", percentile(lat, 0.99), "ms", f"{PING} p99",
                              percentile(ping, 0.99), TARGET_READ_P99))
    if peer_rate is not None:
        figures.append(Figure(f"registrations/s, {callers} callers, ours over HTTP", reg_rate,
                              "regs/s", f"eventsourcing peer, {callers} threads", peer_rate,
                              TARGET_PEER))
    print()
    print(format_table(figures))
    if peer_rate is not None:
        print("\nthe peer is called in-process (no HTTP, no validation, no token), ours "
              "through HTTP: the comparison leans the peer's way.")
    print(f"\nregistrations accepted in this run: {total:,} ({len(cases)} seeded, "
          f"{len(accepted):,} registrations only, {day_calls.count(REGISTER):,} in the day)")
    print(f"the driver shares the machine's {os.cpu_count()} cores with the servers: every "
          "figure includes its own CPU.")
    return 0


def run_peer(dsn: str, bodies: Bodies, n: int, callers: int) -> float:
    """The eventsourcing peer on the same PostgreSQL, in a scratch schema dropped after."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    from .peer import PeerRefused, PeerRegistry, peer_env

    schema = f"bench_peer_{secrets.token_hex(4)}"
    work = [bodies.body()[0] for _ in range(n)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    app = PeerRegistry(peer_env(dsn, schema, callers + 2))
    try:
        def one(body: dict[str, Any]) -> bool:
            try:
                app.register(OFFICE, body)
                return True
            except PeerRefused:
                return False

        app.register(OFFICE, bodies.body()[0])  # tables made, book created
        with ThreadPoolExecutor(callers) as pool, Stopwatch() as sw:
            done = sum(pool.map(one, work))
        return sw.rate(done)
    finally:
        app.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# ----------------------------------------------------------------------------- bench wave

async def _wave(system: System, callers: int, clients: int) -> int:
    header(f"bapas bench wave: {clients:,} registrations, then every projection catching up",
           system, await nats_sync(system.monitor_url), callers)
    bodies = Bodies(random.SystemRandom().randrange(1, 10**9))
    async with _http(callers) as http, _session(callers) as session:
        d = Driver(system, http, session)
        await caught_up(http, system.urls, SETTLE_TIMEOUT)
        bar = Bar("registrations", clients)
        accepted, took = await register_many(d, bodies, clients, callers, lambda n: bar.show(n))
        ended = time.monotonic()
        bar.end()
        rate = len(accepted) / took
        progress(f"{len(accepted):,} registrations in {took:.1f}s ({rate:,.0f}/s); "
                 "waiting for every projection")
        first_lag, _ = await lag_view(http, system.urls)
        lagbar = Bar("events left to apply", first_lag or 1)

        def show(total: int | None, elapsed: float) -> None:
            if total is not None:
                lagbar.show(max(0, (first_lag or 0) - total), f"lag {total:,}")

        after = await caught_up(http, system.urls, max(SETTLE_TIMEOUT, clients / 50), show,
                                since=ended)
        lagbar.end()
    lat = d.calls.sorted(REGISTER)
    print(f"\n{len(accepted):,} registrations in {took:.1f}s by {callers} callers "
          f"(p50 {percentile(lat, 0.5):.1f} ms, p99 {percentile(lat, 0.99):.1f} ms); "
          f"lag when the last was answered: {first_lag if first_lag is not None else '?'} "
          "events")
    for line in refusals(d.calls):
        print(line)
    print()
    print(format_table([
        Figure(f"registrations/s, {callers} callers", rate, "regs/s"),
        Figure("all projections caught up, after the last registration", after, "s",
               target=TARGET_CATCH_UP),
        Figure("all projections caught up (stretch)", after, "s",
               target=TARGET_CATCH_UP_STRETCH),
        Figure("wave: first registration to all caught up", took + after, "s")]))
    print(f"\nregistrations accepted in this run: {len(accepted):,}")
    print(f"the driver shares the machine's {os.cpu_count()} cores with the servers: every "
          "figure includes its own CPU.")
    return 0
