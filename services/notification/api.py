"""Notification over HTTP: agency subscriptions, the delivery log, the officers' directory."""

from __future__ import annotations

import base64
import secrets as random_secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, EmailStr, Field

from shared.ids import new_id
from shared.runtime import Kernel
from shared.web.auth import CurrentPrincipal, Principal, not_found, require_roles
from shared.web.inputs import Input
from shared.web.problems import PROBLEM_RESPONSES, Problem

from . import domain as d
from .channels import webhook_handshake
from .settings import NotificationSettings

MANAGERS = ("admin", "head")
OFFICER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"


class _In(Input):
    pass


class DeliveryIn(_In):
    kind: Literal["WEBHOOK"]
    url: Annotated[str, Field(min_length=1, max_length=2000)]


class SubscriptionIn(_In):
    agency: Annotated[str, Field(min_length=1, max_length=200)]
    agency_kind: d.AgencyKind
    event_types: Annotated[list[str], Field(min_length=1, max_length=50)]
    data_level: d.DataLevel
    delivery: DeliveryIn


class SubscriptionOut(BaseModel):
    id: str
    office: str
    agency: str
    agency_kind: d.AgencyKind
    event_types: list[str]
    data_level: d.DataLevel
    delivery: dict[str, str]
    status: str
    paused_until: datetime | None
    created_at: datetime


class CreatedSubscription(SubscriptionOut):
    secret: str = Field(description="the signing secret (Standard Webhooks); shown only now")


class RotatedSecret(BaseModel):
    id: str
    secret: str
    previous_valid_until: datetime


class DeliveryOut(BaseModel):
    id: str
    channel: d.Channel
    subscription_id: str | None
    recipient: str | None
    event_id: str
    event_type: str
    client_id: str | None
    status: d.DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class OfficerIn(_In):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    email: EmailStr | None = None
    role: Literal["pk", "supervisor", "head"]


class OfficerOut(OfficerIn):
    officer_id: str
    office: str


def new_secret() -> str:
    return "whsec_" + base64.b64encode(random_secrets.token_bytes(32)).decode()


