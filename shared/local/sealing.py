"""`bapas privacy seal-existing`: the one-off migration of events written before personal
fields were sealed (shared.privacy).

A stream's messages cannot be changed in place, so each case context's stream is
rewritten whole, with the system's services stopped:

1. every message of the stream is read, in order, and written to a backup file (it holds
   the plaintext: keep it only until the migration is verified, then destroy it);
2. each personal value not yet sealed is sealed with its person's key, and every case
   whose bodies changed gets its hash chain recomputed from the first changed event on;
3. the stream is deleted, provisioned anew with the same profile, and every message is
   published again in the same order, with the same event ids, times and headers but the
   new body and hashes: stream sequences stay 1..N, so the read models' positions hold;
4. a manifest (JSON lines: event id, stream sequence, the old and the new hash) records
   what changed, so an auditor can tie an export taken before to the chain after.

The same rewrite renames the cases a context names by a personal value in an earlier
version's way (`renames`: the NIK index's unkeyed digests, see
services.registration.events.rekeyed_nik_case): subject and `ce-subject` change, the chain
does not (it hashes neither), and the services' copies of those cases are forgotten.

Refused where a stream has gaps (positions would shift), where services are connected,
and on office leaves or a hub (streams sourced across servers). `--restore BACKUP`
publishes a backup's messages back into an emptied stream.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.js.errors
from nats.aio.client import Client as NATS

from ..case_cache import CASE_CACHE_TABLE
from ..db import quote_ident
from ..envelope import GENESIS_HASH, Envelope, chain_hash
from ..events import EventCatalog
from ..privacy import KeyRing, is_sealed, personal_paths
from ..settings import Settings
from ..store import EventStore
from ..streams import Topology, ensure_streams

__all__ = ["CASE_CONTEXTS", "SealingError", "SealReport", "seal_existing", "restore"]

CASE_CONTEXTS = ("registration", "guidance", "supervision")


class SealingError(Exception):
    """Said to the operator as it is; nothing was changed."""


@dataclass
class SealReport:
    context: str
    messages: int = 0
    sealed_events: int = 0
    rechained_events: int = 0
    renamed_cases: int = 0
    manifest: list[dict[str, Any]] = field(default_factory=list)


def _personal_unsealed(doc: Any, paths: tuple[tuple[str, ...], ...]) -> list[tuple[str, ...]]:
    out = []
    for path in paths:
        node = doc
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(path[-1]) is not None \
                and not is_sealed(node[path[-1]]):
            out.append(path)
    return out


async def _read_all(store: EventStore, context: str) -> list[dict[str, Any]]:
    stream = store.topology.stream(context)
    info = await store._nc.jetstream().stream_info(stream)
    state = info.state
    if state.messages and (state.first_seq != 1 or state.messages != state.last_seq):
        raise SealingError(f"stream {stream} has gaps (sequences {state.first_seq} to "
                           f"{state.last_seq}, {state.messages} messages): the read models' "
                           "positions would no longer point at the same events")
    if not state.messages:
        return []
    # every subject of the stream, in stream order (a wildcard Direct Get)
    messages = await store.read_subject(stream, store.topology.context_filter(
        context, store.topology.office or "*"))
    return [{"seq": int(m.headers["Nats-Sequence"]), "subject": m.headers["Nats-Subject"],
             "headers": dict(m.headers), "data": m.data or b""} for m in messages]


def _write_backup(path: Path, stream: str, messages: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as out:
        for m in messages:
            out.write(json.dumps({"stream": stream, "seq": m["seq"], "subject": m["subject"],
                                  "headers": m["headers"],
                                  "data": base64.b64encode(m["data"]).decode()}) + "\n")
        out.flush()
        os.fsync(out.fileno())


Rename = Callable[[str], "str | None"]  # a case id to its new one, None to keep it


async def seal_existing(nc: NATS, topology: Topology, catalog: EventCatalog, keys: KeyRing,
                        backup: Path, *, contexts: tuple[str, ...] = CASE_CONTEXTS,
                        renames: Mapping[str, Rename] | None = None,
                        progress: Callable[[str], None] = lambda _: None) -> list[SealReport]:
    if topology.office or topology.leaves:
        raise SealingError("an office leaf or a hub sources streams across servers: migrate "
                           "a single deployment (or each office before it joins a hub)")
    js = nc.jetstream()
    store = EventStore(nc, topology, catalog)  # raw reads only
    reports = []
    classes = {cls.event_type: cls for reg in catalog.registries for cls in reg.types()}
    for context in contexts:
        stream = topology.stream(context)
        report = SealReport(context)
        try:
            messages = await _read_all(store, context)
        except nats.js.errors.NotFoundError:
            reports.append(report)
            continue
        report.messages = len(messages)
        progress(f"{stream}: {len(messages)} messages read")
        # what must change, and the keys it needs
        plans: list[tuple[dict[str, Any], Any, list[tuple[str, ...]]]] = []
        for m in messages:
            env = Envelope.from_headers(m["headers"], m["subject"], m["seq"])
            name = env.type.split(".")[1] if env.type.count(".") == 2 else ""
            cls = classes.get(name)
            paths = personal_paths(cls) if cls is not None else ()
            doc = json.loads(m["data"]) if paths else None
            todo = _personal_unsealed(doc, paths) if paths else []
            plans.append((env, doc, todo))
        need = [env.client_id for env, _, todo in plans if todo]
        rename = (renames or {}).get(context)
        new_names = {env.client_id: new for env, _, _ in plans
                     if rename is not None and (new := rename(env.client_id)) is not None}
        if not need and not new_names:
            reports.append(report)
            progress(f"{stream}: nothing to seal")
            continue
        # each key in its case's office (where offices keep databases of their own, the
        # services publish it to the KEYS stream: KeyRing.keep_shared)
        if need:
            await keys.prepare(need, create=True, offices={
                env.client_id: env.office for env, _, todo in plans if todo})
        # new bodies, and each case's chain from its first change on
        prev: dict[str, tuple[str, str]] = {}  # subject -> (old last hash, new last hash)
        rewritten = []
        for m, (env, doc, todo) in zip(messages, plans, strict=True):
            old_prev, new_prev = prev.get(m["subject"], (GENESIS_HASH, GENESIS_HASH))
            body = m["data"]
            if todo:
                for path in todo:
                    node = doc
                    for part in path[:-1]:
                        node = node[part]
                    node[path[-1]] = keys.seal(env.client_id, node[path[-1]])
                body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
                report.sealed_events += 1
            headers = dict(m["headers"])
            if body != m["data"] or new_prev != old_prev:
                new_hash = chain_hash(new_prev, env.id, env.type, env.time, body)
                headers["ce-prevhash"], headers["ce-hash"] = new_prev, new_hash
                report.rechained_events += 1
                report.manifest.append({"stream": stream, "seq": m["seq"], "event_id": env.id,
                                        "subject": m["subject"], "old_hash": env.hash,
                                        "new_hash": new_hash})
            prev[m["subject"]] = (env.hash, headers.get("ce-hash", env.hash))
            subject = m["subject"]
            if (new_name := new_names.get(env.client_id)) is not None:
                subject = f"{subject.rsplit('.', 1)[0]}.{new_name}"
                headers["ce-subject"] = new_name
            rewritten.append((subject, headers, body))
        report.renamed_cases = len(new_names)
        _write_backup(backup, stream, messages)
        progress(f"{stream}: backup written to {backup}")
        await _republish(js, topology, stream, context, rewritten)
        progress(f"{stream}: {report.sealed_events} events sealed, "
                 f"{report.rechained_events} rechained, {report.renamed_cases} cases renamed")
        reports.append(report)
    return reports


def _kept(headers: dict[str, str]) -> dict[str, str]:
    """The event's own headers, and its id; not the server's, nor an append's (its
    expectations, its atomic batch)."""
    return {k: v for k, v in headers.items() if not k.startswith("Nats-") or k == "Nats-Msg-Id"}


async def _republish(js: Any, topology: Topology, stream: str, context: str,
                     messages: list[tuple[str, dict[str, str], bytes]]) -> None:
    try:
        replicas = (await js.stream_info(stream)).config.num_replicas or 1
        await js.delete_stream(stream)
    except nats.js.errors.NotFoundError:
        replicas = 1
    await ensure_streams(js, topology, replicas, contexts=(context,))
    for subject, headers, body in messages:
        await js.publish(subject, body, headers=_kept(headers), stream=stream)


async def restore(nc: NATS, topology: Topology, backup: Path) -> dict[str, int]:
    """Publish a backup's messages back: each stream named in it is emptied first."""
    by_stream: dict[str, list[tuple[str, dict[str, str], bytes]]] = {}
    for line in backup.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        by_stream.setdefault(rec["stream"], []).append(
            (rec["subject"], rec["headers"], base64.b64decode(rec["data"])))
    js = nc.jetstream()
    contexts = {topology.stream(c): c for c in CASE_CONTEXTS}
    for stream, messages in by_stream.items():
        await _republish(js, topology, stream, contexts[stream], messages)
    return {stream: len(m) for stream, m in by_stream.items()}


