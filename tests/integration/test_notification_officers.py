"""Notification to people, on real NATS and PostgreSQL beside registration, guidance and
supervision: the officers' directory, e-mail to officers (and, for a KHUSUS violation, to the
office's supervisors) through a local SMTP server, SMS reminders to clients through a local
HTTP gateway, and what is recorded when a message cannot be sent."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from services.guidance.app import definition as guidance
from services.notification.app import definition as notification
from services.notification.reminders import queue_reminders
from services.registration.app import definition as registration
from services.supervision.app import definition as supervision
from shared.local.servers import free_port
from tests.integration.test_registration_api import body, nik
from tests.support.clock import office_today
from tests.support.service import Running, running
from tests.support.wait import eventually

DOMAIN = "bapas-jaksel.kemenkumham.go.id"


def address(officer_id: str) -> str:
    return f"{officer_id}@{DOMAIN}"


# ------------------------------------------------------------------------ local SMTP server


@dataclass(frozen=True)
class Mail:
    sender: str
    to: tuple[str, ...]
    subject: str
    text: str


class Mailbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Mail] = []
        self.port = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd
        msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                       policy=email.policy.default)
        self.messages.append(Mail(envelope.mail_from, tuple(envelope.rcpt_tos),
                                  str(msg["Subject"]), msg.get_content()))
        return "250 OK"

    def to(self, recipient: str) -> list[Mail]:
        return [m for m in list(self.messages) if recipient in m.to]


@pytest.fixture
def smtp() -> Mailbox:
    box = Mailbox()
    box.port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


# --------------------------------------------------------------------- local SMS gateway


class _SmsHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        self.server.received.append((self.path, self.headers.get("Content-Type", ""),
                                     json.loads(raw)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class SmsGateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmsHandler)
        self.received: list[tuple[str, str, dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/sms"

    def to(self, phone: str) -> list[dict]:
        return [doc for _, _, doc in list(self.received) if doc.get("to") == phone]


@pytest.fixture
def sms() -> SmsGateway:
    gateway = SmsGateway()
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        gateway.shutdown()
        gateway.server_close()
        thread.join(5)


# ------------------------------------------------------------------------------- services


@dataclass
class System:
    reg: Running
    gd: Running
    sv: Running
    nt: Running

    def head(self, office: str = "jaksel") -> dict[str, str]:
        return self.nt.token(office, "head", sub=f"kabapas-{office}")

    def admin(self, office: str = "jaksel") -> dict[str, str]:
        return self.nt.token(office, "admin", sub=f"admin-{office}")


@pytest.fixture
def env(monkeypatch, smtp: Mailbox, sms: SmsGateway) -> None:
    """Read by each service when it builds (NotificationSettings, SupervisionSettings)."""
    monkeypatch.setenv("BAPAS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("BAPAS_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("BAPAS_NOTIFICATION_SMS_WEBHOOK_URL", sms.url)
    monkeypatch.setenv("BAPAS_NOTIFICATION_REMINDER_POLL_SECONDS", "0.3")
    monkeypatch.setenv("BAPAS_NOTIFICATION_POLL_SECONDS", "0.1")
    monkeypatch.setenv("BAPAS_NOTIFICATION_RETRY_BASE_SECONDS", "0.1")
    monkeypatch.setenv("BAPAS_SUPERVISION_SWEEP_SECONDS", "0.3")


@contextlib.asynccontextmanager
async def system(settings) -> AsyncIterator[System]:
    async with running(registration, settings) as reg, running(guidance, settings) as gd, \
            running(supervision, settings) as sv, running(notification, settings) as nt:
        yield System(reg, gd, sv, nt)


@pytest.fixture
async def svc(settings, streams, env) -> AsyncIterator[System]:
    async with system(settings) as s:
        yield s


# -------------------------------------------------------------------------------- helpers


async def put_officer(s: System, officer_id: str, name: str, role: str = "pk",
                      email_address: str | None = "default", office: str = "jaksel") -> dict:
    payload = {"name": name, "role": role}
    if email_address is not None:
        payload["email"] = address(officer_id) if email_address == "default" else email_address
    r = await s.nt.http.put(f"/v1/officers/{officer_id}", json=payload, headers=s.admin(office))
    assert r.status_code == 200, r.text
    return r.json()


async def register(s: System, i: int, name: str, *, officer: str = "pk-0007",
                   started_days_ago: int = 20, phone: str | None = None) -> dict:
    start = office_today() - timedelta(days=started_days_ago)
    payload = body(nik(i), name, officer=officer, phone=phone or f"+62812000{i:05d}")
    payload["period"] = {"start_on": start.isoformat(),
                         "end_on": (start + timedelta(days=365)).isoformat()}
    payload["decision"]["issued_on"] = (start - timedelta(days=3)).isoformat()
    r = await s.reg.http.post("/v1/clients", json=payload,
                              headers=s.reg.token("jaksel", "supervisor", sub="kasubsi"))
    assert r.status_code == 201, r.text
    return r.json()


async def supervised(s: System, cid: str) -> dict:
    r = await eventually(lambda: s.sv.http.get(f"/v1/supervision/{cid}", headers=s.sv.token()),
                         until=lambda r: r.status_code == 200, timeout=20)
    return r.json()


async def set_plan(s: System, cid: str, first_due_on: date, **kw) -> None:
    r = await s.sv.http.put(f"/v1/supervision/{cid}/plan", headers=s.sv.token(),
                            json={"first_due_on": first_due_on.isoformat(), **kw})
    assert r.status_code == 200, r.text


async def deliveries(s: System, **params) -> list[dict]:
    r = await s.nt.http.get("/v1/deliveries", headers=s.head(), params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    return r.json()


def of_client(rows: list[dict], cid: str, channel: str = "EMAIL") -> list[dict]:
    return [d for d in rows if d["client_id"] == cid and d["channel"] == channel]


# ---------------------------------------------------------------------------------- tests


async def test_the_directory_is_kept_by_managers_and_officers_are_mailed_their_new_clients(
        svc: System, smtp: Mailbox):
    s = svc
    entry = {"name": "Rahmat Hidayat", "email": address("pk-0007"), "role": "pk"}
    # a PK cannot change the directory, not even their own entry; nor read it
    r = await s.nt.http.put("/v1/officers/pk-0007", json=entry, headers=s.nt.token())
    assert r.status_code == 403 and r.json()["rule"] == "role_required"
    assert (await s.nt.http.get("/v1/officers", headers=s.nt.token())).status_code == 403
    bad = await s.nt.http.put("/v1/officers/pk-0007", headers=s.admin(),
                              json={**entry, "email": "not an address"})
    assert bad.status_code == 422
    # admin and head both can
    r = await s.nt.http.put("/v1/officers/pk-0007", json=entry, headers=s.admin())
    assert r.status_code == 200, r.text
    assert r.json() == {**entry, "officer_id": "pk-0007", "office": "jaksel"}
    r = await s.nt.http.put("/v1/officers/pk-0008", headers=s.head(),
                            json={"name": "Dewi Lestari", "email": address("pk-0008"),
                                  "role": "pk"})
    assert r.status_code == 200, r.text
    listed = (await s.nt.http.get("/v1/officers", headers=s.head())).json()
    assert [(o["officer_id"], o["email"]) for o in listed] == [
        ("pk-0007", address("pk-0007")), ("pk-0008", address("pk-0008"))]
    # each office keeps its own directory: a pk-0007 of Bandung is another person, and
    # never touches (nor sees) Jaksel's pk-0007
    r = await s.nt.http.put("/v1/officers/pk-0007", headers=s.head("bandung"),
                            json={**entry, "email": "someone@elsewhere.go.id"})
    assert r.status_code == 200 and r.json()["office"] == "bandung"
    bandung = (await s.nt.http.get("/v1/officers", headers=s.head("bandung"))).json()
    assert [(o["officer_id"], o["email"]) for o in bandung] == [
        ("pk-0007", "someone@elsewhere.go.id")]
    listed = (await s.nt.http.get("/v1/officers", headers=s.head())).json()
    assert [(o["officer_id"], o["email"]) for o in listed] == [
        ("pk-0007", address("pk-0007")), ("pk-0008", address("pk-0008"))]

    # a new client assigned to pk-0007: pk-0007 is told, in Bahasa Indonesia
    client = await register(s, 1, "Siti Aminah")
    cid, number = client["client_id"], client["register_number"]
    (mail,) = await eventually(lambda: smtp.to(address("pk-0007")), timeout=20)
    assert mail.subject == "Klien baru: Siti Aminah"
    assert mail.sender == "noreply@bapas.local"
    assert "Siti Aminah" in mail.text and number in mail.text
    assert "ditugaskan kepada Anda" in mail.text

    # the client is given to pk-0008: the new officer is mailed, the old one not again
    r = await s.reg.http.post(f"/v1/clients/{cid}/officer",
                              headers=s.reg.token("jaksel", "supervisor", sub="kasubsi"),
                              json={"officer_id": "pk-0008", "reason": "pembagian beban kerja"})
    assert r.status_code == 200 and r.json()["events"] == ["OfficerAssigned"], r.text
    (mail,) = await eventually(lambda: smtp.to(address("pk-0008")), timeout=20)
    assert mail.subject == "Klien baru: Siti Aminah"
    assert "Siti Aminah" in mail.text and number in mail.text
    rows = await eventually(lambda: deliveries(s, status="DELIVERED"),
                            until=lambda rows: len(of_client(rows, cid)) == 2)
    assert sorted((d["event_type"], d["recipient"]) for d in of_client(rows, cid)) == [
        ("ClientRegistered", address("pk-0007")), ("OfficerAssigned", address("pk-0008"))]
    assert len(smtp.to(address("pk-0007"))) == 1
    assert all(d["attempts"] == 1 and d["last_error"] is None for d in of_client(rows, cid))


async def test_missed_reports_are_mailed_and_a_khusus_violation_reaches_the_supervisors(
        svc: System, smtp: Mailbox):
    s = svc
    await put_officer(s, "pk-0007", "Rahmat Hidayat")
    await put_officer(s, "kasubsi-01", "Agus Salim", role="supervisor")
    await put_officer(s, "kasubsi-02", "Sri Wahyuni", role="supervisor")
    await put_officer(s, "kabapas-01", "Bambang Sutrisno", role="head")
    await put_officer(s, "kasubsi-bdg", "Asep Sunandar", role="supervisor", office="bandung",
                      email_address="kasubsi@bapas-bandung.kemenkumham.go.id")
    client = await register(s, 2, "Joko Susilo", started_days_ago=100)
    cid, number = client["client_id"], client["register_number"]
    start = date.fromisoformat((await supervised(s, cid))["period"]["start_on"])
    # due on days 30, 60 and 90 of the period: all three windows have closed
    await set_plan(s, cid, start + timedelta(days=30))

    officer = address("pk-0007")
    mails = await eventually(lambda: smtp.to(officer),
                             until=lambda ms: len(ms) >= 6, timeout=30)
    missed = [m for m in mails if m.subject == "Klien tidak melapor: Joko Susilo"]
    assert len(missed) == 3
    for k, m in enumerate(sorted(missed, key=lambda m: m.text), start=1):
        assert "tidak memenuhi wajib lapor" in m.text and number in m.text
        assert (start + timedelta(days=30 * k)).isoformat() in m.text
        assert f"({k} kali berturut-turut)" in m.text
    (violation,) = [m for m in mails if m.subject == "Pelanggaran KHUSUS: Joko Susilo"]
    assert "WAJIB_LAPOR_3X" in violation.text and number in violation.text
    (review,) = [m for m in mails if m.subject == "Perlu sidang TPP: Joko Susilo"]
    assert "TPP" in review.text and "Tidak ada pencabutan otomatis" in review.text

    # every supervisor of the office hears of the KHUSUS violation, and only of that
    for supervisor in ("kasubsi-01", "kasubsi-02"):
        (mail,) = await eventually(lambda sup=supervisor: smtp.to(address(sup)), timeout=20)
        assert mail.subject == "Pelanggaran KHUSUS: Joko Susilo"
        assert mail.text == violation.text
    rows = await eventually(lambda: deliveries(s, status="DELIVERED"),
                            until=lambda rows: len(of_client(rows, cid)) == 8)
    by_event: dict[str, list[str]] = {}
    for d in of_client(rows, cid):
        by_event.setdefault(d["event_type"], []).append(d["recipient"])
    assert {k: sorted(v) for k, v in by_event.items()} == {
        "ClientRegistered": [officer],
        "ReportMissed": [officer] * 3,
        "ViolationRecorded": sorted([officer, address("kasubsi-01"), address("kasubsi-02")]),
        "TppReviewRequested": [officer],
    }
    # not the head (not a supervisor), not another office's supervisor
    assert smtp.to(address("kabapas-01")) == []
    assert smtp.to("kasubsi@bapas-bandung.kemenkumham.go.id") == []

    # an UMUM violation is the officer's business alone
    r = await s.sv.http.post(f"/v1/supervision/{cid}/violations", headers=s.sv.token(),
                             json={"category": "UMUM", "code": "TERSANGKA",
                                   "notes": "dilaporkan polsek"})
    assert r.status_code == 200, r.text
    umum = await eventually(
        lambda: [m for m in smtp.to(officer) if m.subject == "Pelanggaran UMUM: Joko Susilo"],
        timeout=20)
    assert "TERSANGKA" in umum[0].text and "dilaporkan polsek" in umum[0].text
    rows = await eventually(lambda: deliveries(s, status="DELIVERED"),
                            until=lambda rows: len(of_client(rows, cid)) == 9)
    violations = [d["recipient"] for d in of_client(rows, cid)
                  if d["event_type"] == "ViolationRecorded"]
    assert sorted(violations) == sorted([officer, officer, address("kasubsi-01"),
                                         address("kasubsi-02")])
    assert len(smtp.to(address("kasubsi-01"))) == len(smtp.to(address("kasubsi-02"))) == 1


async def test_an_officer_without_an_address_is_skipped_with_the_reason(svc: System,
                                                                        smtp: Mailbox):
    s = svc
    await put_officer(s, "pk-0009", "Tanpa Surel", email_address=None)
    await put_officer(s, "pk-0007", "Rahmat Hidayat")
    no_address = (await register(s, 3, "Wati Kusuma", officer="pk-0009"))["client_id"]
    unknown = (await register(s, 4, "Yusuf Hakim", officer="pk-0404"))["client_id"]
    mailed = (await register(s, 5, "Rina Marlina"))["client_id"]

    skipped = await eventually(
        lambda: deliveries(s, status="SKIPPED"),
        until=lambda rows: of_client(rows, no_address) and of_client(rows, unknown))
    (row,) = of_client(skipped, no_address)
    assert row["event_type"] == "ClientRegistered" and row["recipient"] == "pk-0009"
    assert row["last_error"] == "no e-mail address for officer pk-0009 in the directory of jaksel"
    assert row["attempts"] == 1 and row["delivered_at"] is None
    (row,) = of_client(skipped, unknown)
    assert row["last_error"] == "no e-mail address for officer pk-0404 in the directory of jaksel"
    # the third client's officer has an address: mailed, and nothing else went out
    await eventually(lambda: smtp.to(address("pk-0007")), timeout=20)
    delivered = await eventually(lambda: deliveries(s, status="DELIVERED"),
                                 until=lambda rows: of_client(rows, mailed))
    assert not of_client(delivered, no_address) and not of_client(delivered, unknown)
    assert [m.to for m in smtp.messages] == [(address("pk-0007"),)]
    # the log is for managers
    r = await s.nt.http.get("/v1/deliveries", headers=s.nt.token(),
                            params={"status": "SKIPPED"})
    assert r.status_code == 403
    assert (await s.nt.http.get("/v1/deliveries", headers=s.head("bandung"),
                                params={"status": "SKIPPED"})).json() == []


async def test_an_officer_of_another_office_is_never_mailed_this_offices_clients(
        svc: System, smtp: Mailbox):
    s = svc
    await put_officer(s, "pk-0100", "Ujang Suryana", office="bandung",
                      email_address="pk-0100@bapas-bandung.kemenkumham.go.id")
    await put_officer(s, "pk-0007", "Rahmat Hidayat")
    # a jaksel client given (by mistake, or because ids repeat) the officer id pk-0100
    elsewhere = (await register(s, 6, "Hendra Gunawan", officer="pk-0100"))["client_id"]
    here = (await register(s, 7, "Lina Marlina"))["client_id"]
    await eventually(lambda: smtp.to(address("pk-0007")), timeout=20)
    rows = await eventually(lambda: deliveries(s),
                            until=lambda rows: of_client(rows, elsewhere)
                            and of_client(rows, here)
                            and all(d["status"] in ("DELIVERED", "SKIPPED")
                                    for d in of_client(rows, elsewhere)))
    assert smtp.to("pk-0100@bapas-bandung.kemenkumham.go.id") == []
    (row,) = of_client(rows, elsewhere)
    assert row["status"] == "SKIPPED" and row["recipient"] == "pk-0100"


async def test_a_client_due_to_report_soon_gets_one_sms_reminder(svc: System, sms: SmsGateway):
    s = svc
    soon = await register(s, 8, "Dedi Kurniawan", phone="+6281300000001")
    later = await register(s, 9, "Eka Putri", phone="+6281300000002")
    await supervised(s, soon["client_id"])
    await supervised(s, later["client_id"])
    today = office_today()
    due = today + timedelta(days=2)
    await set_plan(s, soon["client_id"], due)
    await set_plan(s, later["client_id"], today + timedelta(days=10))  # not yet

    (text,) = await eventually(lambda: sms.to("+6281300000001"), timeout=20)
    assert set(text) == {"to", "text"}
    assert "wajib lapor" in text["text"] and "Dedi Kurniawan" in text["text"]
    assert due.isoformat() in text["text"] and "Bapas JAKSEL" in text["text"]
    path, content_type, _ = sms.received[0]
    assert path == "/sms" and content_type.startswith("application/json")

    # later polls queue nothing more for the same due date: a third client planned after the
    # first text went out is reminded by a later poll, and the first is not reminded again
    third = await register(s, 10, "Fajar Nugroho", phone="+6281300000003")
    await supervised(s, third["client_id"])
    await set_plan(s, third["client_id"], today + timedelta(days=1))
    await eventually(lambda: sms.to("+6281300000003"), timeout=20)
    schema = s.nt.kernel.schema
    assert await queue_reminders(s.nt.kernel.pool, schema, office_today(), 3) == 0
    rows = await eventually(lambda: deliveries(s, status="DELIVERED"),
                            until=lambda rows: len([d for d in rows
                                                    if d["channel"] == "SMS"]) == 2)
    (row,) = of_client(rows, soon["client_id"], "SMS")
    assert row["event_type"] == "ReportReminder" and row["recipient"] == "+6281300000001"
    assert row["attempts"] == 1
    assert len(sms.to("+6281300000001")) == 1
    assert sms.to("+6281300000002") == []
    assert len(sms.received) == 2


async def test_without_an_smtp_server_mail_is_skipped_and_nothing_breaks(
        settings, streams, env, monkeypatch, smtp: Mailbox):
    monkeypatch.delenv("BAPAS_SMTP_HOST")
    async with system(settings) as s:
        await put_officer(s, "pk-0007", "Rahmat Hidayat")
        first = (await register(s, 11, "Gita Savitri"))["client_id"]
        rows = await eventually(lambda: deliveries(s, status="SKIPPED"),
                                until=lambda rows: of_client(rows, first))
        (row,) = of_client(rows, first)
        assert row["recipient"] == address("pk-0007") and row["attempts"] == 1
        assert "BAPAS_SMTP_HOST" in row["last_error"]
        # the service goes on: the next mail is skipped too, and the API answers
        second = (await register(s, 12, "Hadi Wijaya"))["client_id"]
        await eventually(lambda: deliveries(s, status="SKIPPED"),
                         until=lambda rows: of_client(rows, second))
        assert (await s.nt.http.get("/readyz")).status_code == 200
        assert await deliveries(s, status="DEAD") == []
        assert await deliveries(s, status="RETRYING") == []
        assert smtp.messages == []
