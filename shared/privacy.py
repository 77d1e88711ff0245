"""Personal data under UU 27/2022 (PDP): every personal field of an event is stored sealed
with a data key of its person, so that destroying the key erases the person from every
event without rewriting history (crypto-shredding).

- A field is personal when its event model marks it `Annotated[..., PERSONAL]` (names, NIK,
  birth date, addresses, phone numbers, family contacts, free-text notes). Such fields are
  optional in the models: after erasure they read as None.
- At append, each personal value is replaced in the stored body by
  `sealed:v1:<key id>:<base64 nonce + AES-256-GCM ciphertext of its JSON>`, the additional
  data binding it to its person (the case's client id). The hash chain covers the stored
  bytes, so `bapas audit verify` checks it with or without keys.
- Data keys live in PostgreSQL, in a schema of their own (`<namespace>privacy`), each
  wrapped (AES-256-GCM) by a master key from `BAPAS_PRIVACY_MASTER_KEYS`
  (`kid=base64key,...`: the first wraps new keys; the others still unwrap, so master keys
  rotate without re-wrapping at once). In development the master key is derived from the
  token secret; outside it there is none unless configured.
- Reading: a decoder given the key ring opens sealed values; a value whose key was
  destroyed, or read where no key ring is, reads as None.

Keys are opened into memory in batches before events are decoded (`KeyRing.prepare`), so
decoding stays synchronous.

Where offices keep databases of their own (an office's leaf, the hub: DESIGN §8), a key
made in an office's database is also published, still wrapped by the master key (which
every office and the hub hold), to the KEYS stream of the office's JetStream, one message
per person; the hub's KEYS stream sources every office's. A service that reads a case whose
key is not in its own database (the hub's readers; an office reading where a transferred
client came from) takes it from there (`KeyReplica`). Destroying a key publishes the
person's destroyed key, which replaces the wrapped one in the stream (one message per
subject), at the office and, once sourced, at the hub. A key not found anywhere yet (the
events reached the hub before the key did) is a retryable `KeyUnavailable`, never a value
read as None. Erasing a person whose earlier case is another office's destroys that key
at that office, which reacts to the `PersonErased` event.

A personal value that names an index case (the NIK index of registration: one NIK, one
case) is named by a keyed digest (`IndexKey`, HMAC-SHA-256 with `BAPAS_PRIVACY_INDEX_KEY`),
never by the value nor a plain digest of it: a NIK has a known structure (region, birth
date, serial), so a plain digest found in a stream read raw gives the NIK back by trying
them all, even after the person was erased.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_args, get_origin

import asyncpg
import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel

from .errors import Unavailable

__all__ = ["PERSONAL", "SEALED_PREFIX", "KeyRing", "KeyReplica", "KeyUnavailable", "MasterKeys",
           "SharedKey", "IndexKey", "personal_paths", "seal_body", "open_value", "is_sealed",
           "ErasedPerson"]

log = structlog.get_logger("bapas.privacy")

SEALED_PREFIX = "sealed:v1:"
ERASED_NOTICE = "privacy.erased"  # Topology.notice: core NATS, not a stream
KEY_CACHE_SECONDS = 60.0  # an erasure in another process is seen here within this time
SHARE_EVERY_SECONDS = 5.0  # keys not yet published to the KEYS stream are tried this often


class _Personal:
    """The marker of a personal field: `Annotated[str | None, PERSONAL]`."""

    def __repr__(self) -> str:
        return "PERSONAL"


PERSONAL = _Personal()


class ErasedPerson(Exception):
    """The person's key is destroyed: their personal data can no longer be read."""


def personal_paths(model: type[BaseModel]) -> tuple[tuple[str, ...], ...]:
    """Every path to a personal field, into nested models (`("person", "nik")`)."""
    cached = _PATHS.get(model)
    if cached is not None:
        return cached
    out: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        if any(m is PERSONAL for m in info.metadata):
            out.append((name,))
            continue
        for inner in _models_in(info.annotation):
            out.extend((name, *p) for p in personal_paths(inner))
    result = tuple(out)
    _PATHS[model] = result
    return result


_PATHS: dict[type, tuple[tuple[str, ...], ...]] = {}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) is not None and get_origin(annotation) not in (list, tuple, dict):
        return [m for a in get_args(annotation) for m in _models_in(a)]
    return []


# ------------------------------------------------------------------------------ master keys


