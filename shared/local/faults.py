"""`bapas faults`: break a system of its own under load, and count what survived.

Each fault runs against a real `bapas up` (its own data folder and ports, servers and all)
while officers' commands keep arriving over HTTP: registrations, home visits and stage
advances, each with an `Idempotency-Key` and retried the way a careful client retries
(503 and connection errors, for up to a minute). Then, once the system has settled:

- an independent reader of the streams (a plain nats-py consumer and hashlib, none of the
  services' code) finds every command answered 2xx stored exactly once, and every case's
  hash chain intact;
- every projection of every service equals a fresh rebuild of it from the streams (the
  services rebuild, as `bapas rebuild` asks them; the rows before and after must match);
- the longest stretch with no command answered 2xx is measured (a leader election, a
  server's restart).

The faults: each service SIGKILLed while its projections work, the nats-server SIGKILLed,
PostgreSQL SIGKILLed, every consumer handed again what it had applied (an ack lost after
the commit), a poison event in a stream; and on a three-node cluster, one node SIGKILLed
(the platform starts it again and it catches up) and one node frozen with SIGSTOP for 20 s.
`tests/faults/` runs these same injections in `make test`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from nats.js.api import DeliverPolicy

from ..office_time import office_date
from ..projector import request_rebuild
from ..settings import SERVICE_PORTS
from ..streams import Topology
from ..web.auth import TokenService
from .servers import free_port
from .up import load_secret, read_run_file

__all__ = ["LocalSystem", "Row", "FaultRunner", "SINGLE_FAULTS", "CLUSTER_FAULTS", "run",
           "format_table"]

SERVICES = tuple(SERVICE_PORTS)
OFFICE = "jaksel"
WORKERS = 8
PAUSE = 0.04           # between one worker's commands: a busy office, not a flood
ADVANCES_PER_FAULT = 4  # each takes a client prepared beforehand (litmas, program, TPP)
RETRY_FOR = 60.0       # a command is retried this long before the caller gives up
REQUEST_TIMEOUT = 10.0
GENESIS = "0" * 64


# ------------------------------------------------------------------------------- the system

class LocalSystem:
    """`bapas up` as a user runs it, in a data folder of its own, on free ports."""

    def __init__(self, data: Path, cluster: int = 1) -> None:
        self.data = data
        self.cluster = cluster
        self.proc: subprocess.Popen | None = None
        self.ports = {name: free_port() for name in SERVICES}
        self.urls = {name: f"http://127.0.0.1:{p}" for name, p in self.ports.items()}
        self.run: dict[str, Any] = {}
        self.log = data / "bapas-up.log"

    def start(self, timeout: float = 180.0) -> LocalSystem:
        self.data.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("BAPAS_") or k == "BAPAS_LOG_LEVEL"}
        env.update({f"BAPAS_{name.upper()}_PORT": str(p) for name, p in self.ports.items()})
        env["BAPAS_CONSOLE_PORT"] = str(free_port())  # not driven here; off the default port
        env["BAPAS_ENV"] = "development"
        # a fault must show quickly: a poison event parks after short retries
        env["BAPAS_PROJECTION_RETRY_DELAYS"] = "[0.5, 1.0]"
        args = ["up", "--data", str(self.data)]
        if self.cluster > 1:
            args += ["--cluster", str(self.cluster)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from shared.cli import main; main()", *args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bapas up exited ({self.proc.returncode}); see {self.log}:\n"
                                   + self.log.read_text(errors="replace")[-3000:])
            run = read_run_file(self.data)
            if run and all(_ready(u) for u in self.urls.values()):
                self.run = run
                self.secret = load_secret(self.data)
                return self
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"bapas up was not ready in {timeout:.0f}s; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> LocalSystem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- what runs under it

    def token(self, *roles: str, sub: str = "pk-0007", office: str = OFFICE) -> str:
        return TokenService(self.secret).issue(sub, office, list(roles))

    @property
    def nats_url(self) -> str:
        return self.run["nats_url"]

    @property
    def dsn(self) -> str:
        return self.run["database_url"]

    def children(self) -> list[tuple[int, str]]:
        """(pid, command line) of each live process `bapas up` started."""
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                state = stat.rsplit(")", 1)[1].split()[0]
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError, IndexError):
                continue
            if self.proc is not None and ppid == self.proc.pid and state != "Z":
                out.append((int(entry.name), cmd))
        return out

    def pid_of(self, what: str) -> int:
        """A service (`registration`), a NATS node (`nats-server`, `nats-2`) or `postgres`."""
        for pid, cmd in self.children():
            if what in SERVICES and f"-m services.{what}" in cmd:
                return pid
            if what == "postgres" and "postgres" in cmd and " -D " in cmd:
                return pid
            if what.startswith("nats") and "nats-server" in cmd and (
                    what == "nats-server" or f"/{what}/" in cmd):
                return pid
        raise LookupError(f"{what} is not running under bapas up")

    def wait_running(self, what: str, timeout: float = 60.0) -> float:
        """Seconds until `what` runs again (the platform restarts it)."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            with contextlib.suppress(LookupError):
                self.pid_of(what)
                return time.monotonic() - began
            time.sleep(0.2)
        raise TimeoutError(f"{what} was not started again within {timeout:.0f}s")

    def nats_monitors(self) -> list[str]:
        return [e["monitor_url"] for e in self.run.get("embedded", []) if "monitor_url" in e]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


