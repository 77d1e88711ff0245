"""`bapas up` as a newcomer runs it: everything starts, answers, heals and stops cleanly.

The platform runs in its own session (process group) with its own data folder and its own
service ports, so a developer's running `make up` is neither disturbed nor mistaken for it.
Every test kills whatever it started, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import psutil
import pytest

from shared.local.servers import free_port
from shared.settings import SERVICE_PORTS
from shared.web.auth import TokenService
from tests.integration.test_registration_api import body as registration_body
from tests.integration.test_registration_api import nik

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BAPAS = Path(sys.executable).parent / "bapas"
SERVICES = tuple(SERVICE_PORTS)
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def environment(ports: dict[str, int]) -> dict[str, str]:
    """The caller's environment without any BAPAS_* setting, plus our own service ports."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BAPAS_")}
    env.update({f"BAPAS_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env.setdefault("BAPAS_CONSOLE_PORT", str(free_port()))  # never the default 8106
    return env


def wait_for(what: str, fn: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """Poll `fn` until it gives something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last seen: {value!r})")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_json(url: str, payload: dict, token: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST",
        headers={**bearer(token), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def get(url: str, timeout: float = 3.0, headers: dict[str, str] | None = None
        ) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid} [{p.status()}] {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            out.append(f"{p.pid} [gone while described]")
    return out


def survivors(procs: list[psutil.Process], timeout: float = 30.0) -> list[psutil.Process]:
    """The processes still running once `timeout` has passed. A SIGKILLed process in
    uninterruptible I/O (an fsync on a busy disk) dies only when the I/O ends."""
    _, left = psutil.wait_procs([p for p in procs if alive(p)], timeout=timeout)
    return [p for p in left if alive(p)]


class Platform:
    """One `bapas up` in its own session; its stdout read line by line in the background."""

    def __init__(self, data: Path, ports: dict[str, int], args: tuple[str, ...] = ()) -> None:
        self.data = data
        self.ports = ports
        self.args = args
        self.env = environment(ports)
        self.stderr_path = data.parent / f"{data.name}-stderr.txt"
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc: subprocess.Popen | None = None
        self.seen: list[psutil.Process] = []  # every descendant noticed while running

    def start(self) -> Platform:
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [str(BAPAS), "up", "--data", str(self.data), *self.args], env=self.env,
            cwd=self.data.parent,
            stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
            start_new_session=True, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def report(self) -> str:
        logs = []
        for log in sorted((self.data / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-5:]
            logs.append(f"--- {log.name}\n" + "\n".join(tail))
        return ("--- stdout\n" + "\n".join(self.lines) + "\n--- stderr\n" + self.stderr()
                + "\n" + "\n".join(logs))

    def read_until(self, done: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"bapas up printed nothing expected in {timeout:.0f}s\n"
                                     + self.report())
            try:
                line = self._queue.get(timeout=min(left, 1.0))
            except queue.Empty:
                self.remember_descendants()
                continue
            if line is None:
                raise AssertionError(f"bapas up ended (code {self.proc.wait(5)})\n"
                                     + self.report())
            self.lines.append(line)
            if done(line):
                return line

    def rest(self, timeout: float = 10.0) -> list[str]:
        """Every line still to come, once the platform has exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return self.lines

    def remember_descendants(self) -> list[psutil.Process]:
        try:
            now = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        known = {(p.pid, p.create_time()) for p in self.seen if alive(p)}
        for p in now:
            with contextlib.suppress(psutil.Error):
                if (p.pid, p.create_time()) not in known:
                    self.seen.append(p)
        return now

    def service_process(self, name: str) -> psutil.Process | None:
        for p in self.remember_descendants():
            with contextlib.suppress(psutil.Error):
                if f"services.{name}" in p.cmdline() and alive(p):
                    return p
        return None

    def server_process(self, name: str) -> psutil.Process | None:
        """The embedded nats-server, or PostgreSQL's postmaster (not its backends)."""
        for p in self.remember_descendants():
            with contextlib.suppress(psutil.Error):
                cmd = p.cmdline()
                if cmd and Path(cmd[0]).name == name and alive(p):
                    return p
        return None

    def group_members(self) -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(p.pid) == self.pid and alive(p):
                    out.append(p)
        return out

    def kill(self) -> None:
        """Whatever happened: nothing this platform started may outlive the test."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        for p in self.seen:
            with contextlib.suppress(psutil.Error):
                if alive(p):
                    p.kill()
        survivors(self.seen)
        if hasattr(self, "_stderr"):
            self._stderr.close()


@contextlib.contextmanager
def platform(tmp_path: Path, ports: dict[str, int], *args: str) -> Iterator[Platform]:
    p = Platform(tmp_path / "data", ports, args)
    try:
        yield p.start()
    finally:
        p.kill()


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BAPAS), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def ready(url: str) -> bool:
    status, body = get(url + "/readyz")
    return status == 200 and json.loads(body)["status"] == "ready"


def test_bapas_up_runs_heals_and_stops_leaving_nothing_behind(tmp_path):
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    with platform(tmp_path, ports) as up:
        # ------------------------------------------------------------ it starts and says so
        urls: dict[str, str] = {}

        def announced(line: str) -> bool:
            parts = line.split()
            if len(parts) == 2 and parts[0] in SERVICES and parts[1].startswith("http://"):
                urls[parts[0]] = parts[1]
            return parts[:1] == ["token"]

        token_line = up.read_until(announced, START_TIMEOUT)
        assert urls == {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}, (
            up.report())
        announced_token = token_line.split()[1]
        up.remember_descendants()

        # ------------------------------------------------------------ every service answers
        for name, url in urls.items():
            status, body = get(url + "/healthz")
            assert status == 200 and json.loads(body) == {"status": "alive", "service": name}
            status, body = get(url + "/readyz")
            assert status == 200, body
            doc = json.loads(body)
            assert doc["status"] == "ready" and doc["service"] == name
            assert set(doc["checks"].values()) == {"ok"}, doc
            status, body = get(url + "/metrics")
            assert status == 200 and "# TYPE" in body and "bapas_http_request_seconds" in body

        # ------------------------------------------------------------ development tokens
        secret = (tmp_path / "data" / "secret").read_text().strip()
        assert len(secret) >= 32
        assert (tmp_path / "data" / "secret").stat().st_mode & 0o077 == 0  # owner only
        plain_env = environment({})
        minted = run_cli("token", "--office", "jaksel", "--role", "pk",
                         "--data", str(tmp_path / "data"), env=plain_env)
        assert minted.returncode == 0, minted.stderr
        lines = minted.stdout.splitlines()
        assert len(lines) == 1, minted.stdout  # only the token: usable as $(bapas token ...)
        token = lines[0]
        assert len(token.split(".")) == 3 and all(token.split("."))
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer="bapas")
        assert (claims["sub"], claims["office"], claims["roles"]) == ("pk-dev", "jaksel", ["pk"])
        assert claims["exp"] > time.time()
        # the services verify with the same key (the same TokenService); so does the banner's
        principal = TokenService(secret).verify(token)
        assert (principal.office, principal.roles) == ("jaksel", frozenset({"pk"}))
        banner = TokenService(secret).verify(announced_token)
        assert banner.office == "jaksel" and banner.has("pk")

        refused = run_cli("token", "--office", "jaksel", "--role", "root",
                          "--data", str(tmp_path / "data"), env=plain_env)
        assert refused.returncode != 0 and "root" in refused.stderr and not refused.stdout

        # ------------------------------------------------------------ bapas status
        status_run = run_cli("status", "--data", str(tmp_path / "data"), env=plain_env)
        assert status_run.returncode == 0, status_run.stdout + status_run.stderr
        rows = {line.split()[0]: line.split()[1:] for line in status_run.stdout.splitlines()
                if line and not line.startswith(" ")}
        assert {n: r for n, r in rows.items() if n in SERVICES} == {
            name: [url, "ready"] for name, url in urls.items()}, status_run.stdout
        assert rows["nats-server"][1:] == ["up"] and rows["postgres"][1:] == ["up"], (
            status_run.stdout)

        # ------------------------------------------------------------ a killed service returns
        victim = up.service_process("guidance")
        assert victim is not None, describe(up.remember_descendants())
        others = {name: up.service_process(name) for name in SERVICES if name != "guidance"}
        victim.send_signal(signal.SIGKILL)
        psutil.wait_procs([victim], timeout=10)
        assert not alive(victim)
        successor = wait_for(
            "a new guidance process",
            lambda: (p := up.service_process("guidance")) and p.pid != victim.pid and p, 60)
        wait_for("guidance ready again", lambda: ready(urls["guidance"]), 60)
        assert alive(successor)
        # the others went on serving, untouched
        for name, proc in others.items():
            assert proc is not None and alive(proc), name
            assert ready(urls[name]), name
        assert "guidance exited" in up.stderr() and "restarting" in up.stderr()

        # ------------------------------------------------------------ killed servers return
        for server in ("nats-server", "postgres"):
            victim = up.server_process(server)
            assert victim is not None, describe(up.remember_descendants())
            victim.send_signal(signal.SIGKILL)
            psutil.wait_procs([victim], timeout=10)
            wait_for(f"a new {server}", lambda s=server, v=victim: (
                p := up.server_process(s)) and p.pid != v.pid and p, 60)
            wait_for(f"every service ready after {server} came back",
                     lambda: all(ready(url) for url in urls.values()), 120)
            assert f"{server} exited" in up.stderr(), up.report()
        # the same data: a command is stored and the reactions run again
        created = post_json(urls["registration"] + "/v1/clients", registration_body(nik(1)),
                            announced_token)
        assert created[0] == 201, created
        client_id = created[1]["client_id"]
        wait_for("guidance opened the new client's case", lambda: get(
            urls["guidance"] + f"/v1/cases/{client_id}", headers=bearer(announced_token))[0]
            == 200, 60)
        after = run_cli("status", "--data", str(tmp_path / "data"), env=plain_env).stdout
        rows = {line.split()[0]: line.split()[1:] for line in after.splitlines()
                if line and not line.startswith(" ")}
        assert rows["nats-server"][1:] == rows["postgres"][1:] == ["up", "(restarted", "1x)"], (
            after)
        assert rows["guidance"][1:] == ["ready", "(restarted", "1x)"], after

        # ------------------------------------------------------------ Ctrl-C / SIGTERM
        # whatever state the servers are in: the nats-server frozen, the services waiting on it
        frozen = up.server_process("nats-server")
        assert frozen is not None
        frozen.suspend()
        everything = up.remember_descendants()
        names = " ".join(" ".join(p.cmdline()) for p in everything)
        assert "nats-server" in names and "postgres" in names, describe(everything)
        assert up.group_members(), "the platform should run in its own process group"
        os.killpg(up.pid, signal.SIGTERM)
        stopping = time.monotonic()
        try:
            code = up.proc.wait(STOP_TIMEOUT)
            print(f"bapas up stopped {time.monotonic() - stopping:.1f}s after SIGTERM "
                  "with its nats-server frozen")
        except subprocess.TimeoutExpired:
            pytest.fail(f"bapas up still running {STOP_TIMEOUT:.0f}s after SIGTERM:\n"
                        + "\n".join(describe(up.group_members())) + "\n" + up.report())
        left = survivors(up.seen)
        assert not left, describe(left)
        assert not up.group_members(), describe(up.group_members())
        assert code == 0, up.report()
        assert up.rest()[-1] == "stopped", up.report()
        assert not (tmp_path / "data" / "run.json").exists()
        for url in urls.values():
            assert get(url + "/healthz", timeout=1)[0] == 0  # nobody listens any more


def test_bapas_up_refuses_a_taken_port_and_starts_nothing(tmp_path):
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    taken = ports["supervision"]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with platform(tmp_path, ports) as up:
            try:
                code = up.proc.wait(60)
            except subprocess.TimeoutExpired:
                pytest.fail("bapas up did not refuse a taken port:\n" + up.report())
            assert code != 0
            message = up.stderr()
            assert str(taken) in message and "BAPAS_SUPERVISION_PORT" in message, message
            for name, port in ports.items():  # only the taken one is blamed
                if name != "supervision":
                    assert f"BAPAS_{name.upper()}_PORT" not in message, message
            assert not up.group_members(), describe(up.group_members())
            left = survivors(up.seen)
            assert not left, describe(left)
            assert not (tmp_path / "data" / "run.json").exists()


def test_on_sigterm_the_services_stop_before_the_servers_they_use(tmp_path):
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    with platform(tmp_path, ports) as up:
        up.read_until(lambda line: line.startswith("token"), START_TIMEOUT)
        os.killpg(up.pid, signal.SIGTERM)
        assert up.proc.wait(STOP_TIMEOUT) == 0, up.report()
    lost = []
    for name in SERVICES:
        log = (tmp_path / "data" / "logs" / f"{name}.log").read_text()
        assert '"event": "stopped"' in log, log[-2000:]
        if "nats disconnected" in log:
            lost.append(name)
    assert lost == [], f"NATS went away under these services while they were stopping: {lost}"


def test_bapas_up_offices_runs_a_hub_and_a_leaf_per_office(tmp_path):
    """`bapas up --offices jaksel,bandung`: the hub and one leaf per office, each nats-server
    from the shipped file in a folder of its own; an office's client reaches the hub's audit;
    the hub refuses to write an office that has its own leaf; status shows the links."""
    from shared.local.servers import HUB_CONFIG, LEAF_CONFIG

    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    with platform(tmp_path, ports, "--offices", "jaksel,bandung") as up:
        up.read_until(lambda line: line.split()[:1] == ["token"], START_TIMEOUT)
        urls = {}
        for line in up.lines:
            parts = line.split()
            if len(parts) == 3 and parts[2].startswith("http://"):
                urls[(parts[0], parts[1])] = parts[2]
        assert set(urls) == {("hub", s) for s in SERVICES} | {
            (o, s) for o in ("jaksel", "bandung")
            for s in ("registration", "guidance", "supervision")}, up.report()
        data = tmp_path / "data"
        assert (data / "nats/hub/nats-server.conf").read_text() == HUB_CONFIG.read_text()
        for office in ("jaksel", "bandung"):
            assert (data / f"nats/{office}/nats-server.conf").read_text() == \
                LEAF_CONFIG.read_text()
        tokens = TokenService((data / "secret").read_text().strip())
        pk = tokens.issue("pk-0007", "jaksel", ["pk"])
        status, doc = post_json(urls[("jaksel", "registration")] + "/v1/clients",
                                registration_body(nik(1)), pk)
        assert status == 201, doc
        client_id = doc["client_id"]
        auditor = bearer(tokens.issue("auditor-01", "jaksel", ["auditor"]))
        history = urls[("hub", "audit")] + f"/v1/audit/clients/{client_id}/history"
        found = wait_for("the hub's audit shows the jaksel client",
                         lambda: get(history, headers=auditor)[0] == 200, 60)
        assert found
        status, doc = post_json(urls[("hub", "registration")] + "/v1/clients",
                                registration_body(nik(2)), pk)
        assert status == 421, doc
        shown = wait_for("bapas status: jaksel's link up and nothing left to send", lambda: (
            out := run_cli("status", "--data", str(data), env=up.env).stdout,
            out if "office jaksel link to hub up, hub has yet to receive 0 events" in out
            else "")[1], 60)
        assert "office bandung link to hub up" in shown, shown
        os.killpg(up.pid, signal.SIGTERM)
        assert up.proc.wait(STOP_TIMEOUT) == 0, up.report()
        left = survivors(up.seen)
        assert not left, describe(left)


def test_bapas_up_office_runs_one_office_against_a_real_hub(tmp_path):
    """`bapas up --office jaksel --hub URL`: the office's leaf and services, connected to a
    hub someone else runs (here a hub from deploy/office/hub.conf with its streams)."""
    import asyncio

    import nats

    from shared.local.servers import NatsHub
    from shared.streams import Topology, ensure_streams

    async def hub_streams(url: str) -> None:
        nc = await nats.connect(url)
        try:
            await ensure_streams(nc.jetstream(), Topology(leaves=("jaksel",)))
        finally:
            await nc.close()

    async def at_hub(url: str, subject: str) -> int:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info("REGISTRATION", subjects_filter=subject)
            return sum((info.state.subjects or {}).values())
        finally:
            await nc.close()

    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    with NatsHub(tmp_path / "hub") as hub:
        asyncio.run(hub_streams(hub.url))
        with platform(tmp_path, ports, "--office", "jaksel", "--hub", hub.leaf_url) as up:
            up.read_until(lambda line: line.split()[:1] == ["token"], START_TIMEOUT)
            urls = {tuple(line.split()[:2]): line.split()[2] for line in up.lines
                    if len(line.split()) == 3 and line.split()[2].startswith("http://")}
            assert set(urls) == {("jaksel", s) for s in ("registration", "guidance",
                                                         "supervision")}, up.report()
            token = TokenService((tmp_path / "data" / "secret").read_text().strip()).issue(
                "pk-0007", "jaksel", ["pk"])
            status, doc = post_json(urls[("jaksel", "registration")] + "/v1/clients",
                                    registration_body(nik(3)), token)
            assert status == 201, doc
            subject = f"bapas.jaksel.registration.{doc['client_id']}"
            assert wait_for("the hub holds the jaksel registration",
                            lambda: asyncio.run(at_hub(hub.url, subject)), 60) >= 1
            os.killpg(up.pid, signal.SIGTERM)
            assert up.proc.wait(STOP_TIMEOUT) == 0, up.report()
            assert not survivors(up.seen)
