"""Sends what the delivery log holds: at least once, each recipient in its own lane.

A delivery is claimed with a lease (status SENDING); a process that dies mid-send leaves
the lease to expire and the delivery is sent again, with the same webhook-id. At most one
delivery per recipient is in flight, and every recipient has its own task, so one slow or
failing subscriber never delays the others. Failures back off exponentially (capped, with
jitter, honouring Retry-After); a delivery still failing after the horizon is dead; an
endpoint that keeps failing is paused rather than hammered.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from .channels import EmailSender, Outcome, SmsGateway, WebhookSender
from .domain import Channel, DeliveryStatus, RetryPolicy, parse_retry_after

log = structlog.get_logger("bapas.notification.dispatcher")


class Dispatcher:
    def __init__(self, pool: asyncpg.Pool, schema: str, policy: RetryPolicy, *,
                 webhooks: WebhookSender, email: EmailSender, sms: SmsGateway,
                 lease_seconds: float, poll_seconds: float, batch: int = 100) -> None:
        self.pool = pool
        self.s = f'"{schema}"'
        self.policy = policy
        self.webhooks, self.email, self.sms = webhooks, email, sms
        self.lease = timedelta(seconds=lease_seconds)
        self.poll = poll_seconds
        self.batch = batch

    async def run(self) -> None:
        inflight: dict[str, asyncio.Task] = {}
        try:
            while True:
                for target, task in list(inflight.items()):
                    if task.done():
                        del inflight[target]
                        if not task.cancelled() and task.exception():
                            log.error("delivery task failed", target=target,
                                      exc_info=task.exception())
                for row in await self.claim(busy=list(inflight)):
                    inflight[row["target"]] = asyncio.create_task(self.deliver(row))
                await self.expire()
                await asyncio.sleep(self.poll)
        finally:
            for task in inflight.values():
                task.cancel()
            await asyncio.gather(*inflight.values(), return_exceptions=True)

    async def expire(self) -> None:
        """Deliveries that waited past the horizon (an endpoint paused for long, say) die
        without another attempt; they stay visible and can be retried by hand."""
        await self.pool.execute(
            f"UPDATE {self.s}.deliveries SET status = 'DEAD', last_error = coalesce(last_error, "
            "'not delivered') || ' (gave up after the retry horizon)' WHERE status IN "
            "('PENDING', 'RETRYING') AND created_at < $1",
            datetime.now(UTC) - self.policy.horizon)

    async def claim(self, busy: list[str]) -> list[asyncpg.Record]:
        """The oldest due delivery of each recipient not already busy, leased to us."""
        now = datetime.now(UTC)
        due = f"""
            d.status IN ('PENDING', 'RETRYING', 'SENDING') AND d.next_attempt_at <= $1
            AND (d.status <> 'SENDING' OR d.lease_until < $1)"""
        async with self.pool.acquire() as conn:
            ids = await conn.fetch(
                f"""SELECT id FROM (
                        SELECT d.id, row_number() OVER (PARTITION BY d.target
                                                        ORDER BY d.created_at, d.id) AS rn
                        FROM {self.s}.deliveries d
                        LEFT JOIN {self.s}.subscriptions s ON s.id = d.subscription_id
                        WHERE {due} AND d.target <> ALL($2::text[])
                          AND (s.id IS NULL OR (s.status = 'ACTIVE' AND
                               (s.paused_until IS NULL OR s.paused_until <= $1)))) x
                    WHERE rn = 1 LIMIT $3""", now, busy, self.batch)
            if not ids:
                return []
            # the conditions again, row by row: of two replicas, one wins each delivery
            return await conn.fetch(
                f"""UPDATE {self.s}.deliveries d SET status = 'SENDING', lease_until = $2,
                           attempts = attempts + 1
                    WHERE d.id = ANY($3::text[]) AND {due}
                    RETURNING d.*""", now, now + self.lease, [r["id"] for r in ids])

    async def deliver(self, row: asyncpg.Record) -> None:
        outcome = await self.send(row)
        await self.record(row, outcome)

    async def send(self, row: asyncpg.Record) -> Outcome:
        headers = json.loads(row["headers"])
        match Channel(row["channel"]):
            case Channel.WEBHOOK:
                sub = await self.pool.fetchrow(
                    f"SELECT url, secret, previous_secret, previous_secret_until, status "
                    f"FROM {self.s}.subscriptions WHERE id = $1", row["subscription_id"])
                if sub is None or sub["status"] != "ACTIVE":
                    return Outcome(False, error="the subscription was deleted", permanent=True)
                secrets = [sub["secret"]]
                if sub["previous_secret"] and sub["previous_secret_until"] and \
                        sub["previous_secret_until"] > datetime.now(UTC):
                    secrets.append(sub["previous_secret"])
                return await self.webhooks.send(sub["url"], secrets, row["event_id"], headers,
                                                bytes(row["body"]))
            case Channel.EMAIL:
                address = await self.pool.fetchval(
                    f"SELECT email FROM {self.s}.officers WHERE office = $1 AND officer_id = $2",
                    row["office"], headers["officer_id"])
                if not address:
                    return Outcome(False, permanent=True, error="no e-mail address for officer "
                                   f"{headers['officer_id']} in the directory of {row['office']}")
                return await self.email.send(address, headers["subject"],
                                             bytes(row["body"]).decode())
            case Channel.SMS:
                return await self.sms.send(row["recipient"], bytes(row["body"]).decode())
        return Outcome(False, error=f"unknown channel {row['channel']}", permanent=True)

    async def record(self, row: asyncpg.Record, outcome: Outcome) -> None:
        now = datetime.now(UTC)
        mine = "id = $1 AND status = 'SENDING' AND attempts = $2"  # our lease, still
        async with self.pool.acquire() as conn, conn.transaction():
            if outcome.ok:
                await conn.execute(
                    f"UPDATE {self.s}.deliveries SET status = 'DELIVERED', delivered_at = $3, "
                    "last_status = $4, last_error = NULL, lease_until = NULL, "
                    f"recipient = coalesce($5, recipient) WHERE {mine}",
                    row["id"], row["attempts"], now, outcome.status, outcome.recipient)
                if row["subscription_id"]:
                    await conn.execute(
                        f"UPDATE {self.s}.subscriptions SET consecutive_failures = 0, "
                        "paused_until = NULL WHERE id = $1", row["subscription_id"])
                return
            if outcome.permanent:
                status, next_at = DeliveryStatus.SKIPPED, now
            elif self.policy.is_dead(row["created_at"], now):
                status, next_at = DeliveryStatus.DEAD, now
            else:
                status = DeliveryStatus.RETRYING
                next_at = self.policy.next_attempt(
                    row["attempts"], now, parse_retry_after(outcome.retry_after, now))
            await conn.execute(
                f"UPDATE {self.s}.deliveries SET status = $3, next_attempt_at = $4, "
                "last_status = $5, last_error = $6, lease_until = NULL, "
                f"recipient = coalesce($7, recipient) WHERE {mine}",
                row["id"], row["attempts"], status.value, next_at, outcome.status,
                outcome.error, outcome.recipient)
            if row["subscription_id"] and not outcome.permanent:
                failures = await conn.fetchval(
                    f"UPDATE {self.s}.subscriptions SET consecutive_failures = "
                    "consecutive_failures + 1 WHERE id = $1 RETURNING consecutive_failures",
                    row["subscription_id"])
                paused = self.policy.pause(failures or 0, now)
                if paused:
                    await conn.execute(f"UPDATE {self.s}.subscriptions SET paused_until = $2 "
                                       "WHERE id = $1", row["subscription_id"], paused)
                    log.warning("endpoint paused after repeated failures",
                                subscription_id=row["subscription_id"], failures=failures,
                                until=paused.isoformat())
        log.info("delivery failed", delivery_id=row["id"], channel=row["channel"],
                 status=status.value, error=outcome.error, attempts=row["attempts"])