# ------------------------------------------------------------------------------- the load

@dataclass
class Command:
    kind: str            # registration, visit, advance
    key: str
    client_id: str | None = None
    decision_id: str | None = None
    status: int | str | None = None
    answered_at: float | None = None  # monotonic, when it was answered 2xx
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300


@dataclass
class Prepared:
    """A client ready for a stage advance: litmas, program and an approved TPP decision."""

    client_id: str
    decision_id: str
    advanced: bool = False


def _nik(n: int) -> str:
    """A well-formed NIK (region, birth date, serial), a different one for each n."""
    serial, rest = 1 + n % 9999, n // 9999
    return f"317101{1 + rest % 28:02d}{1 + rest // 28 % 12:02d}85{serial:04d}"


def registration_body(n: int, label: str) -> dict[str, Any]:
    start = office_date(datetime.now(UTC)) - timedelta(days=30)
    return {
        "program": "PB",
        "decision": {"number": f"PAS-{n}.PK.01.05.06 Tahun {start.year}",
                     "issued_by": "Direktur Jenderal Pemasyarakatan",
                     "issued_on": (start - timedelta(days=3)).isoformat()},
        "origin_institution": "Lapas Kelas I Cipinang",
        "period": {"start_on": start.isoformat(),
                   "end_on": (start + timedelta(days=365)).isoformat()},
        "person": {"full_name": f"Klien {label} {n}", "nik": _nik(n),
                   "address": "Jl. Kemang Raya No. 5, Jakarta Selatan",
                   "phone": "+6281234567890"},
        "family_contact": {"name": "Budi", "relation": "anak", "phone": "+6281111111111"},
        "officer_id": "pk-0007",
    }


