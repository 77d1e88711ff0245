"""The console's web application: pages, forms, sign-in; wiring and the process's entry.

Every page is rendered here from what the services answer to the signed-in officer's own
token. A refusal is shown next to the field the service names; a service that does not
answer gives a page that says which one, never a stack trace. No personal data goes into
a URL (searches and NIK checks are POSTs) or into the log (the request log names the
route's template, never its values).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware
from stdnum.exceptions import ValidationError as NikInvalid
from stdnum.id import nik as stdnum_nik

from shared.ids import new_id
from shared.logging import bind, clear, configure_logging
from shared.office_time import WIB, office_date
from shared.settings import Settings

from . import report as monthly
from .backend import Backend, Refused, Unreachable
from .forms import ACTIONS, REGISTRATION_FIELDS, errors_by_field, registration_body
from .signin import (DEV_ROSTER, SESSION_HOURS, CsrfRefused, Officer, SignInNeeded,
                     check_csrf, claims_officer, csrf_token, dev_token, oidc_client,
                     session_secret, sign_in, signed_in)
from .words import LABELS, bulan, label, tanggal, waktu

__all__ = ["create_app", "main"]

HERE = Path(__file__).parent
log = structlog.get_logger("bapas.console")
SERVICE_NAMES = {"registration": "pendaftaran", "guidance": "bimbingan",
                 "supervision": "pengawasan", "notification": "pemberitahuan",
                 "audit": "audit"}
NEXT_STAGE = {"AWAL": "LANJUTAN", "LANJUTAN": "AKHIR"}
STAFF = ("pk", "supervisor", "head")
# What an id in our URLs may look like (as the services define them): anything else is
# never put into a service's path.
CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
OFFICER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
OPEN_WAIT = 5.0  # seconds a registration waits for its guidance and supervision cases


def create_app(settings: Settings, backend: Backend | None = None) -> FastAPI:
    backend = backend or Backend(settings)
    oidc = oidc_client(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await backend.close()

    app = FastAPI(title="bapas console", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    templates = Jinja2Templates(directory=HERE / "templates")
    env = templates.env
    env.globals.update(label=label, tanggal=tanggal, waktu=waktu, LABELS=LABELS,
                       development=settings.development, oidc=oidc is not None)
    env.filters.update(tanggal=tanggal, waktu=waktu)
    env.finalize = lambda value: "–" if value is None else value  # an erased field, say
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    form_action = "'self'"
    if settings.oidc_issuer:  # the sign-in form's redirect goes to the provider
        parts = urlsplit(settings.oidc_issuer)
        form_action += f" {parts.scheme}://{parts.netloc}"
    app.add_middleware(_Headers, form_action=form_action)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings),
                       session_cookie="bapas_console", max_age=SESSION_HOURS * 3600,
                       same_site="lax", https_only=not settings.development)
    app.add_middleware(_RequestLog)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        officer = request.session.get("officer")
        return templates.TemplateResponse(
            request, name, {"csrf": csrf_token(request), "me": officer,
                            "flash": request.session.pop("flash", None), **context},
            status_code=status)

    async def call(request: Request, officer: Officer, method: str, service: str, path: str,
                   **kw: Any) -> Any:
        try:
            return await backend.call(method, service, path, officer.token,
                                      correlation_id=request.state.correlation_id, **kw)
        except Refused as refused:
            if refused.status == 401:
                request.session.clear()
                raise SignInNeeded() from None
            raise

    async def optional(request: Request, officer: Officer, method: str, service: str,
                       path: str, **kw: Any) -> Any:
        """A part of a page the officer may not be allowed to see (None then)."""
        try:
            return await call(request, officer, method, service, path, **kw)
        except Refused as refused:
            if refused.status in (403, 404):
                return None
            raise

    async def form_of(request: Request) -> dict[str, Any]:
        form = await request.form()
        check_csrf(request, form.get("csrf_token"))
        return {k: (form.getlist(k) if len(form.getlist(k)) > 1 else v)
                for k, v in form.items() if k != "csrf_token"}

    async def names_of(request: Request, officer: Officer, officer_id: str | None = None
                       ) -> dict[str, dict[str, Any]]:
        """Register entries (name, register number) of the office's active clients, by
        client id: the worklist and the board carry ids only."""
        page_ = await optional(request, officer, "GET", "registration", "/v1/clients",
                               params={"officer_id": officer_id, "limit": 100})
        return {c["client_id"]: c for c in (page_ or {}).get("items", [])}

    # ------------------------------------------------------------------ errors

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, _: SignInNeeded) -> Response:
        return RedirectResponse("/masuk", status_code=303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _: CsrfRefused) -> Response:
        return page(request, "galat.html", 403, title="Formulir kedaluwarsa",
                    message="Formulir ini tidak membawa token keamanan yang berlaku. Muat "
                    "ulang halaman lalu kirim lagi.")

    @app.exception_handler(Unreachable)
    async def _down(request: Request, exc: Unreachable) -> Response:
        return page(request, "galat.html", 503, title="Layanan tidak menjawab",
                    message=f"Layanan {SERVICE_NAMES.get(exc.service, exc.service)} tidak "
                    "menjawab saat ini. Coba lagi sebentar lagi.")

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        if exc.status == 404:
            return page(request, "galat.html", 404, title="Tidak ditemukan",
                        message="Data ini tidak ada, atau tidak dapat Anda buka dari kantor "
                        "dan peran Anda.")
        if exc.status == 403:
            return page(request, "galat.html", 403, title="Tidak diizinkan",
                        message="Peran Anda tidak mengizinkan tindakan ini.")
        return page(request, "galat.html", 502 if exc.status >= 500 else exc.status,
                    title="Permintaan ditolak", message=str(exc))

    # ------------------------------------------------------------------ operations

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Ready as soon as it serves: the console holds nothing of its own; which services
        answer is reported (a page that needs one that does not says so)."""
        return JSONResponse({"status": "ready", "services": await backend.ready()})

    # ------------------------------------------------------------------ sign-in

    @app.get("/masuk", response_class=HTMLResponse)
    async def masuk(request: Request) -> HTMLResponse:
        roster = []
        if settings.development:
            roster = [{"key": f"{sub}@{office}", "sub": sub, "office": office,
                       "roles": roles} for sub, office, roles in DEV_ROSTER]
        return page(request, "masuk.html", roster=roster, error=request.query_params.get(
            "galat") and "Masuk gagal. Coba lagi.")

    @app.post("/masuk")
    async def masuk_dev(request: Request) -> Response:
        form = await form_of(request)
        if not settings.development:
            raise CsrfRefused()
        chosen = next(((sub, office, roles) for sub, office, roles in DEV_ROSTER
                       if f"{sub}@{office}" == form.get("officer")), None)
        if chosen is None:
            return page(request, "masuk.html", 422, roster=[], error="Pilih petugas dari "
                        "daftar.")
        sub, office, roles = chosen
        sign_in(request, sub=sub, office=office, roles=list(roles),
                name=f"{sub} ({office})", token=dev_token(settings, sub, office, roles))
        log.info("signed in", actor=sub, office=office, how="development")
        return RedirectResponse("/", status_code=303)

    @app.post("/masuk/oidc")
    async def masuk_oidc(request: Request) -> Response:
        await form_of(request)
        if oidc is None:
            return RedirectResponse("/masuk", status_code=303)
        base = (settings.console_public_url or str(request.base_url)).rstrip("/")
        return await oidc.authorize_redirect(request, base + "/masuk/callback")

    @app.get("/masuk/callback")
    async def masuk_callback(request: Request) -> Response:
        if oidc is None:
            return RedirectResponse("/masuk", status_code=303)
        try:
            token = await oidc.authorize_access_token(request)
            claims = dict(token.get("userinfo") or {})
            office, roles, name = claims_officer(settings, claims)
        except Exception as exc:  # noqa: BLE001 - any failure of the flow: sign in again
            log.warning("sign-in refused", error=type(exc).__name__, detail=str(exc)[:200])
            return page(request, "masuk.html", 401, roster=[], error=f"Masuk gagal: {exc}")
        access = token.get("access_token") or ""
        bearer = access if access.count(".") == 2 else token.get("id_token", "")
        sign_in(request, sub=str(claims["sub"]), office=office, roles=roles, name=name,
                token=bearer)
        log.info("signed in", actor=claims["sub"], office=office, how="oidc")
        return RedirectResponse("/", status_code=303)

    @app.post("/keluar")
    async def keluar(request: Request) -> Response:
        await form_of(request)
        request.session.clear()
        request.session["flash"] = "Anda telah keluar."
        return RedirectResponse("/masuk", status_code=303)

    # ------------------------------------------------------------------ Beranda

    @app.get("/", response_class=HTMLResponse)
    async def beranda(request: Request, petugas: str | None = None) -> HTMLResponse:
        me = signed_in(request)
        chosen = petugas if petugas and OFFICER_ID.match(petugas) else None
        whom = chosen if chosen and me.has("supervisor", "head") else me.sub
        worklist, board, names = await asyncio.gather(
            optional(request, me, "GET", "guidance", f"/v1/officers/{whom}/worklist"),
            optional(request, me, "GET", "supervision", "/v1/compliance",
                     params={"officer_id": whom}),
            names_of(request, me, whom))
        today = office_date(datetime.now(UTC))
        sections = worklist_sections(worklist, board, today)
        return page(request, "beranda.html", sections=sections, names=names, whom=whom,
                    today=today, has_worklist=worklist is not None)

    # ------------------------------------------------------------------ Registrasi

    async def register_page(request: Request, me: Officer, status: int = 200,
                            values: dict[str, Any] | None = None,
                            errors: dict[str, str] | None = None,
                            results: list[dict[str, Any]] | None = None,
                            query: str = "", cursor: str | None = None) -> HTMLResponse:
        register, officers = await asyncio.gather(
            optional(request, me, "GET", "registration", "/v1/clients",
                     params={"limit": 25, "cursor": cursor}),
            optional(request, me, "GET", "notification", "/v1/officers"))
        return page(request, "registrasi.html", status, values=values or {},
                    errors=errors or {}, register=register, results=results, query=query,
                    form_key=new_id(), may_register=me.has(*STAFF),
                    officers=[o for o in officers or [] if o.get("role") == "pk"])

    @app.get("/registrasi", response_class=HTMLResponse)
    async def registrasi(request: Request, halaman: str | None = None) -> HTMLResponse:
        return await register_page(request, signed_in(request), cursor=halaman)

    @app.post("/registrasi", response_class=HTMLResponse)
    async def daftar(request: Request) -> Response:
        me = signed_in(request)
        form = await form_of(request)
        key = str(form.pop("form_key", "") or new_id())
        try:
            done = await call(request, me, "POST", "registration", "/v1/clients",
                              json=registration_body(form), idempotency_key=key)
        except Refused as refused:
            if refused.status != 422:
                raise
            return await register_page(request, me, 422, values=form,
                                       errors=errors_by_field(refused, REGISTRATION_FIELDS))
        await opened(request, me, done["client_id"])
        request.session["flash"] = (f"Klien terdaftar dengan nomor register "
                                    f"{done['register_number']}.")
        return RedirectResponse(f"/klien/{done['client_id']}", status_code=303)

    async def opened(request: Request, me: Officer, client_id: str) -> None:
        """Guidance and supervision open their cases on the registration's event, a moment
        after it: wait a little for them, so that the client's page has its forms (if
        they are slower still, the page says so)."""
        deadline = time.monotonic() + OPEN_WAIT
        for service, path in (("guidance", f"/v1/cases/{client_id}"),
                              ("supervision", f"/v1/supervision/{client_id}")):
            while await optional(request, me, "GET", service, path) is None:
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.1)

    @app.post("/registrasi/cari", response_class=HTMLResponse)
    async def cari(request: Request) -> HTMLResponse:
        me = signed_in(request)
        form = await form_of(request)
        query = str(form.get("q") or "").strip()
        found = await call(request, me, "GET", "registration", "/v1/clients",
                           params={"q": query, "limit": 50}) if query else {"items": []}
        return await register_page(request, me, results=found["items"], query=query)

    @app.post("/registrasi/nik")
    async def periksa_nik(request: Request) -> JSONResponse:
        """The NIK checked as it is typed: its form, the birth date and sex it encodes,
        and whether the office already has a client with it. A POST: a NIK never goes in
        a URL."""
        me = signed_in(request)
        check_csrf(request, request.headers.get("x-csrf-token"))
        body = await request.json()
        value = str(body.get("nik", "")).strip() if isinstance(body, dict) else ""
        return JSONResponse(await check_nik(request, me, value))

    async def check_nik(request: Request, me: Officer, value: str) -> dict[str, Any]:
        try:
            nik = stdnum_nik.validate(value)
        except NikInvalid:
            digits = "".join(ch for ch in value if ch.isdigit())
            need = 16 - len(digits)
            message = (f"NIK terdiri dari 16 angka; kurang {need}." if 0 < need < 16
                       else "NIK tidak valid: 16 angka berisi kode wilayah, tanggal lahir "
                       "(DDMMYY, tanggal + 40 untuk perempuan), dan nomor urut.")
            return {"valid": False, "message": message}
        birth = stdnum_nik.get_birth_date(nik)
        day = int(nik[6:8])
        sex = "F" if day > 40 else "M"
        found = await optional(request, me, "GET", "registration", "/v1/clients",
                               params={"q": nik, "limit": 1})
        known = (found or {}).get("items") or []
        message = f"NIK valid: lahir {tanggal(birth)}, {label('sex', sex).lower()}."
        if known:
            message += f" Sudah terdaftar: {known[0]['register_number']}."
        return {"valid": True, "message": message, "birth_date": birth.isoformat(),
                "sex": sex, "registered": bool(known)}

    # ------------------------------------------------------------------ Klien

    async def client_page(request: Request, me: Officer, client_id: str, status: int = 200,
                          failed: str | None = None, values: dict[str, Any] | None = None,
                          errors: dict[str, str] | None = None) -> HTMLResponse:
        if not CLIENT_ID.match(client_id):
            raise Refused(404, {"title": "Not found"})
        client = await call(request, me, "GET", "registration", f"/v1/clients/{client_id}")
        case, supervision, history = await asyncio.gather(
            optional(request, me, "GET", "guidance", f"/v1/cases/{client_id}"),
            optional(request, me, "GET", "supervision", f"/v1/supervision/{client_id}"),
            optional(request, me, "GET", "audit", f"/v1/audit/clients/{client_id}/history"))
        stage = (case or {}).get("stage")
        approved = [d for d in (case or {}).get("decisions", [])
                    if d["subject"] == "STAGE" and d["outcome"] == "APPROVED"]
        timeline = list(reversed((history or {}).get("events", [])))[:100]
        return page(request, "klien.html", status, client=client, case=case,
                    supervision=supervision, timeline=timeline, history=history is not None,
                    next_stage=NEXT_STAGE.get(stage or ""), approved=approved,
                    failed=failed, values=values or {}, errors=errors or {},
                    now_local=datetime.now(WIB).strftime("%Y-%m-%dT%H:%M"),
                    today=office_date(datetime.now(UTC)).isoformat(),
                    may_act=me.has(*STAFF), may_decide=me.has(*STAFF, "tpp"),
                    is_head=me.has("head"))

    @app.get("/klien/{client_id}", response_class=HTMLResponse)
    async def klien(request: Request, client_id: str) -> HTMLResponse:
        return await client_page(request, signed_in(request), client_id)

    @app.post("/klien/{client_id}/{aksi}", response_class=HTMLResponse)
    async def tindakan(request: Request, client_id: str, aksi: str) -> Response:
        me = signed_in(request)
        form = await form_of(request)
        action = ACTIONS.get(aksi)
        if action is None or not CLIENT_ID.match(client_id):
            return page(request, "galat.html", 404, title="Tidak ditemukan",
                        message="Tindakan ini tidak dikenal.")
        if "client_id" in action.fields:  # the case named in the URL, whatever was sent
            form["client_id"] = client_id
        try:
            await call(request, me, action.method, action.service,
                       action.path.format(client_id=client_id), json=action.body(form))
        except Refused as refused:
            if refused.status not in (409, 422):
                raise
            return await client_page(request, me, client_id, 422, failed=aksi, values=form,
                                     errors=errors_by_field(refused, action.fields))
        request.session["flash"] = action.done
        return RedirectResponse(f"/klien/{client_id}#{aksi}", status_code=303)

    @app.get("/klien/{client_id}/data-pribadi", response_class=HTMLResponse)
    async def data_pribadi(request: Request, client_id: str) -> HTMLResponse:
        """Subject access (UU 27/2022): everything held on the person and who read it, as
        the audit service reports it; printable."""
        me = signed_in(request)
        if not CLIENT_ID.match(client_id):
            raise Refused(404, {"title": "Not found"})
        report = await call(request, me, "GET", "audit",
                            f"/v1/privacy/subjects/{client_id}/report")
        return page(request, "data_pribadi.html", report=report, client_id=client_id,
                    flatten=flatten)

    @app.get("/retensi", response_class=HTMLResponse)
    async def retensi(request: Request) -> HTMLResponse:
        """The retention sweep: whose data may now be erased, for the head to confirm one
        by one on each client's page."""
        me = signed_in(request)
        sweep = await call(request, me, "GET", "registration", "/v1/privacy/retention-due")
        return page(request, "retensi.html", sweep=sweep, active="retensi")

    # ------------------------------------------------------------------ Papan kepatuhan

    @app.get("/kepatuhan", response_class=HTMLResponse)
    async def kepatuhan(request: Request, petugas: str | None = None) -> HTMLResponse:
        me = signed_in(request)
        petugas = petugas if petugas and OFFICER_ID.match(petugas) else None
        board, names, officers = await asyncio.gather(
            call(request, me, "GET", "supervision", "/v1/compliance",
                 params={"officer_id": petugas}),
            names_of(request, me, petugas or None),
            optional(request, me, "GET", "notification", "/v1/officers"))
        return page(request, "kepatuhan.html", board=board, names=names, petugas=petugas,
                    officers=officers or [])

    # ------------------------------------------------------------------ Laporan bulanan

    async def report_of(request: Request, me: Officer, asked: str | None) -> monthly.Report:
        month = monthly.parse_month(asked, office_date(datetime.now(UTC)))
        parts = await asyncio.gather(*(
            optional(request, me, "GET", service, "/v1/reports/monthly",
                     params={"month": f"{month.year:04d}-{month.month:02d}"})
            for service in monthly.SERVICES))
        return monthly.Report.of(me.office, month, dict(zip(monthly.SERVICES, parts,
                                                              strict=True)))

    @app.get("/laporan", response_class=HTMLResponse)
    async def laporan(request: Request) -> HTMLResponse:
        me = signed_in(request)
        try:
            report = await report_of(request, me, request.query_params.get("bulan"))
        except ValueError:
            return page(request, "galat.html", 422, title="Bulan tidak valid",
                        message="Tulis bulan sebagai TTTT-BB, misalnya 2026-12.")
        return page(request, "laporan.html", report=report,
                    title_month=bulan(report.month.year, report.month.month))

    @app.get("/laporan.csv")
    async def laporan_csv(request: Request) -> Response:
        me = signed_in(request)
        try:
            report = await report_of(request, me, request.query_params.get("bulan"))
        except ValueError:
            return Response("bulan tidak valid: TTTT-BB\n", status_code=422,
                            media_type="text/plain; charset=utf-8")
        name = f"laporan-bulanan-{me.office}-{report.month:%Y-%m}.csv"
        return Response(report.csv(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return app


def flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A nested document as (path, value) rows, for a page that shows it all."""
    if isinstance(data, dict):
        return [row for k, v in data.items() for row in flatten(v, f"{prefix}{k}.")]
    if isinstance(data, list) and any(isinstance(v, dict | list) for v in data):
        return [row for i, v in enumerate(data) for row in flatten(v, f"{prefix}{i}.")]
    if isinstance(data, list):
        return [(prefix.rstrip("."), ", ".join(str(v) for v in data))]
    return [(prefix.rstrip("."), data)]


def worklist_sections(worklist: dict[str, Any] | None, board: dict[str, Any] | None,
                      today: date) -> list[dict[str, Any]]:
    """The officer's to-do list on Beranda, in the office's own headings: the guidance
    items of each case and the supervision board's, one row per client and item."""
    headings = (
        ("litmas", "Litmas jatuh tempo dan terlambat", ("LITMAS_OVERDUE", "LITMAS_DUE")),
        ("lapor", "Wajib lapor minggu ini", ("REPORT_DUE",)),
        ("terlewat", "Wajib lapor terlewat", ("REPORT_MISSED",)),
        ("pelanggaran", "Pelanggaran menunggu TPP", ("VIOLATION_AWAITING_TPP",)),
        ("program", "Tanpa program untuk tahapnya", ("PROGRAM_MISSING",)),
        ("lainnya", "Lainnya", ("REVIEW_DUE", "PERIOD_ENDING", "REVOCATION_AWAITING_HEAD",
                                "OFFICER_MISSING", "PLAN_MISSING")),
    )
    rows: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in headings}
    where = {kind: key for key, _, kinds in headings for kind in kinds}
    week_end = today + timedelta(days=7)
    for case in (worklist or {}).get("cases", []):
        for item in case["items"]:
            key = where.get(item["kind"])
            if key:
                rows[key].append({"client_id": case["client_id"], "kind": item["kind"],
                                  "due": item.get("due"), "stage": case["stage"],
                                  "program": case["program"]})
    for entry in (board or {}).get("entries", []):
        for item in entry["items"]:
            key = where.get(item["kind"])
            due = item.get("due_on") or item.get("last_due_on")
            if key is None or (item["kind"] == "REPORT_DUE"
                               and date.fromisoformat(item["due_on"]) > week_end):
                continue
            rows[key].append({"client_id": entry["client_id"], "kind": item["kind"],
                              "due": due, "count": item.get("count")})
    return [{"key": key, "title": title,
             "rows": sorted(rows[key], key=lambda r: r.get("due") or "~")}
            for key, title, _ in headings]


class _Headers:
    """Security headers on every answer; pages with personal data are never cached."""

    def __init__(self, app: Any, form_action: str) -> None:
        self.app = app
        self.csp = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                    "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                    f"frame-ancestors 'none'; form-action {form_action}").encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"content-security-policy", self.csp),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"public, max-age=3600" if static else b"no-store")]
            await send(message)

        await self.app(scope, receive, with_headers)


class _RequestLog:
    """One log line per request: method, the route's template (never its values: a URL
    may name a client), status and time; a correlation id passed on to the services."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = new_id()
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        bind(correlation_id=correlation_id)
        started, status = time.perf_counter(), 500

        async def noting(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or (
                "/static" if scope["path"].startswith("/static/") else "unmatched")
            if path not in ("/healthz", "/readyz", "/static"):
                log.info("request", method=scope["method"], route=path, status=status,
                         ms=round((time.perf_counter() - started) * 1000, 2))
            clear("correlation_id")


def main() -> None:
    """Entry point of `python -m services.console`."""
    from shared.runtime import EX_CONFIG, _run, _Server

    try:
        settings = Settings()
        app = create_app(settings)
    except Exception as exc:  # pydantic's message names every field at fault
        print(f"bapas console: invalid settings: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None
    configure_logging("console", fmt=settings.log_format, level=settings.log_level)

    async def serve() -> None:
        config = uvicorn.Config(app, host=settings.host, port=settings.console_port,
                                http="httptools", log_config=None, access_log=False,
                                timeout_graceful_shutdown=5)
        server = _Server(config)
        log.info("serving", url=f"http://{settings.host}:{settings.console_port}")
        await server.serve()
        if not server.started:
            raise SystemExit(f"could not listen on {settings.host}:{settings.console_port}")
        log.info("stopped")

    _run(serve())

