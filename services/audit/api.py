"""Audit over HTTP: read-only. Auditors read every office; the head of an office reads its
own clients (and the cases they were transferred from).

History and state are read from the audit's copy of the events (its event index); verify
and export read the streams, the source of truth, and verify compares the copy with them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import orjson
import structlog
from fastapi import APIRouter, Path, Query, Request, Response

from shared.runtime import Kernel
from shared.streams import CaseRef
from shared.web.auth import CurrentPrincipal, Principal, not_found, require_roles
from shared.web.inputs import PLAIN_TEXT, Instant
from shared.web.problems import PROBLEM_RESPONSES, Problem

from .history import (
    CaseIndex,
    StoredEvent,
    bundle,
    compare_copy,
    history,
    lineage,
    state_as_of,
    verify,
)
from .projections import EventIndex

CLIENT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
log = structlog.get_logger("bapas.audit")
ClientId = Annotated[str, Path(pattern=CLIENT_ID_PATTERN, description="client id")]


def build_router(kernel: Kernel) -> APIRouter:
    api = APIRouter(prefix="/v1/audit", tags=["audit"], responses=PROBLEM_RESPONSES,
                    dependencies=[require_roles("auditor", "head")])
    clients = f'"{kernel.schema}".clients'
    reads = f'"{kernel.schema}".reads'

    async def index(client_id: str):
        row = await kernel.pool.fetchrow(
            f"SELECT office, transferred_from_office, transferred_from_client FROM {clients} "
            "WHERE client_id = $1", client_id)
        return None if row is None else (row["office"], row["transferred_from_office"],
                                         row["transferred_from_client"])

    async def cases_of(principal: Principal, client_id: str) -> list[CaseRef]:
        refs = await lineage(index, client_id)
        if not refs:
            raise not_found("client")
        # the head of the office that holds the client now reads its whole history
        if "auditor" not in principal.roles and refs[-1].office != principal.office:
            raise not_found("client")
        return refs

    copies = EventIndex.reader(kernel.pool, kernel.schema, copy=True)
    seqs = EventIndex.reader(kernel.pool, kernel.schema, copy=False)

    async def read(refs: list[CaseRef], index: CaseIndex) -> list[StoredEvent] | None:
        """The events through the event index; None while it has no table yet (a new
        version of it is being built, after an upgrade, and is not switched to)."""
        try:
            return await history(kernel.store, kernel.catalog, refs, index)
        except asyncpg.UndefinedTableError:
            log.warning("event index not built yet: reading the case by its subjects")
            return None

    async def events_of(principal: Principal, client_id: str, *, from_streams: bool = False):
        """The client's events from the audit's copy, or read back from the streams."""
        refs = await cases_of(principal, client_id)
        events = await read(refs, seqs if from_streams else copies)
        if events is None:
            events = await history(kernel.store, kernel.catalog, refs)
        return refs, events

    @api.get("/clients/{client_id}/history",
             summary="Every context's events of the client in time order, links checked")
    async def get_history(client_id: ClientId, principal: CurrentPrincipal) -> Response:
        refs, events = await events_of(principal, client_id)
        # serialised directly with orjson, each event's data straight from pydantic: the
        # JSON of a long history was the largest cost of its answer
        return Response(orjson.dumps({
            "client_id": client_id,
            "cases": [{"office": r.office, "client_id": r.client_id} for r in refs],
            "events": [e.as_dict(data_as_json=True) for e in events],
            "intact": all(e.link_holds for e in events)}), media_type="application/json")

    @api.get("/clients/{client_id}/state",
             summary="The state of the case in each context at an instant")
    async def get_state(client_id: ClientId, principal: CurrentPrincipal,
                        as_of: Instant | None = Query(None, description="RFC 3339; "
                                                            "default: now")) -> dict[str, Any]:
        refs, events = await events_of(principal, client_id)
        at = as_of or datetime.now(UTC)
        return {"client_id": client_id, "as_of": at.isoformat(),
                "contexts": state_as_of(events, refs[-1], at)}

    @api.get("/clients/{client_id}/verify",
             summary="Recompute the hash chains from the streams: intact, or the first broken "
                     "link and why; and whether the audit's copy matches the streams")
    async def get_verify(client_id: ClientId, principal: CurrentPrincipal) -> dict[str, Any]:
        refs, stored = await events_of(principal, client_id, from_streams=True)
        copied = await read(refs, copies)
        copy = (compare_copy(stored, copied) if copied is not None else
                {"matches": None, "detail": "the audit's event index is being built"})
        return {"client_id": client_id, **verify(stored), "copy": copy}

    @api.get("/clients/{client_id}/export",
             summary="A self-contained bundle of the client's events and a manifest of hashes")
    async def get_export(client_id: ClientId, principal: CurrentPrincipal) -> dict[str, Any]:
        _, events = await events_of(principal, client_id, from_streams=True)
        return bundle(client_id, events, datetime.now(UTC))

    @api.get("/access", summary="Who read which client, when")
    async def access(principal: CurrentPrincipal,
                     client_id: Annotated[str | None, Query(pattern=CLIENT_ID_PATTERN)] = None,
                     actor: Annotated[str | None, Query(max_length=64, pattern=PLAIN_TEXT)] = None,
                     since: Instant | None = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
        if not (client_id or actor or since):
            raise Problem(422, "Invalid request", "name a client_id, an actor or a since time",
                          rule="filter_required", field="query")
        office = None if "auditor" in principal.roles else principal.office
        rows = await kernel.pool.fetch(
            f"SELECT client_id, client_office, actor, actor_office, actor_roles, service, what,"
            f" at FROM {reads} WHERE ($1::text IS NULL OR client_id = $1) AND ($2::text IS NULL"
            " OR actor = $2) AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::text IS NULL "
            "OR client_office = $4) ORDER BY at DESC LIMIT $5",
            client_id, actor, since, office, limit)
        return {"reads": [{**dict(r), "actor_roles": list(r["actor_roles"]),
                           "at": r["at"].isoformat()} for r in rows]}

    privacy = APIRouter(prefix="/v1/privacy", tags=["privacy"], responses=PROBLEM_RESPONSES,
                        dependencies=[require_roles("auditor", "head")])

    @privacy.get("/subjects/{client_id}/report",
                 summary="Subject access (UU 27/2022): everything held on the person, "
                         "decrypted, and who read it when (the read is recorded)")
    async def subject_report(client_id: ClientId, request: Request,
                             principal: CurrentPrincipal) -> Response:
        refs, events = await events_of(principal, client_id)
        now = datetime.now(UTC)
        await kernel.access.record(principal, refs[-1],
                                   f"GET /v1/privacy/subjects/{client_id}/report",
                                   request.state.correlation_id)
        rows = await kernel.pool.fetch(
            f"SELECT client_id, client_office, actor, actor_office, actor_roles, service, what,"
            f" at FROM {reads} WHERE client_id = ANY($1::text[]) ORDER BY at",
            [r.client_id for r in refs])
        return Response(orjson.dumps({
            "client_id": client_id,
            "generated_at": now.isoformat(),
            "erased": any(e.envelope.type.startswith("bapas.PersonErased.") for e in events),
            "cases": [{"office": r.office, "client_id": r.client_id} for r in refs],
            "held": state_as_of(events, refs[-1], now),
            "events": [{k: v for k, v in e.as_dict(data_as_json=True).items()
                        if k in ("type", "context", "office", "time", "actor", "data")}
                       for e in events],
            "reads": [{**dict(r), "actor_roles": list(r["actor_roles"]),
                       "at": r["at"].isoformat()} for r in rows]}),
            media_type="application/json")

    root = APIRouter()
    root.include_router(api)
    root.include_router(privacy)
    return root