class Officers:
    """HTTP as an office's staff use it, with a careful client's retries."""

    def __init__(self, system: LocalSystem, http: httpx.AsyncClient) -> None:
        self.system = system
        self.http = http
        self.pk = {"Authorization": "Bearer " + system.token("pk", "supervisor", "head")}
        self.tpp = {"Authorization": "Bearer " + system.token("tpp", sub="tpp-ketua")}

    async def send(self, method: str, service: str, path: str, body: Any, *,
                   headers: dict[str, str], cmd: Command | None = None,
                   retry_for: float = RETRY_FOR) -> tuple[int | str, Any]:
        """Until a definite answer (2xx, or 4xx other than 429): 503s, timeouts and refused
        connections are retried with the same Idempotency-Key."""
        url = self.system.urls[service] + path
        deadline = time.monotonic() + retry_for
        status: int | str = "never sent"
        doc: Any = None
        while True:
            if cmd is not None:
                cmd.attempts += 1
            try:
                r = await self.http.request(method, url, json=body, headers=headers,
                                            timeout=REQUEST_TIMEOUT)
                status, doc = r.status_code, _json(r)
                if status < 500 and status != 429:
                    return status, doc
            except httpx.TimeoutException:
                status = "timeout"
            except httpx.TransportError as exc:
                status = type(exc).__name__
            if time.monotonic() > deadline:
                return status, doc
            await asyncio.sleep(0.25)

    async def register(self, cmd: Command, n: int, label: str) -> None:
        cmd.status, doc = await self.send(
            "POST", "registration", "/v1/clients", registration_body(n, label),
            headers={**self.pk, "Idempotency-Key": cmd.key}, cmd=cmd)
        if cmd.ok:
            cmd.client_id = doc["client_id"]

    async def visit(self, cmd: Command) -> None:
        when = datetime.now(UTC) - timedelta(minutes=1)
        cmd.status, _ = await self.send(
            "POST", "supervision", f"/v1/supervision/{cmd.client_id}/visits",
            {"kind": "LAPOR_DIRI", "occurred_at": when.isoformat(), "outcome": "MET_COMPLIED",
             "notes": cmd.key},
            # the notes are sealed in the stream (personal data): the visit is found by the
            # correlation id its event carries in the clear
            headers={**self.pk, "Idempotency-Key": cmd.key, "X-Correlation-Id": cmd.key},
            cmd=cmd)

    async def advance(self, cmd: Command) -> None:
        cmd.status, _ = await self.send(
            "POST", "guidance", f"/v1/cases/{cmd.client_id}/stage",
            {"to_stage": "LANJUTAN", "tpp_decision_id": cmd.decision_id},
            headers={**self.pk, "Idempotency-Key": cmd.key}, cmd=cmd)

    async def prepare(self, n: int) -> Prepared:
        """Register a client and make it ready to advance (before any fault)."""
        key = f"prepare-{n}"
        status, doc = await self.send("POST", "registration", "/v1/clients",
                                      registration_body(n, "siap"),
                                      headers={**self.pk, "Idempotency-Key": key})
        _expect(status, doc, "prepare: register")
        cid = doc["client_id"]
        for service, path in (("guidance", f"/v1/cases/{cid}"),
                              ("supervision", f"/v1/supervision/{cid}")):
            await self._opened(service, path)
        g = f"/v1/cases/{cid}"
        for path, body in (
                ("litmas", {"purpose": "REINTEGRASI", "risk_level": "SEDANG",
                            "needs": ["pekerjaan"], "recommendation": "bimbingan kemandirian",
                            "summary": "klien kooperatif"}),
                ("programs", {"stage": "AWAL", "activities": [
                    {"kind": "KEMANDIRIAN", "approach": "INDIVIDU", "frequency": "MONTHLY",
                     "description": "pelatihan las"}]})):
            status, doc = await self.send("POST", "guidance", f"{g}/{path}", body,
                                          headers={**self.pk, "Idempotency-Key": f"{key}-{path}"})
            _expect(status, doc, f"prepare: {path}")
        status, doc = await self.send(
            "POST", "guidance", f"{g}/tpp-decisions",
            {"subject": "STAGE", "outcome": "APPROVED",
             "met_on": office_date(datetime.now(UTC)).isoformat(),
             "members": ["Kasi BK", "PK Madya"]},
            headers={**self.tpp, "Idempotency-Key": f"{key}-tpp"})
        _expect(status, doc, "prepare: TPP decision")
        return Prepared(cid, doc["decision_id"])

    async def _opened(self, service: str, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                r = await self.http.get(self.system.urls[service] + path, headers=self.pk,
                                        timeout=REQUEST_TIMEOUT)
                if r.status_code == 200:
                    return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{service} never showed {path}")


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text


def _expect(status: int | str, doc: Any, what: str) -> None:
    if not (isinstance(status, int) and 200 <= status < 300):
        raise RuntimeError(f"{what} answered {status}: {doc}")


# ------------------------------------------------------------------ the independent reader

@dataclass
class StoredEvent:
    stream: str
    seq: int
    subject: str
    headers: dict[str, str]
    body: bytes

    @property
    def type(self) -> str:
        """`bapas.<EventType>.v<N>` -> EventType."""
        parts = self.headers.get("ce-type", "").split(".")
        return parts[1] if len(parts) == 3 else ""

    def data(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


async def read_streams(nats_url: str, streams: tuple[str, ...] = (
        "REGISTRATION", "GUIDANCE", "SUPERVISION"), subjects: str | None = None
        ) -> list[StoredEvent]:
    """Every message of the event streams (or those on `subjects` only), in stream order,
    read with a plain ordered consumer (no code of the services)."""
    nc = await nats.connect(servers=nats_url.split(","), connect_timeout=5)
    try:
        js = nc.jetstream()
        out: list[StoredEvent] = []
        for stream in streams:
            if subjects is None:
                info = await js.stream_info(stream)
                want, wanted = info.state.messages, info.config.subjects[0]
            else:
                info = await js.stream_info(stream, subjects_filter=subjects)
                want, wanted = sum((info.state.subjects or {}).values()), subjects
            if not want:
                continue
            sub = await js.subscribe(wanted, stream=stream, ordered_consumer=True)
            try:
                for _ in range(want):
                    msg = await sub.next_msg(timeout=10)
                    out.append(StoredEvent(stream, msg.metadata.sequence.stream, msg.subject,
                                           dict(msg.headers or {}), msg.data))
            finally:
                await sub.unsubscribe()
        return out
    finally:
        await nc.close()


def broken_chains(events: list[StoredEvent]) -> list[str]:
    """Cases whose chain does not hold: each event's `ce-hash` is SHA-256 over the previous
    hash, id, type, time and body; it links to the case's previous event by `ce-prevhash`
    and `ce-sequence` counts from 1 (the rule as DESIGN states it, computed here anew)."""
    last: dict[str, tuple[str, int]] = {}
    broken: list[str] = []
    for ev in events:
        h = ev.headers
        prev, seq = last.get(ev.subject, (GENESIS, 0))
        digest = hashlib.sha256(
            f"{h.get('ce-prevhash')}\n{h.get('ce-id')}\n{h.get('ce-type')}\n{h.get('ce-time')}\n"
            .encode() + ev.body).hexdigest()
        if digest != h.get("ce-hash") or h.get("ce-prevhash") != prev or \
                h.get("ce-sequence") != str(seq + 1):
            broken.append(f"{ev.subject} at {ev.stream} #{ev.seq}")
        last[ev.subject] = (h.get("ce-hash", ""), seq + 1)
    return broken


def times_stored(cmd: Command, events: list[StoredEvent]) -> int:
    """How often the stream holds what `cmd` asked for."""
    if cmd.client_id is None:
        return 0
    on = [e for e in events if e.subject.endswith("." + cmd.client_id)]
    if cmd.kind == "registration":
        return sum(1 for e in on if e.type == "ClientRegistered")
    if cmd.kind == "visit":
        return sum(1 for e in on if e.type == "VisitLogged"
                   and e.headers.get("ce-correlationid") == cmd.key)
    return sum(1 for e in on if e.type == "StageAdvanced"
               and e.data().get("tpp_decision_id") == cmd.decision_id)


# ------------------------------------------------------------------------ projections

async def settle(system: LocalSystem, timeout: float = 120.0) -> None:
    """Every service ready and every consumer with nothing left to apply, twice in a row."""
    deadline = time.monotonic() + timeout
    calm = 0
    busy: list[str] = []
    async with httpx.AsyncClient(timeout=3) as http:
        while time.monotonic() < deadline:
            busy = []
            for name, url in system.urls.items():
                try:
                    doc = (await http.get(url + "/readyz")).json()
                except (httpx.HTTPError, ValueError) as exc:
                    busy.append(f"{name}: {type(exc).__name__}")
                    continue
                if doc.get("status") != "ready":
                    busy.append(f"{name}: {doc.get('checks')}")
                busy += [f"{name} {c['name']}: {c.get('role')}, lag {c.get('lag')}, "
                         f"{c.get('last_error')}"
                         for c in doc.get("consumers", [])
                         if c.get("role") not in ("leader", "standby") or c.get("building")
                         or any(lag != 0 for lag in (c.get("lag") or {}).values())]
            calm = 0 if busy else calm + 1
            if calm >= 3:
                return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"the system did not settle in {timeout:.0f}s: " + "; ".join(busy))


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[str]]:
    """Every row of every projection view of every service, as sorted JSON."""
    topology = Topology()
    out: dict[str, list[str]] = {}
    async with pool.acquire() as conn:
        for service in SERVICES:
            schema = topology.schema(service)
            views = await conn.fetch("SELECT table_name FROM information_schema.views "
                                     "WHERE table_schema = $1 ORDER BY table_name", schema)
            for v in views:
                rows = await conn.fetch(
                    f'SELECT to_jsonb(t)::text AS j FROM "{schema}"."{v["table_name"]}" t')
                out[f"{schema}.{v['table_name']}"] = sorted(r["j"] for r in rows)
    return out


