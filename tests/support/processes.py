"""Services as OS processes on the test servers, in a namespace of their own."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shared.local.servers import free_port
from tests.conftest import TEST_SECRET
from tests.support.infra import Servers

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Services:
    namespace: str
    env: dict[str, str]
    urls: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, timeout: float = 90.0) -> None:
        self.procs[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"],
                                            env=self.env, cwd=REPO)
        deadline = time.monotonic() + timeout
        while not ready(self.urls[name]):
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"the {name} service exited ({self.procs[name].returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {name} service did not get ready")
            time.sleep(0.2)

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.contextmanager
def services(servers: Servers, names: tuple[str, ...], **env: str) -> Iterator[Services]:
    """Start `names` (in that order) and stop them all afterwards, whatever happens."""
    namespace = "p" + uuid.uuid4().hex[:12]
    ports = {name: free_port() for name in names}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("BAPAS_")}
    base_env.update(BAPAS_ENV="development", BAPAS_NATS_URL=servers.nats_url,
                    BAPAS_NATS_MONITOR_URL=servers.monitor_url,
                    BAPAS_DATABASE_URL=servers.dsn, BAPAS_NAMESPACE=namespace,
                    BAPAS_JWT_SECRET=TEST_SECRET, BAPAS_LOG_LEVEL="warning",
                    **{f"BAPAS_{n.upper()}_PORT": str(p) for n, p in ports.items()}, **env)
    running = Services(namespace, base_env,
                       {n: f"http://127.0.0.1:{p}" for n, p in ports.items()})
    try:
        for name in names:
            running.start(name)
        yield running
    finally:
        running.stop_all()


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