class MasterKeys:
    """Master keys by id; the first wraps new data keys, every one unwraps."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        if not keys:
            raise ValueError("no master key")
        for kid, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"master key {kid!r} must be 32 bytes (AES-256)")
        self._keys = dict(keys)
        self.current = next(iter(keys))

    @classmethod
    def parse(cls, text: str) -> MasterKeys:
        """`kid=base64,kid2=base64` (the first is the current one)."""
        keys: dict[str, bytes] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            kid, sep, b64 = part.partition("=")
            if not sep or not kid or not b64.strip("= "):
                raise ValueError("BAPAS_PRIVACY_MASTER_KEYS: write kid=base64key[,kid=...]")
            keys[kid.strip()] = base64.b64decode(b64.strip() + "=" * (-len(b64.strip()) % 4))
        return cls(keys)

    @classmethod
    def development(cls, secret: str) -> MasterKeys:
        return cls({"dev": hmac.new(secret.encode(), b"bapas privacy master key",
                                    hashlib.sha256).digest()})

    def wrap(self, data_key: bytes, subject: str) -> tuple[str, bytes]:
        nonce = os.urandom(12)
        return self.current, nonce + AESGCM(self._keys[self.current]).encrypt(
            nonce, data_key, subject.encode())

    def unwrap(self, kid: str, wrapped: bytes, subject: str) -> bytes:
        key = self._keys.get(kid)
        if key is None:
            raise ValueError(f"the data key of {subject} is wrapped by master key {kid!r}, "
                             "which BAPAS_PRIVACY_MASTER_KEYS no longer holds")
        return AESGCM(key).decrypt(wrapped[:12], wrapped[12:], subject.encode())


# ------------------------------------------------------------------------------ data keys


class IndexKey:
    """The key of the digests that name index cases by a personal value.

    It is not a master key: master keys rotate, while an index case must keep its name
    (the stream holds its events under it). At least 32 characters; in development one is
    derived from the token secret."""

    MIN_LENGTH = 32

    def __init__(self, key: bytes) -> None:
        if len(key) < self.MIN_LENGTH:
            raise ValueError(f"BAPAS_PRIVACY_INDEX_KEY must be at least {self.MIN_LENGTH} "
                             "characters")
        self._key = key

    @classmethod
    def parse(cls, text: str) -> IndexKey:
        return cls(text.encode())

    @classmethod
    def development(cls, secret: str) -> IndexKey:
        return cls(hmac.new(secret.encode(), b"bapas privacy index key",
                            hashlib.sha256).hexdigest().encode())

    def digest(self, value: str) -> str:
        """160 bits of HMAC-SHA-256 in hex: a subject token naming `value` without it."""
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:40]

    def __repr__(self) -> str:
        return "IndexKey(...)"


class KeyUnavailable(Unavailable):
    """Sealed events of persons whose keys have not reached this place yet (the KEYS stream
    is sourced apart from the events) or cannot be asked for now: retried, never read as
    None."""

    def __init__(self, subjects: list[str]) -> None:
        super().__init__("the data keys of " + ", ".join(subjects[:5])
                         + (f" and {len(subjects) - 5} more" if len(subjects) > 5 else ""))
        self.subjects = subjects


@dataclass(frozen=True, slots=True)
class SharedKey:
    """A person's key as the KEYS stream carries it: wrapped by a master key; `wrapped` None
    once destroyed."""

    subject: str
    office: str
    kid: str
    master_kid: str
    wrapped: bytes | None

    def body(self) -> bytes:
        return json.dumps({"kid": self.kid, "master_kid": self.master_kid,
                           "wrapped": None if self.wrapped is None
                           else base64.b64encode(self.wrapped).decode()}).encode()

    @classmethod
    def parse(cls, subject: str, office: str, body: bytes) -> SharedKey:
        doc = json.loads(body)
        wrapped = doc.get("wrapped")
        return cls(subject, office, str(doc["kid"]), str(doc["master_kid"]),
                   None if wrapped is None else base64.b64decode(wrapped))


class KeyReplica:
    """The KEYS stream: where an office's keys are published and other offices' are found.

    `readers` are the places to look, in order: on an office's leaf its own JetStream, then
    the hub's (every office's keys, sourced); at the hub, its own."""

    def __init__(self, js: Any, topology: Any, readers: list[Any]) -> None:
        self.js = js  # nats-py JetStreamContext of this place's domain
        self.topology = topology
        self.readers = readers  # EventStore-s (their `last_of_each`), local first
        self.stream = topology.stream("keys")

    async def publish(self, key: SharedKey) -> None:
        state = "live" if key.wrapped is not None else "destroyed"
        await self.js.publish(self.topology.key_subject(key.office, key.subject), key.body(),
                              stream=self.stream, timeout=5.0,
                              headers={"Nats-Msg-Id": f"key:{key.subject}:{key.kid}:{state}"})

    async def lookup(self, subjects: list[str]) -> dict[str, SharedKey]:
        """The keys found of these persons (client ids); raises KeyUnavailable when a place
        to look does not answer."""
        found: dict[str, SharedKey] = {}
        wanted = list(subjects)
        for reader in self.readers:
            if not wanted:
                break
            try:
                messages = await reader.last_of_each(
                    self.stream, [self.topology.key_subject("*", s) for s in wanted])
            except Exception as exc:  # noqa: BLE001 - the link cut, a server gone
                raise KeyUnavailable(wanted) from exc
            for m in messages:
                office, _, subject = self.topology.parse_subject(m.headers["Nats-Subject"])
                found[subject] = SharedKey.parse(subject, office, m.data)
            wanted = [s for s in wanted if s not in found]
        return found


@dataclass(frozen=True, slots=True)
class _DataKey:
    kid: str
    key: bytes | None  # None: destroyed
    fetched: float
    aead: AESGCM | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.key is not None and self.aead is None:
            # made once: every value of the person uses it
            object.__setattr__(self, "aead", AESGCM(self.key))


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


class KeyRing:
    """The data keys of the persons a service reads and writes, in its process."""

    def __init__(self, pool: asyncpg.Pool, schema: str, masters: MasterKeys,
                 replica: KeyReplica | None = None) -> None:
        self.pool = pool
        self.schema = schema
        self.table = f'"{schema}".subject_keys'
        self.masters = masters
        self.replica = replica  # where offices keep databases of their own (module doc)
        self._keys: dict[str, _DataKey] = {}

    async def ensure_schema(self) -> None:
        async with self.pool.acquire() as conn:
            await ensure_key_tables(conn, self.schema)

    async def prepare(self, subjects: Iterable[str], *, create: bool = False,
                      offices: dict[str, str] | None = None) -> None:
        """Open the keys of these persons into memory (and make them where `create`: each
        in the office `offices` names, for the KEYS stream)."""
        now = time.monotonic()
        wanted = [s for s in dict.fromkeys(subjects)
                  if (k := self._keys.get(s)) is None or now - k.fetched > KEY_CACHE_SECONDS]
        if not wanted:
            return
        found = await (self._made(wanted, offices or {}) if create else self._rows(wanted))
        if self.replica is not None:
            if create:  # published before any event sealed with it is appended
                await self._share([k for k, shared in found.values() if not shared])
            unknown = [s for s in wanted if s not in found]
            if unknown:
                remote = await self.replica.lookup(unknown)
                found.update({s: (k, True) for s, k in remote.items()})
                if not create and (gone := [s for s in unknown if s not in remote]):
                    raise KeyUnavailable(gone)
        for subject in wanted:
            got = found.get(subject)
            if got is None:
                self._keys.pop(subject, None)
                continue
            key = got[0]
            data_key = (None if key.wrapped is None else
                        self.masters.unwrap(key.master_kid, key.wrapped, subject))
            self._keys[subject] = _DataKey(key.kid, data_key, now)

    async def _rows(self, subjects: list[str]) -> dict[str, tuple[SharedKey, bool]]:
        rows = await self.pool.fetch(
            f"SELECT subject, kid, master_kid, wrapped, office, shared FROM {self.table} "
            "WHERE subject = ANY($1::text[])", subjects)
        return _keys_of(rows)

    async def _made(self, subjects: list[str], offices: dict[str, str]
                    ) -> dict[str, tuple[SharedKey, bool]]:
        """The persons' keys, made where they have none: one round trip (a registration
        batch waits on it). A key made by another process first is the one kept."""
        made = []
        for subject in subjects:
            master_kid, wrapped = self.masters.wrap(os.urandom(32), subject)
            made.append((subject, "k" + os.urandom(8).hex(), master_kid, wrapped,
                         offices.get(subject)))
        rows = await self.pool.fetch(f"""
            WITH new AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[],
                                              $5::text[])
                         AS n(subject, kid, master_kid, wrapped, office)),
                 ins AS (INSERT INTO {self.table} (subject, kid, master_kid, wrapped, office)
                         SELECT subject, kid, master_kid, wrapped, office FROM new
                         ON CONFLICT (subject) DO NOTHING
                         RETURNING subject, kid, master_kid, wrapped, office, shared)
            SELECT * FROM ins
            UNION ALL  -- the keys there were already (the statement does not see its own)
            SELECT k.subject, k.kid, k.master_kid, k.wrapped, k.office, k.shared
              FROM {self.table} k JOIN new USING (subject)""",
            *map(list, zip(*made, strict=True)))
        found = _keys_of(rows)
        # made by another process after this statement's snapshot was taken: read anew
        late = [s for s in subjects if s not in found]
        return found | (await self._rows(late) if late else {})

    async def _share(self, keys: list[SharedKey]) -> None:
        """Publish these keys (or their destruction) to the KEYS stream, then note them
        shared. A key of no known office (made before offices had databases of their own)
        is published by `share_pending` once an office is known for it."""
        assert self.replica is not None
        keys = [k for k in keys if k.office]
        await asyncio.gather(*(self.replica.publish(k) for k in keys))  # one wait for all
        if keys:
            await self.pool.executemany(
                f"UPDATE {self.table} SET shared = true WHERE subject = $1 AND "
                "(wrapped IS NULL) = $2", [(k.subject, k.wrapped is None) for k in keys])

    async def share_pending(self, batch: int = 500) -> int:
        """Publish what is not yet in the KEYS stream (a publish that failed, a destroyed
        key whose notice did not get out). Returns how many were published."""
        rows = await self.pool.fetch(
            f"SELECT subject FROM {self.table} WHERE NOT shared AND office IS NOT NULL "
            "LIMIT $1", batch)
        keys = [k for k, _ in (await self._rows([r["subject"] for r in rows])).values()]
        await self._share(keys)
        return len(keys)

    async def keep_shared(self) -> None:
        """Background job: `share_pending` every few seconds."""
        while True:
            try:
                await self.share_pending()
            except Exception as exc:  # noqa: BLE001 - the stream or the database away
                log.warning("keys not yet published to the KEYS stream; retrying",
                            error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(SHARE_EVERY_SECONDS)

    def seal(self, subject: str, value: Any) -> str:
        key = self._keys.get(subject)
        if key is None:
            raise LookupError(f"no data key of {subject} prepared")
        if key.key is None:
            raise ErasedPerson(subject)
        nonce = os.urandom(12)
        sealed = key.aead.encrypt(nonce, json.dumps(value).encode(), subject.encode())
        return f"{SEALED_PREFIX}{key.kid}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, subject: str, value: str) -> Any:
        """The value, or None when the person's key is destroyed or unknown here."""
        key = self._keys.get(subject)
        if key is None or key.key is None:
            return None
        kid, _, blob = value[len(SEALED_PREFIX):].partition(":")
        if kid != key.kid:
            return None
        raw = base64.b64decode(blob)
        return json.loads(key.aead.decrypt(raw[:12], raw[12:], subject.encode()))

    def forget(self, subjects: Iterable[str]) -> None:
        """Drop these persons' keys from memory (an erasure elsewhere): the next read
        fetches them again, destroyed."""
        for subject in subjects:
            self._keys.pop(subject, None)

    def erased(self, subject: str) -> bool:
        key = self._keys.get(subject)
        return key is not None and key.key is None

    async def destroy(self, subject: str, *, by: str, legal_basis: str, at: datetime) -> bool:
        """Destroy the person's key (keeping the row: who erased, when, on what basis).
        True if a key was destroyed now."""
        rows = await self.pool.fetch(
            f"UPDATE {self.table} SET wrapped = NULL, destroyed_at = $2, destroyed_by = $3, "
            "legal_basis = $4, shared = false WHERE subject = $1 AND wrapped IS NOT NULL "
            "RETURNING subject, kid, master_kid, wrapped, office, shared",
            subject, at, by, legal_basis)
        self._keys[subject] = _DataKey(self._keys.get(subject, _DataKey("", None, 0)).kid, None,
                                       time.monotonic())
        if self.replica is not None and rows:  # failed here, `keep_shared` sends it again
            with contextlib.suppress(Exception):
                await self._share([k for k, _ in _keys_of(rows).values()])
        return bool(rows)

    async def is_erased(self, subject: str) -> bool:
        """True if the person's key is destroyed (an erasure, anywhere)."""
        try:
            await self.prepare([subject])
        except KeyUnavailable:
            return False  # not known here yet: not erased as far as this place can tell
        return self.erased(subject)

    async def rewrap(self) -> int:
        """Wrap every live data key with the current master key (after a rotation, before
        an old master key is retired). Returns how many were rewrapped."""
        rows = await self.pool.fetch(
            f"SELECT subject, master_kid, wrapped FROM {self.table} "
            "WHERE wrapped IS NOT NULL AND master_kid <> $1", self.masters.current)
        for r in rows:
            key = self.masters.unwrap(r["master_kid"], bytes(r["wrapped"]), r["subject"])
            kid, wrapped = self.masters.wrap(key, r["subject"])
            await self.pool.execute(
                f"UPDATE {self.table} SET master_kid = $2, wrapped = $3 WHERE subject = $1 "
                "AND wrapped IS NOT NULL", r["subject"], kid, wrapped)
        return len(rows)