async def forget_copies(pool: Any, topology: Topology, case_pattern: str) -> int:
    """Delete the services' copies (shared.case_cache) of the cases whose id matches
    `case_pattern` (a regular expression): cases renamed would otherwise keep their old
    names there."""
    forgotten = 0
    for service in CASE_CONTEXTS:
        table = f"{quote_ident(topology.schema(service))}.{CASE_CACHE_TABLE}"
        async with pool.acquire() as conn:
            if await conn.fetchval("SELECT to_regclass($1)", table) is None:
                continue
            done = await conn.execute(f"DELETE FROM {table} WHERE subject ~ $1",
                                      r"\." + case_pattern + "$")
            forgotten += int(done.split()[-1])
    return forgotten


# ------------------------------------------------------------------------------ the commands


@contextlib.contextmanager
def _servers(data: Path) -> Iterator[Settings]:
    """Settings for BAPAS_NATS_URL and BAPAS_DATABASE_URL if set, else for the embedded
    servers of `bapas up --data DATA`, started for the command (`bapas up` must be stopped:
    its services would write while a stream is rewritten)."""
    from .servers import NatsServer, PostgresServer
    from .up import load_secret, read_run_file

    if read_run_file(data):
        raise SealingError(f"`bapas up --data {data}` is running: stop it first (its "
                           "services would write meanwhile)")
    started: list[Any] = []
    env = {k[6:].lower(): v for k, v in os.environ.items() if k.startswith("BAPAS_")}
    try:
        if not env.get("nats_url"):
            started.append(NatsServer(data / "nats").start())
            env["nats_url"] = started[-1].url
        if not env.get("database_url"):
            started.append(PostgresServer(data / "postgres").start())
            env["database_url"] = started[-1].dsn
        env.setdefault("env", "development" if started else "production")
        if not env.get("jwt_secret") and (secret := load_secret(data)):
            env["jwt_secret"] = secret
        yield Settings(**{k: v for k, v in env.items()
                          if k in ("env", "nats_url", "database_url", "namespace",
                                   "jwt_secret", "privacy_master_keys",
                                   "privacy_index_key")})
    finally:
        for server in reversed(started):
            server.stop()