async def rebuilt_equal(system: LocalSystem, timeout: float = 180.0) -> tuple[bool, str]:
    """Ask every service to rebuild every projection from the streams, wait for the switch,
    and compare the rows with those before."""
    await settle(system)
    pool = await asyncpg.create_pool(system.dsn, min_size=1, max_size=2)
    try:
        before = await snapshot(pool)
        asked: list[tuple[str, str, str]] = []
        async with pool.acquire() as conn:
            for service in SERVICES:
                schema = Topology().schema(service)
                for row in await conn.fetch(f'SELECT projection FROM "{schema}".projection_versions'):
                    async with conn.transaction():
                        tag, _ = await request_rebuild(conn, schema, row["projection"])
                    asked.append((schema, row["projection"], tag))
            deadline = time.monotonic() + timeout
            for schema, projection, tag in asked:
                while True:
                    active = await conn.fetchval(
                        f'SELECT active_tag FROM "{schema}".projection_versions '
                        "WHERE projection = $1 AND building_tag IS NULL", projection)
                    if active == tag:
                        break
                    if time.monotonic() > deadline:
                        return False, f"{schema}.{projection} was not rebuilt in {timeout:.0f}s"
                    await asyncio.sleep(0.3)
        await settle(system)
        after = await snapshot(pool)
    finally:
        await pool.close()
    differ = [name for name in sorted(set(before) | set(after))
              if before.get(name) != after.get(name)]
    if differ:
        name = differ[0]
        gone = set(before.get(name, [])) - set(after.get(name, []))
        new = set(after.get(name, [])) - set(before.get(name, []))
        return False, (f"{', '.join(differ)} differ from a rebuild; e.g. {name}: live only "
                       f"{sorted(gone)[:1]}, rebuild only {sorted(new)[:1]}")
    return True, f"{len(before)} views, {sum(map(len, before.values()))} rows"


