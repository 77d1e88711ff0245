"""Notification rules: who may receive what, how much of it, and how often we try.

Agencies (Lapas, Kejaksaan, Pengadilan, Polri, Kanwil, Puskesmas) subscribe to event types
of one office. At the IDENTIFIERS level they receive ids, register numbers, dates and
decisions; never a NIK, an address, a phone number, health, family or a child's details
(UU 27/2022). What an event shows at that level is an allowlist per event type, published
with the feed's contract in `events.py`: a field not named there is not sent.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from shared.errors import DomainError
from shared.office_time import WIB

from .events import (FULL_ATTRIBUTES, IDENTIFIER_ATTRIBUTES, IDENTIFIER_FIELDS, PUBLIC_EVENT_TYPES,
                     DataLevel)


class AgencyKind(StrEnum):
    LAPAS = "LAPAS"            # the prison the client came from (Lapas/Rutan)
    KEJAKSAAN = "KEJAKSAAN"    # prosecutor
    PENGADILAN = "PENGADILAN"  # court
    POLRI = "POLRI"            # police
    KANWIL = "KANWIL"          # regional office of the ministry
    PUSKESMAS = "PUSKESMAS"    # health centre
    OTHER = "OTHER"


class Channel(StrEnum):
    WEBHOOK = "WEBHOOK"
    EMAIL = "EMAIL"
    SMS = "SMS"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    SENDING = "SENDING"
    RETRYING = "RETRYING"
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"
    SKIPPED = "SKIPPED"


def redact(event_type: str, body: bytes, level: DataLevel) -> bytes:
    """The event's data as a subscriber of `level` may see it (exact bytes at FULL)."""
    if level is DataLevel.FULL:
        return body
    data = json.loads(body)
    keep = IDENTIFIER_FIELDS.get(event_type, ())
    return json.dumps({k: data[k] for k in keep if k in data}, separators=(",", ":"),
                      ensure_ascii=False).encode()


def attributes(headers: dict[str, str], level: DataLevel) -> dict[str, str]:
    names = FULL_ATTRIBUTES if level is DataLevel.FULL else IDENTIFIER_ATTRIBUTES
    out = {k: headers[k] for k in names if k in headers}
    out["ce-datalevel"] = level.value
    out["content-type"] = "application/json"
    return out


# ---------------------------------------------------------------------------- subscribing


def check_event_types(event_types: list[str]) -> list[str]:
    unknown = sorted(set(event_types) - PUBLIC_EVENT_TYPES)
    if unknown:
        raise DomainError(f"not event types an agency can receive: {', '.join(unknown)}; "
                          f"they are: {', '.join(sorted(PUBLIC_EVENT_TYPES))}",
                          field="event_types", rule="event_type_unknown")
    return sorted(set(event_types))


LOOPBACK_HOSTS = frozenset({"localhost"})


def check_webhook_url(url: str, *, development: bool) -> str:
    """https only; plain http only to this machine, and only in development mode."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise DomainError("the webhook URL must be an absolute https URL",
                          field="delivery.url", rule="url_scheme")
    if parts.username or parts.password:
        raise DomainError("the webhook URL must not carry credentials",
                          field="delivery.url", rule="url_credentials")
    if parts.scheme == "http":
        if not (development and _loopback(parts.hostname)):
            raise DomainError("webhooks are delivered over https only (plain http is allowed "
                              "to this machine in development mode)", field="delivery.url",
                              rule="url_not_https")
    return url


def _loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------- retrying


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter; a delivery is dead after `horizon`."""

    base_seconds: float = 5.0
    cap_seconds: float = 3600.0
    horizon: timedelta = timedelta(hours=24)
    pause_after_failures: int = 5
    pause_seconds: float = 60.0
    pause_cap_seconds: float = 3600.0

    def next_attempt(self, attempts: int, now: datetime, retry_after: float | None,
                     rng: random.Random | None = None) -> datetime:
        if retry_after is not None:
            delay = min(max(retry_after, 0.0), self.cap_seconds)
        else:
            delay = min(self.cap_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
            delay *= (rng or random).uniform(0.8, 1.2)  # spread the retries of many events
        return now + timedelta(seconds=delay)

    def is_dead(self, created_at: datetime, now: datetime) -> bool:
        return now - created_at >= self.horizon

    def pause(self, consecutive_failures: int, now: datetime) -> datetime | None:
        """An endpoint that keeps failing is paused, longer each time, not hammered."""
        if consecutive_failures < self.pause_after_failures:
            return None
        times = consecutive_failures - self.pause_after_failures
        return now + timedelta(seconds=min(self.pause_cap_seconds,
                                           self.pause_seconds * 2 ** times))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime
    try:
        return (parsedate_to_datetime(value) - now).total_seconds()
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------- messages
# Texts for officers and clients are in Bahasa Indonesia.


def officer_message(event_type: str, data: dict[str, Any], client: dict[str, Any]
                    ) -> tuple[str, str] | None:
    """(subject, text) of the e-mail an officer gets for an event, if any."""
    name = client.get("full_name") or client.get("client_id", "")
    number = client.get("register_number") or "-"
    who = f"{name} (nomor register {number})"
    match event_type:
        case "ClientRegistered" | "OfficerAssigned":
            return (f"Klien baru: {name}",
                    f"Klien {who} ditugaskan kepada Anda untuk dibimbing. "
                    f"Program: {client.get('program', '-')}.")
        case "LitmasOverdue":
            return (f"Litmas terlambat: {name}",
                    f"Litmas untuk klien {who} telah melewati batas waktu "
                    f"{_when(data.get('due_at'))}. Mohon segera diselesaikan.")
        case "ReportMissed":
            return (f"Klien tidak melapor: {name}",
                    f"Klien {who} tidak memenuhi wajib lapor yang jatuh tempo pada "
                    f"{data.get('due_on')} ({data.get('consecutive')} kali berturut-turut).")
        case "ViolationRecorded":
            return (f"Pelanggaran {data.get('category')}: {name}",
                    f"Tercatat pelanggaran {data.get('category')} ({data.get('code')}) oleh "
                    f"klien {who}. {data.get('notes') or ''}".strip())
        case "TppReviewRequested":
            return (f"Perlu sidang TPP: {name}",
                    f"Kasus klien {who} perlu ditinjau oleh Tim Pengamat Pemasyarakatan (TPP). "
                    "Tidak ada pencabutan otomatis; mohon dijadwalkan.")
    return None


def reminder_text(full_name: str, office: str, due_on: str) -> str:
    return (f"Yth. {full_name}, jadwal wajib lapor Anda di Bapas {office.upper()} jatuh pada "
            f"{due_on}. Mohon hadir tepat waktu. Terima kasih.")


def _when(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).astimezone(WIB).strftime("%d-%m-%Y %H:%M WIB")
    except ValueError:
        return str(value or "-")
