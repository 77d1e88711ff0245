"""How deliveries leave: signed CloudEvents webhooks, e-mail over SMTP, SMS via a gateway."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib
import httpx
from standardwebhooks.webhooks import Webhook


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str | None = None
    retry_after: str | None = None
    permanent: bool = False  # no point in trying again (e.g. nowhere to send it)
    recipient: str | None = None  # where it went, when that was decided at sending


def sign(secrets: list[str], msg_id: str, at: datetime, body: bytes) -> str:
    """Standard Webhooks: `v1,<base64 HMAC-SHA256(id.timestamp.body)>`, one per secret
    (during a rotation both the new and the previous secret sign)."""
    return " ".join(Webhook(s).sign(msg_id=msg_id, timestamp=at, data=body.decode())
                    for s in secrets)


async def post(client: httpx.AsyncClient, url: str, **request: Any) -> Outcome:
    """One HTTP POST as a delivery's outcome: a 2xx is delivered; a transport error or
    any other status is a failure to retry (with the receiver's Retry-After, if any)."""
    try:
        response = await client.post(url, **request)
    except httpx.HTTPError as exc:
        return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= response.status_code < 300:
        return Outcome(True, response.status_code)
    return Outcome(False, response.status_code, f"HTTP {response.status_code}",
                   retry_after=response.headers.get("retry-after"))


class WebhookSender:
    """CloudEvents over HTTP in binary mode: attributes in `ce-*` headers, data as body."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, url: str, secrets: list[str], msg_id: str, headers: dict[str, str],
                   body: bytes) -> Outcome:
        now = datetime.now(UTC)
        signed = {**headers, "webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
                  "webhook-signature": sign(secrets, msg_id, now, body)}
        return await post(self.client, url, content=body, headers=signed)


async def webhook_handshake(client: httpx.AsyncClient, url: str, origin: str) -> str | None:
    """CloudEvents webhook validation: OPTIONS with WebHook-Request-Origin; the endpoint must
    answer 2xx with WebHook-Allowed-Origin naming us (or *). Returns why it failed, or None."""
    try:
        response = await client.request("OPTIONS", url, headers={"WebHook-Request-Origin": origin})
    except httpx.HTTPError as exc:
        return f"the endpoint did not answer the validation request ({type(exc).__name__})"
    if not 200 <= response.status_code < 300:
        return f"the endpoint answered the validation request with HTTP {response.status_code}"
    allowed = response.headers.get("webhook-allowed-origin", "")
    if allowed.strip() not in (origin, "*"):
        return ("the endpoint did not allow our origin (WebHook-Allowed-Origin: "
                f"{allowed or 'missing'})")
    return None


class EmailSender:
    def __init__(self, host: str | None, port: int, sender: str, timeout: float) -> None:
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout

    async def send(self, to: str | None, subject: str, text: str) -> Outcome:
        if not self.host:
            return Outcome(False, error="no SMTP server configured (BAPAS_SMTP_HOST)",
                           permanent=True, recipient=to)
        if not to:
            return Outcome(False, error="no e-mail address", permanent=True)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(text)
        try:
            await aiosmtplib.send(message, hostname=self.host, port=self.port,
                                  timeout=self.timeout)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500], recipient=to)
        return Outcome(True, recipient=to)


class SmsGateway(Protocol):
    """Anything that can send a text message to a phone number."""

    async def send(self, to: str, text: str) -> Outcome: ...


class HttpSmsGateway:
    """Posts `{"to", "text"}` as JSON to an SMS provider's (or our relay's) webhook."""

    def __init__(self, client: httpx.AsyncClient, url: str | None) -> None:
        self.client, self.url = client, url

    async def send(self, to: str, text: str) -> Outcome:
        if not self.url:
            return Outcome(False, error="no SMS gateway configured "
                           "(BAPAS_NOTIFICATION_SMS_WEBHOOK_URL)", permanent=True)
        return await post(self.client, self.url, json={"to": to, "text": text})
