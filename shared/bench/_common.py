"""What every benchmark needs: servers to run against, timing, figures and their table.

A benchmark reports each of our figures next to the raw operation it builds on, measured in
the same run on the same servers (DESIGN §9): absolute rates say more about the machine and
its fsync than about our code, a ratio says what our code costs on top of the raw client.
So targets are ratios too: a rate of at least, a latency of at most, so many times the raw
operation's.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from ..local.servers import NatsServer, PostgresServer
from ..streams import default_monitor_url

__all__ = ["Endpoints", "bench_servers", "set_nats_sync", "Target", "Figure", "Stopwatch",
           "percentile", "progress", "format_table", "machine_summary", "ServerVersions",
           "server_versions"]


@dataclass(frozen=True, slots=True)
class Endpoints:
    nats_url: str
    monitor_url: str
    dsn: str
    source: str  # "environment" or "embedded"
    # our own nats-server (embedded only), for set_nats_sync
    nats_server: NatsServer | None = field(default=None, compare=False, repr=False)

    @property
    def shared(self) -> bool:
        """True when someone else runs the servers: then everything we create is removed."""
        return self.source == "environment"


@contextlib.contextmanager
def bench_servers() -> Iterator[Endpoints]:
    """The servers named by BAPAS_NATS_URL / BAPAS_DATABASE_URL, else our own in a temp dir.

    Our own servers hold the shipped durability profile (`sync_interval: always`), because
    that fsync per message is the ceiling every append figure is measured against. They are
    stopped on the way out whatever happens (also on Ctrl-C); being started with
    PR_SET_PDEATHSIG they would not outlive us even if we were killed.
    """
    nats_url = os.environ.get("BAPAS_NATS_URL")
    dsn = os.environ.get("BAPAS_DATABASE_URL")
    if nats_url and dsn:
        monitor = os.environ.get("BAPAS_NATS_MONITOR_URL") or default_monitor_url(nats_url)
        yield Endpoints(nats_url, monitor, dsn, "environment")
        return
    with tempfile.TemporaryDirectory(prefix="bapas-bench-") as tmp:
        nats = NatsServer(Path(tmp) / "nats", sync_always=True, name="bapas-bench")
        pg = PostgresServer(Path(tmp) / "pg")
        try:
            progress("starting nats-server and PostgreSQL in " + tmp)
            nats.start()
            pg.start()
            yield Endpoints(nats.url, nats.monitor_url, pg.dsn, "embedded", nats)
        finally:
            pg.stop()
            nats.stop()


def set_nats_sync(endpoints: Endpoints, sync_always: bool) -> bool:
    """Restart our own nats-server with or without `sync_interval: always` (same ports, same
    data). For filling a store whose writes are not what is measured: a fill of a million
    events at one fsync each would take many minutes. Close NATS connections before, open
    them again after. On someone else's servers nothing changes and False is returned."""
    server = endpoints.nats_server
    if server is None:
        return False
    if server.sync_always != sync_always:
        server.sync_always = sync_always
        server.restart()
    return True


@dataclass(frozen=True, slots=True)
class Target:
    """What a figure should reach: a minimum ratio to its raw reference (a rate), a maximum
    ratio to it (a latency), or a maximum value."""

    min_ratio: float | None = None
    max_ratio: float | None = None
    max_value: float | None = None

    def describe(self, unit: str) -> str:
        if self.min_ratio is not None:
            return f"≥ {self.min_ratio} × raw"
        if self.max_ratio is not None:
            return f"≤ {self.max_ratio} × raw"
        return f"≤ {self.max_value:g} {unit}"

    def met(self, figure: Figure) -> bool:
        ratio = figure.ratio
        if self.min_ratio is not None:
            return ratio is not None and ratio >= self.min_ratio
        if self.max_ratio is not None:
            return ratio is not None and ratio <= self.max_ratio
        assert self.max_value is not None
        return figure.value <= self.max_value


@dataclass(frozen=True, slots=True)
class Figure:
    """One line of the report: our value, and the raw operation it is compared with."""

    name: str
    value: float
    unit: str
    raw_name: str = ""
    raw_value: float | None = None
    target: Target | None = None

    @property
    def ratio(self) -> float | None:
        """Ours ÷ raw: for a rate, the share of the raw rate we keep (higher is better); for a
        latency, how many times the raw latency we take (lower is better)."""
        if self.raw_value is None or self.raw_value == 0:
            return None
        return self.value / self.raw_value

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "met" if self.target.met(self) else "below"


class Stopwatch:
    """`with Stopwatch() as sw: ...` then `sw.seconds`; `sw.rate(n)` for n operations."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started

    def rate(self, count: int) -> float:
        return count / self.seconds if self.seconds > 0 else float("inf")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..1)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def progress(text: str) -> None:
    """One short line on stderr while the benchmark runs; the results go to stdout."""
    print(f"  .. {text}", file=sys.stderr, flush=True)


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "ms" or abs(value) < 100:
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def format_table(figures: Sequence[Figure]) -> str:
    header = ("figure", "ours", "unit", "raw reference", "raw", "ratio", "target", "")
    rows = [header]
    for f in figures:
        ratio = f.ratio
        rows.append((f.name, _number(f.value, f.unit), f.unit, f.raw_name,
                     _number(f.raw_value, f.unit), f"{ratio:.2f}" if ratio is not None else "",
                     f.target.describe(f.unit) if f.target else "", f.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {1, 4, 5}  # numbers line up on the right
    lines = []
    for n, row in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)


def machine_summary() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


@dataclass(frozen=True, slots=True)
class ServerVersions:
    nats: str
    sync_always: bool | None
    postgres: str


async def server_versions(monitor_url: str, conn: asyncpg.Connection) -> ServerVersions:
    """nats-server's version and fsync setting (only /varz tells them) and PostgreSQL's."""
    version, sync_always = "unknown (no /varz)", None
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            resp = await client.get(monitor_url.rstrip("/") + "/varz")
            resp.raise_for_status()
            varz = resp.json()
        version = varz.get("version", "unknown")
        sync_always = bool(((varz.get("jetstream") or {}).get("config") or {}).get("sync_always"))
    except (httpx.HTTPError, ValueError):
        pass
    pg = await conn.fetchval("SHOW server_version")
    return ServerVersions(version, sync_always, pg)