def _keys_of(rows: Iterable[asyncpg.Record]) -> dict[str, tuple[SharedKey, bool]]:
    """Key rows as the stream would carry them, with whether it has them (`shared`)."""
    return {r["subject"]: (SharedKey(r["subject"], r["office"] or "", r["kid"], r["master_kid"],
                                     None if r["wrapped"] is None else bytes(r["wrapped"])),
                           r["shared"])
            for r in rows}


KEY_COLUMNS = ("subject", "kid", "master_kid", "wrapped", "created_at", "destroyed_at",
               "destroyed_by", "legal_basis", "office", "shared")


async def ensure_key_tables(conn: asyncpg.Connection, schema: str) -> None:
    """The key schema, made once however many services start at the same moment (they
    share it: CREATE ... IF NOT EXISTS alone races)."""
    have = await conn.fetchval(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 "
        "AND table_name = 'subject_keys' AND column_name = ANY($2::text[])",
        schema, list(KEY_COLUMNS))
    if have == len(KEY_COLUMNS):
        return  # made already: no DDL, which a service's own role may not run
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{schema}.keys")
        await _create_key_tables(conn, schema)


async def _create_key_tables(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await conn.execute(f"""
        CREATE TABLE IF NOT EXISTS "{schema}".subject_keys (
            subject      text PRIMARY KEY,
            kid          text NOT NULL,
            master_kid   text NOT NULL,
            wrapped      bytea,             -- NULL once destroyed
            created_at   timestamptz NOT NULL DEFAULT now(),
            destroyed_at timestamptz,
            destroyed_by text,
            legal_basis  text)""")
    # the office whose case the key seals, and whether the KEYS stream has its last state
    # (both used where offices keep databases of their own)
    await conn.execute(f'ALTER TABLE "{schema}".subject_keys '
                       "ADD COLUMN IF NOT EXISTS office text, "
                       "ADD COLUMN IF NOT EXISTS shared boolean NOT NULL DEFAULT false")


# ------------------------------------------------------------------------------ bodies


def seal_body(data: BaseModel, subject: str, keys: KeyRing) -> bytes:
    """The stored body of an event: its JSON with every personal value sealed."""
    paths = personal_paths(type(data))
    if not paths:
        return data.model_dump_json().encode()
    doc = data.model_dump(mode="json")
    for path in paths:
        node = _holder(doc, path)
        if node is not None and node.get(path[-1]) is not None:
            node[path[-1]] = keys.seal(subject, node[path[-1]])
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def open_paths(doc: dict, paths: tuple[tuple[str, ...], ...], subject: str,
               keys: KeyRing | None) -> dict:
    """`doc` (a body of the model whose personal paths these are) with the sealed values
    at those paths opened in place: the walk `seal_body` made, and nothing else."""
    for path in paths:
        node = _holder(doc, path)
        if node is not None and is_sealed(value := node.get(path[-1])):
            node[path[-1]] = keys.open(subject, value) if keys is not None else None
    return doc


def _holder(doc: Any, path: tuple[str, ...]) -> dict | None:
    """The dict that holds the value at `path` in a body, None where there is none."""
    node = doc
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def open_value(doc: Any, subject: str, keys: KeyRing | None) -> Any:
    """The JSON document with every sealed value opened (None where it cannot be)."""
    if isinstance(doc, dict):
        return {k: open_value(v, subject, keys) for k, v in doc.items()}
    if isinstance(doc, list):
        return [open_value(v, subject, keys) for v in doc]
    if is_sealed(doc):
        return keys.open(subject, doc) if keys is not None else None
    return doc