# --------------------------------------------------------------------------------- faults

@dataclass
class Row:
    fault: str
    answered: int = 0
    stored: int = 0
    lost: int = 0
    twice: int = 0
    projections_equal: bool = False
    longest_gap: float = 0.0
    chains_intact: bool = False
    note: str = ""
    commands: list[Command] = field(default_factory=list, repr=False)

    @property
    def passed(self) -> bool:
        return (self.lost == 0 and self.twice == 0 and self.projections_equal
                and self.chains_intact and self.stored == self.answered > 0)


Inject = Callable[["FaultRunner"], Awaitable[str]]


class FaultRunner:
    """One system under load; each `run(fault)` injects one fault and counts."""

    def __init__(self, system: LocalSystem, prepared: int = 16) -> None:
        self.system = system
        self.n = 0
        self.prepare_count = prepared
        self.ready: list[Prepared] = []
        self.http: httpx.AsyncClient | None = None
        self.officers: Officers | None = None

    async def __aenter__(self) -> FaultRunner:
        self.http = httpx.AsyncClient(limits=httpx.Limits(max_connections=64))
        self.officers = Officers(self.system, self.http)
        sem = asyncio.Semaphore(WORKERS)

        async def one(i: int) -> Prepared:
            async with sem:
                return await self.officers.prepare(900_000 + i)
        self.ready = list(await asyncio.gather(*(one(i) for i in range(self.prepare_count))))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.aclose()

    async def run(self, name: str, inject: Inject) -> Row:
        """Load while `inject` runs (it returns a note), then a second of load after it."""
        assert self.officers is not None
        row = Row(name)
        stop = asyncio.Event()
        label = name.split()[0].replace("-", "")[:12] + uuid.uuid4().hex[:6]
        began = time.monotonic()

        advances = 0

        async def worker(w: int) -> None:
            nonlocal advances
            i = 0
            while not stop.is_set():
                i += 1
                self.n += 1
                pick = (w + i) % 6
                if pick == 5 and advances < ADVANCES_PER_FAULT and (
                        p := next((p for p in self.ready if not p.advanced), None)):
                    p.advanced = True
                    advances += 1
                    cmd = Command("advance", f"{label}-a{w}-{i}", p.client_id, p.decision_id)
                    await self.officers.advance(cmd)
                elif pick in (3, 4):
                    client = self.ready[(w * 7 + i) % len(self.ready)].client_id
                    cmd = Command("visit", f"{label}-v{w}-{i}", client)
                    await self.officers.visit(cmd)
                else:
                    cmd = Command("registration", f"{label}-r{w}-{i}")
                    await self.officers.register(cmd, self.n, label)
                if cmd.ok:
                    cmd.answered_at = time.monotonic()
                row.commands.append(cmd)
                await asyncio.sleep(PAUSE)

        workers = [asyncio.create_task(worker(w)) for w in range(WORKERS)]
        try:
            await asyncio.sleep(1.0)
            row.note = await inject(self)
            await asyncio.sleep(2.0)
        finally:
            stop.set()
            await asyncio.gather(*workers)
        ended = time.monotonic()
        answered = sorted(c.answered_at for c in row.commands if c.answered_at is not None)
        marks = [began, *answered, ended]
        row.longest_gap = max(b - a for a, b in zip(marks, marks[1:]))
        await settle(self.system)
        events = await read_streams(self.system.nats_url)
        ok = [c for c in row.commands if c.ok]
        counts = [times_stored(c, events) for c in ok]
        row.answered = len(ok)
        row.stored = sum(1 for k in counts if k >= 1)
        row.lost = sum(1 for k in counts if k == 0)
        row.twice = sum(1 for k in counts if k > 1)
        opened = Counter(e.subject for e in events if e.type == "GuidanceOpened")
        doubled = [s for s, k in opened.items() if k > 1]
        if doubled:
            row.twice += len(doubled)
            row.note += f"; {len(doubled)} guidance cases opened twice"
        broken = [b for b in broken_chains(events) if not b.startswith(_POISON_PREFIX)]
        row.chains_intact = not broken
        if broken:
            row.note += f"; broken chains: {broken[:3]}"
        equal, detail = await rebuilt_equal(self.system)
        row.projections_equal = equal
        if not equal:
            row.note += f"; {detail}"
        return row


