"""`bapas rebuild SERVICE [PROJECTION]`: rebuild read models from the streams, watching.

The running service does the work: the leader of each projection (holder of its advisory
lock) notices a requested build within a few seconds, creates its tables, replays the streams
into them with `replaying = True` (no notification, no other side effect) while the old
tables keep answering, and switches the views over when the build has caught up. This
command only asks (it sets the projection's `building_tag`, see
`shared.projector.request_rebuild`) and watches the build's checkpoints, showing a progress
bar with the rate and an ETA. If no service takes the build up, the request is withdrawn so
that nothing is left half done.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import asyncpg
import click

from ..db import quote_ident
from ..errors import KernelError
from ..projector import request_rebuild, withdraw_rebuild
from ..streams import Topology

__all__ = ["run", "Connection", "resolve_connection"]

POLL_SECONDS = 0.5
STALL_SECONDS = 30.0      # no progress this long: the service is not building it
PRINT_EVERY_SECONDS = 1.0  # progress lines when the output is not a terminal
RATE_WINDOW_SECONDS = 5.0
BAR_WIDTH = 30


class RebuildError(Exception):
    """Said to the user as it is; the command exits 1."""


@dataclass(frozen=True)
class Connection:
    database_url: str
    nats_url: str
    namespace: str


def resolve_connection(data: Path) -> Connection:
    """`BAPAS_DATABASE_URL`, `BAPAS_NATS_URL`, `BAPAS_NAMESPACE` from the environment, each
    else from `<data>/run.json`, which `bapas up` writes while it runs."""
    run_file = data / "run.json"
    try:
        run = json.loads(run_file.read_text())
    except FileNotFoundError:
        run = {}
    except (OSError, ValueError) as exc:
        raise RebuildError(f"cannot read {run_file}: {exc}") from None

    def pick(env: str, key: str) -> str | None:
        return os.environ.get(env) or run.get(key) or None

    dsn, nats_url = pick("BAPAS_DATABASE_URL", "database_url"), pick("BAPAS_NATS_URL", "nats_url")
    missing = [name for name, value in (("BAPAS_DATABASE_URL", dsn), ("BAPAS_NATS_URL", nats_url))
               if not value]
    if missing:
        where = (f"{run_file} does not name it" if run else
                 f"there is no {run_file} (is `bapas up` running with --data {data}?)")
        raise RebuildError(f"do not know where to connect: {' and '.join(missing)} not set, and "
                           f"{where}. Start the platform with `bapas up`, or set the variables.")
    namespace = os.environ.get("BAPAS_NAMESPACE", run.get("namespace") or "")
    try:
        Topology(namespace)
    except ValueError as exc:
        raise RebuildError(f"BAPAS_NAMESPACE {namespace!r}: {exc}") from None
    return Connection(dsn, nats_url, namespace)


def run(service: str, projection: str | None, data: Path) -> int:
    """Rebuild `projection` (default: each projection) of `service`; 0 when all switched."""
    try:
        conn = resolve_connection(data)
        return asyncio.run(_rebuild_all(conn, service, projection, sys.stdout))
    except RebuildError as exc:
        click.echo(f"bapas rebuild: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("\nbapas rebuild: stopped watching; a build the service has started goes on "
                   "(see `bapas status`)", err=True)
        return 1


# ------------------------------------------------------------------------------- the work


async def _rebuild_all(c: Connection, service: str, projection: str | None, out: TextIO) -> int:
    from ..runtime import connect_nats

    topology = Topology(c.namespace)
    schema = topology.schema(service)
    try:
        db = await asyncpg.connect(c.database_url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise RebuildError(f"cannot reach PostgreSQL at {_redact(c.database_url)}: {exc}") from None
    try:
        names = await _projections(db, schema, service)
        if projection is not None:
            if projection not in names:
                raise RebuildError(f"{service} has no projection {projection!r}; known: "
                                   + ", ".join(names))
            names = [projection]
        try:
            nc = await connect_nats(c.nats_url, "bapas-rebuild", attempts=2)
        except ConnectionError as exc:
            raise RebuildError(str(exc)) from None
        try:
            for i, name in enumerate(names):
                if not await _rebuild_one(db, nc, schema, service, name, out):
                    if names[i + 1:]:
                        click.echo("not requested: " + ", ".join(names[i + 1:]), file=out)
                    return 1
            return 0
        finally:
            await nc.close()
    finally:
        await db.close()


async def _projections(db: asyncpg.Connection, schema: str, service: str) -> list[str]:
    s = quote_ident(schema)
    if await db.fetchval("SELECT to_regclass($1)", f"{s}.projection_versions") is None:
        raise RebuildError(f"no read models of {service} in this database (schema {schema} has "
                           "no projection_versions): has the service run here, with this "
                           "BAPAS_NAMESPACE?")
    names = [r["projection"] for r in await db.fetch(
        f"SELECT projection FROM {s}.projection_versions ORDER BY projection")]
    if not names:
        raise RebuildError(f"{service} has no projections yet: start the service first")
    return names


async def _rebuild_one(db: asyncpg.Connection, nc, schema: str, service: str, name: str,
                       out: TextIO) -> bool:
    s = quote_ident(schema)
    async with db.transaction():
        try:
            tag, ours = await request_rebuild(db, schema, name)
        except KernelError as exc:
            raise RebuildError(str(exc)) from None
        active = await db.fetchval(
            f"SELECT active_tag FROM {s}.projection_versions WHERE projection = $1", name)
    started = time.monotonic()
    if ours:
        click.echo(f"{name}: rebuilding from the streams into {tag} (now answering: {active}); "
                   f"the running {service} service builds it with side effects off and "
                   "switches over when caught up", file=out)
    else:
        click.echo(f"{name}: a build ({tag}) is already under way; watching it", file=out)

    js = nc.jetstream()
    totals: dict[str, int] = {}  # stream -> its last sequence when we started watching

    async def count_streams(streams: list[str]) -> None:
        for stream in streams:
            if stream not in totals:
                totals[stream] = (await js.stream_info(stream)).state.last_seq

    await count_streams([r["stream"] for r in await db.fetch(
        f"SELECT stream FROM {s}.projection_checkpoints WHERE projection = $1 AND tag = $2",
        name, active)])
    bar = _Progress(name, out)
    last_done, last_change, picked_up = -1, time.monotonic(), False
    while True:
        row = await db.fetchrow(
            f"SELECT active_tag, building_tag FROM {s}.projection_versions WHERE projection = $1",
            name)
        points = await db.fetch(
            f"SELECT stream, position FROM {s}.projection_checkpoints "
            "WHERE projection = $1 AND tag = $2", name, tag)
        if points and not picked_up:
            picked_up, last_change = True, time.monotonic()
            await count_streams([p["stream"] for p in points])
        done = sum(p["position"] for p in points)
        total = max(sum(totals.values()), done)
        if row["active_tag"] == tag:
            bar.finish(done)
            click.echo(f"{name}: switched {active} -> {tag}: {done:,} events in "
                       f"{time.monotonic() - started:.1f} s; the old tables are dropped", file=out)
            return True
        if row["building_tag"] != tag:
            if row["building_tag"] is None:
                bar.close()
                click.echo(f"{name}: the build {tag} was withdrawn (by someone else); "
                           f"{row['active_tag']} still answers", file=out)
                return False
            # a newer build took its place (the service's code has a new version): follow it
            bar.close()
            click.echo(f"{name}: {tag} was replaced by {row['building_tag']}; watching that",
                       file=out)
            tag, ours, picked_up = row["building_tag"], False, False
            last_done, last_change = -1, time.monotonic()
            bar = _Progress(name, out)
            continue
        now = time.monotonic()
        if done != last_done:
            last_done, last_change = done, now
        bar.update(done, total)
        if now - last_change > STALL_SECONDS:
            bar.close()
            return await _stalled(db, schema, service, name, tag, ours, picked_up, out)
        await asyncio.sleep(POLL_SECONDS)


async def _stalled(db: asyncpg.Connection, schema: str, service: str, name: str, tag: str,
                   ours: bool, picked_up: bool, out: TextIO) -> bool:
    if picked_up:
        click.echo(f"{name}: the build {tag} made no progress for {STALL_SECONDS:.0f} s. It "
                   f"stays requested: the {service} service goes on with it when it runs "
                   "(see `bapas status` and the service's log).", file=out)
        return False
    withdrawn = False
    if ours:
        async with db.transaction():
            withdrawn = await withdraw_rebuild(db, schema, name, tag)
    what = ("the request is withdrawn; nothing was changed" if withdrawn else
            "the request is left as it was")
    click.echo(f"{name}: no {service} service took the build up within {STALL_SECONDS:.0f} s: "
               f"is it running (`bapas up`, `bapas status`)? {what}.", file=out)
    return False


class _Progress:
    """One line: bar, percentage, events, rate and ETA. On a terminal it is redrawn in
    place; otherwise a line is printed at most every PRINT_EVERY_SECONDS."""

    def __init__(self, name: str, out: TextIO) -> None:
        self.name = name
        self.out = out
        self.tty = out.isatty()
        self.samples: deque[tuple[float, int]] = deque()
        self.last_print = 0.0
        self.last_line = ""
        self.open = False

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW_SECONDS:
            self.samples.popleft()
        line = self._line(done, total)
        if self.tty:
            click.echo("\r" + line.ljust(len(self.last_line)), file=self.out, nl=False)
            self.open = True
        elif line != self.last_line and now - self.last_print >= PRINT_EVERY_SECONDS:
            click.echo(line, file=self.out)
            self.last_print = now
        self.last_line = line

    def finish(self, total: int) -> None:
        self.samples.append((time.monotonic(), total))
        line = self._line(total, total)
        if self.tty:
            click.echo("\r" + line.ljust(len(self.last_line)), file=self.out)
            self.open = False
        elif line != self.last_line:
            click.echo(line, file=self.out)
        self.last_line = line

    def close(self) -> None:
        if self.open:
            click.echo("", file=self.out)
            self.open = False

    def _line(self, done: int, total: int) -> str:
        fraction = done / total if total else 1.0
        filled = int(BAR_WIDTH * fraction)
        rate = self._rate()
        if done >= total:
            eta = "0:00"
        elif rate:
            eta = _clock((total - done) / rate)
        else:
            eta = "--:--"
        return (f"{self.name} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction:4.0%} "
                f"{done:,}/{total:,} events {rate:,.0f}/s ETA {eta}")

    def _rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _redact(dsn: str) -> str:
    try:
        parts = urllib.parse.urlsplit(dsn)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass
    return dsn