def build_router(kernel: Kernel, settings: NotificationSettings,
                 client: httpx.AsyncClient) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["notification"], responses=PROBLEM_RESPONSES)
    s = f'"{kernel.schema}"'
    manage = [require_roles(*MANAGERS)]

    def out(row: Any) -> dict[str, Any]:
        return {"id": row["id"], "office": row["office"], "agency": row["agency"],
                "agency_kind": row["agency_kind"], "event_types": list(row["event_types"]),
                "data_level": row["data_level"],
                "delivery": {"kind": row["delivery_kind"], "url": row["url"]},
                "status": row["status"], "paused_until": row["paused_until"],
                "created_at": row["created_at"]}

    async def own_subscription(principal: Principal, subscription_id: str) -> Any:
        row = await kernel.pool.fetchrow(
            f"SELECT * FROM {s}.subscriptions WHERE id = $1 AND office = $2 AND "
            "status = 'ACTIVE'", subscription_id, principal.office)
        if row is None:
            raise not_found("subscription")
        return row

    @api.post("/subscriptions", status_code=201, response_model=CreatedSubscription,
              summary="Subscribe an agency to this office's events (the secret is shown once)",
              dependencies=manage)
    async def subscribe(body: SubscriptionIn, principal: CurrentPrincipal) -> dict[str, Any]:
        event_types = d.check_event_types(body.event_types)
        url = d.check_webhook_url(body.delivery.url,
                                  development=kernel.settings.development)
        refused = await webhook_handshake(client, url, settings.webhook_origin)
        if refused:
            raise Problem(422, "Webhook validation failed", refused, field="delivery.url",
                          rule="webhook_handshake")
        secret = new_secret()
        row = await kernel.pool.fetchrow(
            f"INSERT INTO {s}.subscriptions (id, office, agency, agency_kind, event_types, "
            "data_level, delivery_kind, url, secret, created_at, created_by) VALUES ($1, $2, $3,"
            " $4, $5, $6, 'WEBHOOK', $7, $8, $9, $10) RETURNING *",
            new_id(), principal.office, body.agency, body.agency_kind.value, event_types,
            body.data_level.value, url, secret, datetime.now(UTC), principal.sub)
        return {**out(row), "secret": secret}

    @api.get("/subscriptions", response_model=list[SubscriptionOut],
             summary="This office's agency subscriptions", dependencies=manage)
    async def subscriptions(principal: CurrentPrincipal) -> list[dict[str, Any]]:
        rows = await kernel.pool.fetch(
            f"SELECT * FROM {s}.subscriptions WHERE office = $1 AND status = 'ACTIVE' "
            "ORDER BY created_at", principal.office)
        return [out(r) for r in rows]

    @api.delete("/subscriptions/{subscription_id}", status_code=204,
                summary="End a subscription (its pending deliveries are dropped)",
                dependencies=manage)
    async def unsubscribe(subscription_id: Annotated[str, Path(pattern=ID_PATTERN)],
                          principal: CurrentPrincipal) -> None:
        await own_subscription(principal, subscription_id)
        async with kernel.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"UPDATE {s}.subscriptions SET status = 'DELETED' WHERE id = $1",
                               subscription_id)
            await conn.execute(
                f"UPDATE {s}.deliveries SET status = 'SKIPPED', last_error = 'subscription "
                "deleted' WHERE subscription_id = $1 AND status IN ('PENDING', 'RETRYING')",
                subscription_id)

    @api.post("/subscriptions/{subscription_id}/rotate-secret", response_model=RotatedSecret,
              summary="A new signing secret; the old one still signs during the overlap",
              dependencies=manage)
    async def rotate(subscription_id: Annotated[str, Path(pattern=ID_PATTERN)],
                     principal: CurrentPrincipal) -> RotatedSecret:
        row = await own_subscription(principal, subscription_id)
        until = datetime.now(UTC) + timedelta(hours=settings.secret_overlap_hours)
        secret = new_secret()
        await kernel.pool.execute(
            f"UPDATE {s}.subscriptions SET secret = $2, previous_secret = $3, "
            "previous_secret_until = $4 WHERE id = $1", subscription_id, secret, row["secret"],
            until)
        return RotatedSecret(id=subscription_id, secret=secret, previous_valid_until=until)

    @api.get("/deliveries", response_model=list[DeliveryOut],
             summary="The delivery log of this office", dependencies=manage)
    async def deliveries(principal: CurrentPrincipal,
                         subscription_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
                         status: d.DeliveryStatus | None = None,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[Any]:
        rows = await kernel.pool.fetch(
            f"SELECT * FROM {s}.deliveries WHERE office = $1 AND ($2::text IS NULL OR "
            "subscription_id = $2) AND ($3::text IS NULL OR status = $3) "
            "ORDER BY created_at DESC LIMIT $4", principal.office, subscription_id,
            status.value if status else None, limit)
        return [dict(r) for r in rows]

    @api.post("/deliveries/{delivery_id}/retry", response_model=DeliveryOut,
              summary="Send a dead, skipped or waiting delivery again now", dependencies=manage)
    async def retry(delivery_id: Annotated[str, Path(pattern=ID_PATTERN)],
                    principal: CurrentPrincipal) -> Any:
        async with kernel.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE {s}.deliveries SET status = 'RETRYING', next_attempt_at = now() "
                "WHERE id = $1 AND office = $2 AND status IN ('DEAD', 'SKIPPED', 'RETRYING') "
                "RETURNING *", delivery_id, principal.office)
            if row is None:
                exists = await conn.fetchval(f"SELECT status FROM {s}.deliveries WHERE id = $1 "
                                             "AND office = $2", delivery_id, principal.office)
                if exists is None:
                    raise not_found("delivery")
                raise Problem(409, "Conflict", f"the delivery is {exists}; only dead, skipped "
                              "or waiting deliveries are retried", rule="not_retryable")
            if row["subscription_id"]:  # asked for by a person: the endpoint may try again
                await conn.execute(f"UPDATE {s}.subscriptions SET paused_until = NULL, "
                                   "consecutive_failures = 0 WHERE id = $1",
                                   row["subscription_id"])
        return dict(row)

    @api.put("/officers/{officer_id}", response_model=OfficerOut,
             summary="An officer's contact details (for e-mail notices)", dependencies=manage)
    async def put_officer(officer_id: Annotated[str, Path(pattern=OFFICER_PATTERN)],
                          body: OfficerIn, principal: CurrentPrincipal) -> OfficerOut:
        row = await kernel.pool.fetchrow(
            f"INSERT INTO {s}.officers (officer_id, office, name, email, role) VALUES "
            "($1, $2, $3, $4, $5) ON CONFLICT (office, officer_id) DO UPDATE SET name = $3, "
            "email = $4, role = $5, updated_at = now() RETURNING *",
            officer_id, principal.office, body.name, body.email, body.role)
        return OfficerOut(**{k: row[k] for k in ("officer_id", "office", "name", "email",
                                                 "role")})

    @api.get("/officers", response_model=list[OfficerOut], summary="This office's officers",
             dependencies=manage)
    async def officers(principal: CurrentPrincipal) -> list[OfficerOut]:
        rows = await kernel.pool.fetch(f"SELECT * FROM {s}.officers WHERE office = $1 "
                                       "ORDER BY officer_id", principal.office)
        return [OfficerOut(**{k: r[k] for k in ("officer_id", "office", "name", "email",
                                                "role")}) for r in rows]

    return api