# the injections ------------------------------------------------------------------------

def kill_service(name: str) -> Inject:
    async def inject(r: FaultRunner) -> str:
        os.kill(r.system.pid_of(name), signal.SIGKILL)
        back = await asyncio.to_thread(r.system.wait_running, name)
        return f"{name} SIGKILLed mid-load, running again after {back:.1f}s"
    return inject


def kill_server(what: str) -> Inject:
    async def inject(r: FaultRunner) -> str:
        os.kill(r.system.pid_of(what), signal.SIGKILL)
        back = await asyncio.to_thread(r.system.wait_running, what)
        await asyncio.sleep(2.0)
        caught = await caught_up(r.system) if r.system.cluster > 1 else ""
        return f"{what} SIGKILLed, started again after {back:.1f}s" + caught
    return inject


def freeze(what: str, seconds: float = 20.0) -> Inject:
    async def inject(r: FaultRunner) -> str:
        pid = r.system.pid_of(what)
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(2.0)
        return f"{what} frozen (SIGSTOP) {seconds:.0f}s, then SIGCONT" + await caught_up(r.system)
    return inject


async def caught_up(system: LocalSystem, timeout: float = 60.0) -> str:
    """Every node holds every stream to the same last sequence."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=3) as http:
        while True:
            lasts: list[dict[str, int]] = []
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                for url in system.nats_monitors():
                    doc = (await http.get(url + "/jsz?streams=true")).json()
                    streams = {s["name"]: s["state"]["last_seq"]
                               for a in doc.get("account_details", [])
                               for s in a.get("stream_detail", [])}
                    lasts.append(streams)
            if len(lasts) == len(system.nats_monitors()) and lasts and all(
                    x == lasts[0] for x in lasts):
                return "; every node holds every stream to the same sequence"
            if time.monotonic() > deadline:
                return f"; nodes differ: {lasts}"
            await asyncio.sleep(0.5)


async def redeliver(r: FaultRunner) -> str:
    """An ack lost after the commit, for every consumer at once: each durable consumer is
    recreated from 50 messages before what it delivered, so the services get again what
    they applied and acknowledged."""
    nc = await nats.connect(servers=r.system.nats_url.split(","))
    rewound = 0
    try:
        js = nc.jetstream()
        for stream in ("REGISTRATION", "GUIDANCE", "SUPERVISION", "ACCESS"):
            for info in await js.consumers_info(stream):
                cfg = info.config
                if not cfg.durable_name:
                    continue
                start = max(1, info.delivered.stream_seq - 50)
                again = dataclasses.replace(cfg, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                            opt_start_seq=start)
                await js.delete_consumer(stream, cfg.durable_name)
                await js.add_consumer(stream, again)
                rewound += 1
    finally:
        await nc.close()
    await asyncio.sleep(3.0)
    return f"{rewound} consumers delivered again the last 50 messages they had applied"


_POISON_PREFIX = "bapas.jaksel.registration.poison-"


async def poison(r: FaultRunner) -> str:
    """An event no handler can read (its body is not JSON), with an intact chain, on a case
    of its own: the case is held, everything else goes on."""
    subject = f"{_POISON_PREFIX}{uuid.uuid4().hex[:12]}"
    event_id = str(uuid.uuid4())
    body = b'{"person": not json'
    kind = "bapas.ClientRegistered.v1"
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    digest = hashlib.sha256(f"{GENESIS}\n{event_id}\n{kind}\n{when}\n".encode() + body).hexdigest()
    nc = await nats.connect(servers=r.system.nats_url.split(","))
    try:
        await nc.jetstream().publish(subject, body, headers={
            "ce-specversion": "1.0", "ce-id": event_id, "ce-type": kind,
            "ce-source": "/bapas/jaksel/registration", "ce-subject": subject.rsplit(".", 1)[1],
            "ce-time": when, "ce-office": OFFICE, "ce-sequence": "1", "ce-prevhash": GENESIS,
            "ce-hash": digest, "Nats-Msg-Id": event_id})
    finally:
        await nc.close()
    await asyncio.sleep(3.0)
    held = 0
    async with httpx.AsyncClient(timeout=3) as http:
        for url in r.system.urls.values():
            held += len((await http.get(url + "/readyz")).json().get("held_cases") or [])
    return f"a poison event stored on its own case; {held} consumers hold that case"


SINGLE_FAULTS: list[tuple[str, Inject]] = [
    *[(f"{name} SIGKILL", kill_service(name)) for name in SERVICES],
    ("nats-server SIGKILL", kill_server("nats-server")),
    ("postgres SIGKILL", kill_server("postgres")),
    ("delivered twice", redeliver),
    ("poison event", poison),
]
CLUSTER_FAULTS: list[tuple[str, Inject]] = [
    ("cluster node SIGKILL", kill_server("nats-1")),
    ("cluster node SIGSTOP 20s", freeze("nats-2")),
]


# ----------------------------------------------------------------------------- the command

def format_table(rows: list[Row]) -> str:
    head = ("fault", "2xx", "stored", "lost", "twice", "= rebuild", "chains", "longest gap s")
    lines = [[r.fault, str(r.answered), str(r.stored), str(r.lost), str(r.twice),
              "yes" if r.projections_equal else "NO", "intact" if r.chains_intact else "BROKEN",
              f"{r.longest_gap:.1f}"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(x) for x in lines])


async def run_faults(system: LocalSystem, faults: list[tuple[str, Inject]],
                     echo: Callable[[str], None] = print) -> list[Row]:
    rows = []
    async with FaultRunner(system, prepared=ADVANCES_PER_FAULT * len(faults)) as runner:
        for name, inject in faults:
            echo(f"  {name} ...")
            row = await runner.run(name, inject)
            echo(f"    {row.answered} answered 2xx, {row.lost} lost, {row.twice} stored twice, "
                 f"rebuild {'equal' if row.projections_equal else 'DIFFERS'}, longest gap "
                 f"{row.longest_gap:.1f}s; {row.note}")
            rows.append(row)
    return rows


def run(data: Path | None, only: str | None = None,
        echo: Callable[[str], None] = print) -> int:
    """Both systems in turn; prints the table; 0 when every fault lost nothing and applied
    nothing twice."""
    base = data or Path(tempfile.mkdtemp(prefix="bapas-faults-"))
    rows: list[Row] = []
    try:
        for cluster, faults in ((1, SINGLE_FAULTS), (3, CLUSTER_FAULTS)):
            if only and only != ("single" if cluster == 1 else "cluster"):
                continue
            folder = base / ("single" if cluster == 1 else "cluster")
            if folder.exists():
                shutil.rmtree(folder)
            echo(f"starting a system of its own in {folder} "
                 f"({'one nats-server' if cluster == 1 else 'a 3-node NATS cluster'})")
            with LocalSystem(folder, cluster) as system:
                rows += asyncio.run(run_faults(system, faults, echo))
    finally:
        if data is None:
            shutil.rmtree(base, ignore_errors=True)
    echo("")
    echo(format_table(rows))
    return 0 if all(r.passed for r in rows) else 1