def run(data: Path, backup: Path | None = None, *, restore_from: Path | None = None,
        rewrap: bool = False, echo: Callable[[str], None] = print) -> int:
    """`bapas privacy seal-existing` (or `--restore`), and `bapas privacy rewrap`."""
    import asyncio

    from ..db import create_pool
    from ..runtime import connect_nats, index_key, master_keys

    async def go(settings: Settings) -> int:
        from services.guidance.events import EVENTS as guidance
        from services.registration.events import EVENTS as registration
        from services.registration.events import UNKEYED_NIK_CASE, rekeyed_nik_case
        from services.supervision.events import EVENTS as supervision

        topology = settings.topology
        nc = await connect_nats(settings.nats_url, "bapas-privacy")
        pool = await create_pool(settings.dsn, max_size=2)
        try:
            keys = KeyRing(pool, topology.schema("privacy"), master_keys(settings))
            await keys.ensure_schema()
            if rewrap:
                echo(f"{await keys.rewrap()} data keys wrapped anew with master key "
                     f"{keys.masters.current}")
                return 0
            if restore_from is not None:
                for stream, n in (await restore(nc, topology, restore_from)).items():
                    echo(f"{stream}: {n} messages restored")
                return 0
            assert backup is not None
            index = index_key(settings)
            reports = await seal_existing(
                nc, topology, EventCatalog(registration, guidance, supervision), keys,
                backup, renames={"registration": lambda case: rekeyed_nik_case(case, index)},
                progress=echo)
            sealed = sum(r.sealed_events for r in reports)
            renamed = sum(r.renamed_cases for r in reports)
            if renamed:
                await forget_copies(pool, topology, UNKEYED_NIK_CASE.pattern)
                echo(f"{renamed} NIK index cases renamed by the keyed digest "
                     "(BAPAS_PRIVACY_INDEX_KEY)")
            if not sealed and not renamed:
                echo("nothing to seal: every personal value is sealed already")
                return 0
            manifest = backup.with_suffix(".manifest.jsonl")
            with open(manifest, "a", encoding="utf-8") as out:
                for r in reports:
                    for line in r.manifest:
                        out.write(json.dumps(line) + "\n")
            echo(f"{sealed} events sealed; manifest of changed hashes in {manifest}; the "
                 f"backup {backup} holds the plaintext: destroy it once the system runs well")
            echo("then rebuild the audit service's event index (`bapas rebuild audit`): "
                 "its copies hold the old bodies and names")
            return 0
        finally:
            await pool.close()
            await nc.close()

    try:
        with _servers(data) as settings:
            return asyncio.run(go(settings))
    except (SealingError, ValueError) as exc:
        echo(f"bapas privacy: {exc}")
        return 1
