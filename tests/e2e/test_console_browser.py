"""The officers' console in a real browser: headless Chromium (Debian's `chromium`, which
`make test` installs) driven by Playwright, against `bapas up` as a newcomer runs it.

An officer signs in, registers a client (the NIK checked as it is typed), records a litmas
and a TPP decision, draws up the stage's program, advances the stage, logs a home visit and
reads the monthly report; the services' refusals appear next to the fields they name. An
officer of another office is refused the client. Every page is checked for console errors
and for a page wider than a 360-px phone, and screenshotted at phone and desktop width into
`test-output/console/` (or `$BAPAS_TEST_OUTPUT`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.console.words import MONTHS
from shared.office_time import office_date
from tests.e2e.test_platform import SERVICES, START_TIMEOUT, Platform, free_ports

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("BAPAS_TEST_OUTPUT", ROOT / "test-output")) / "console"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
PHONE, DESKTOP = {"width": 360, "height": 780}, {"width": 1280, "height": 900}
NIK = "3171044508950003"           # a woman born 5 August 1995 (day + 40), Jakarta Selatan
NAME = "Sri Wahyuningsih"


def chromium_path() -> str:
    """Debian's chromium; never skipped: `make test` installs it when it is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "no chromium on PATH: run `make test`, which installs Debian's chromium"
    return found


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Iterator[tuple[str, Platform]]:
    names = (*SERVICES, "console")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    data = tmp_path_factory.mktemp("console") / "data"
    up = Platform(data, ports)
    up.env["BAPAS_PRIVACY_RETENTION_DAYS"] = "0"  # a closed case may be erased at once
    try:
        up.start()
        up.read_until(lambda line: line.startswith("token"), START_TIMEOUT)
        line = next(line for line in up.lines if line.split()[:1] == ["console"])
        assert line.split()[1] == f"http://127.0.0.1:{ports['console']}", up.report()
        yield line.split()[1], up
    finally:
        up.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


class Officer:
    """One officer's browser session; every page it opens is checked and screenshotted."""

    def __init__(self, browser, base: str, who: str, shots: Path) -> None:
        self.base, self.shots = base, shots
        self.context = browser.new_context(viewport=DESKTOP, locale="id-ID",
                                           timezone_id="Asia/Jakarta")
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.urls.append(r.url))
        self.sign_in(who)

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append((message.text, message.location.get("url", "")))

    def sign_in(self, who: str) -> None:
        page = self.page
        page.goto(self.base + "/")
        assert page.url.endswith("/masuk"), page.url
        assert page.locator("html").get_attribute("lang") == "id"
        self.check("masuk")
        # with the keyboard alone: the first Tab reaches the skip link; then the officer
        # (a radio button) is chosen and the button pressed with Enter
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Langsung ke isi"
        page.get_by_label(re.compile(rf"^{re.escape(who.split('@')[0])} · kantor "
                                     rf"{who.split('@')[1]}")).check()
        page.get_by_role("button", name="Masuk", exact=True).focus()
        page.keyboard.press("Enter")
        page.wait_for_url(self.base + "/")
        assert page.get_by_role("heading", name="Beranda").is_visible()

    def check(self, name: str, status: int | None = None) -> None:
        """No console error so far; nothing wider than a phone; both screenshots. A page
        answered with the `status` it should have (422 for a refused form, 404) makes
        Chromium log that its document "failed to load": that line alone is expected."""
        page = self.page
        page.wait_for_load_state("networkidle")
        errors = [(text, url) for text, url in self.errors
                  if not (status and url == page.url and f"status of {status}" in text)]
        assert errors == [], (name, errors)
        self.errors.clear()
        unlabelled = page.evaluate(
            "[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
            ".filter(e => !(e.labels && e.labels.length)).map(e => e.name || e.id)")
        assert unlabelled == [], f"{name}: fields without a label: {unlabelled}"
        page.set_viewport_size(PHONE)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= PHONE["width"], f"{name}: {wide}px wide at a 360-px phone"
        page.screenshot(path=self.shots / f"{name}-phone.png", full_page=True)
        page.set_viewport_size(DESKTOP)
        page.screenshot(path=self.shots / f"{name}-desktop.png", full_page=True)

    def flash(self) -> str:
        return self.page.locator(".flash").inner_text()

    def close(self) -> None:
        self.context.close()


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def open_form(page, action: str):
    """An action's form on a client's page, opened (each sits folded in a <details>)."""
    details = page.locator(f"details#{action}")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    return details.locator("form")


def field_error(page, form: str, name: str) -> str:
    """The error shown beside a field of a form (ids: f-<form>-<field>)."""
    fid = f"f-{form}-{name.replace('.', '-')}"
    return page.locator(f"[id='{fid}-e']").inner_text()


def test_an_officer_walks_a_client_from_registration_to_the_monthly_report(console, browser):
    base, up = console
    shots = OUTPUT
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    today = office_date(datetime.now(UTC))
    start = today - timedelta(days=10)

    pk = Officer(browser, base, "pk-0001@jaksel", shots)
    page = pk.page
    pk.check("beranda")

    # ---------------------------------------------------------------- Registrasi klien
    page.get_by_role("link", name="Registrasi klien").click()
    page.wait_for_url(base + "/registrasi")
    form = page.locator("form[action='/registrasi']")
    nik = form.get_by_label(re.compile("^NIK"))
    nik.press_sequentially("31710445", delay=20)
    status = page.locator("#nik-status")
    expect(status).to_contain_text("kurang 8")
    nik.press_sequentially(NIK[8:], delay=20)
    expect(status).to_contain_text("NIK valid")
    assert "5 Agustus 1995" in status.inner_text() and "perempuan" in status.inner_text()
    assert form.get_by_label("Tanggal lahir").input_value() == "1995-08-05"  # from the NIK
    pk.check("registrasi")

    form.get_by_label("Nama lengkap").fill(NAME)
    form.get_by_label("Alamat").fill("Jl. Kemang Raya No. 5, Jakarta Selatan")
    form.get_by_label("Program").select_option("PB")
    form.get_by_label("Nomor surat keputusan").fill("PAS-0003.PK.01.05.06 Tahun 2026")
    form.get_by_label("Diterbitkan oleh").fill("Direktur Jenderal Pemasyarakatan")
    form.get_by_label("Tanggal surat keputusan").fill((start - timedelta(days=4)).isoformat())
    form.get_by_label("Asal Lapas/Rutan/LPKA").fill("Lapas Perempuan Kelas IIA Jakarta")
    form.get_by_label("Mulai masa bimbingan").fill(start.isoformat())
    # a refusal of the service, beside the field it names: the period ends before it starts
    form.get_by_label("Akhir masa bimbingan").fill((start - timedelta(days=1)).isoformat())
    form.get_by_label("PK yang ditunjuk").fill("pk-0001")
    form.get_by_role("button", name="Daftarkan").click()
    page.wait_for_load_state()
    assert field_error(page, "", "period.end_on") == "Tanggal selesai harus sesudah tanggal mulai."
    assert form.get_by_label("Nama lengkap").input_value() == NAME  # what was typed stays
    pk.check("registrasi-ditolak", 422)
    form.get_by_label("Akhir masa bimbingan").fill((start + timedelta(days=365)).isoformat())
    form.get_by_role("button", name="Daftarkan").click()
    page.wait_for_url(re.compile(r"/klien/[a-z0-9-]+$"))
    assert "Klien terdaftar dengan nomor register JAKSEL-" in pk.flash()
    registered = office_date(datetime.now(UTC))  # the report's month, even at a month's end
    client_url = page.url
    assert page.get_by_role("heading", name=NAME).is_visible()
    assert "Tahap awal" in page.locator(".lead").inner_text()
    pk.check("klien")

    # ---------------------------------------------------------------- litmas
    litmas = open_form(page, "litmas")
    litmas.get_by_label("Tujuan").select_option("REINTEGRASI")
    litmas.get_by_label("Tingkat risiko").select_option("RENDAH")
    litmas.get_by_label("Rekomendasi").fill("Layak menjalani PB dengan wajib lapor bulanan.")
    litmas.get_by_role("button", name="Simpan litmas").click()  # the summary left empty
    page.wait_for_load_state()
    assert field_error(page, "litmas", "summary") == "Wajib diisi."
    pk.check("litmas-ditolak", 422)
    litmas = open_form(page, "litmas")
    litmas.get_by_label("Ringkasan").fill("Klien tinggal bersama keluarga; risiko rendah.")
    litmas.get_by_role("button", name="Simpan litmas").click()
    page.wait_for_url(client_url + "#litmas")
    assert pk.flash() == "Litmas tersimpan."

    # ---------------------------------------------------------------- TPP decision
    tpp = open_form(page, "tpp")
    tpp.get_by_label("Perihal").select_option("STAGE")
    tpp.get_by_label(re.compile("^Keputusan")).select_option("APPROVED")
    tpp.get_by_label("Tanggal sidang").fill(today.isoformat())
    tpp.get_by_label("Anggota sidang (satu per baris)").fill(
        "Kepala Bapas (ketua)\nKasubsi BK (sekretaris)")
    tpp.get_by_role("button", name="Simpan keputusan").click()
    page.wait_for_url(client_url + "#tpp")
    assert pk.flash() == "Keputusan TPP tersimpan."
    assert "Disetujui" in page.locator("#bimbingan").locator("..").inner_text()

    # ---------------------------------------------------------------- stage: refused, then done
    stage = open_form(page, "tahap")
    stage.get_by_label("Keputusan TPP yang menyetujui").select_option(index=1)
    stage.get_by_role("button", name="Naikkan tahap").click()
    page.wait_for_load_state()
    refusal = page.locator("#tahap .error.general").inner_text()
    assert "program" in refusal.lower(), refusal  # no program for tahap awal yet
    pk.check("tahap-ditolak", 422)
    program = open_form(page, "program")
    program.get_by_label("Jenis bimbingan").select_option("KEPRIBADIAN_MENTAL")
    program.get_by_label("Uraian kegiatan").fill("Konseling individual dengan PK")
    program.get_by_role("button", name="Simpan program").click()
    page.wait_for_url(client_url + "#program")
    assert pk.flash() == "Program bimbingan tersimpan."
    stage = open_form(page, "tahap")
    stage.get_by_label("Keputusan TPP yang menyetujui").select_option(index=1)
    stage.get_by_role("button", name="Naikkan tahap").click()
    page.wait_for_url(client_url + "#tahap")
    assert pk.flash() == "Tahap bimbingan dinaikkan."
    assert "Tahap lanjutan" in page.locator(".lead").inner_text()

    # ---------------------------------------------------------------- a home visit
    visit = open_form(page, "kunjungan")
    visit.get_by_label("Jenis kontak").select_option("KUNJUNGAN_RUMAH")
    visit.get_by_label("Hasil").select_option("MET_COMPLIED")
    visit.get_by_label("Catatan").fill("Klien di rumah bersama ibunya.")
    visit.get_by_role("button", name="Simpan kontak").click()
    page.wait_for_url(client_url + "#kunjungan")
    assert pk.flash() == "Kontak tercatat."
    assert "Kunjungan rumah: bertemu, patuh" in page.locator("#pengawasan").locator("..").inner_text()
    pk.check("klien-lanjutan")

    # ---------------------------------------------------------------- the board and the report
    page.get_by_role("link", name="Papan kepatuhan").click()
    page.wait_for_url(base + "/kepatuhan")
    pk.check("kepatuhan")
    page.get_by_role("link", name="Laporan bulanan").click()
    page.wait_for_url(base + "/laporan")
    page.get_by_label("Bulan").fill(f"{registered:%Y-%m}")
    page.get_by_role("button", name="Tampilkan").click()
    page.wait_for_url(base + f"/laporan?bulan={registered:%Y-%m}")
    month = page.locator(".lead").inner_text()
    assert month.endswith(f"{MONTHS[registered.month - 1]} {registered.year}"), month
    totals = page.locator(".totals").inner_text()
    assert re.search(r"Klien baru\s+[1-9]", totals), totals
    pk.check("laporan")
    with page.expect_download() as download:
        page.get_by_role("link", name="Unduh CSV").click()
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.splitlines()[0] == "kantor,bulan,bagian,kode,uraian,jumlah"
    assert f"jaksel,{registered:%Y-%m},ringkasan,registrations,Klien baru," in csv_text

    # ---------------------------------------------------------------- sign out
    page.get_by_role("button", name="Keluar").click()
    page.wait_for_url(base + "/masuk")
    page.goto(client_url)
    assert page.url.endswith("/masuk")  # the session is gone

    # no personal data in any URL the browser asked for
    assert not [u for u in pk.urls if NIK in u or "Wahyuningsih" in u], pk.urls
    pk.close()

    # ---------------------------------------------------------------- the head: the timeline
    head = Officer(browser, base, "kabapas@jaksel", shots)
    head.page.goto(client_url)
    timeline = head.page.locator("ol.timeline").inner_text()
    for step in ("Klien didaftarkan", "Litmas dicatat", "Keputusan TPP dicatat",
                 "Tahap dinaikkan", "Kontak tercatat"):
        assert step in timeline, timeline
    head.check("klien-kepala")

    # ---------------------------------------------------------------- UU 27/2022
    hpage = head.page
    hpage.get_by_role("link", name="Laporan akses subjek").click()
    hpage.wait_for_url(client_url + "/data-pribadi")
    report = hpage.locator("main").inner_text()
    assert NAME in report and NIK in report and "pk-0001" in report  # data and its readers
    head.check("data-pribadi")
    hpage.goto(client_url)
    close = open_form(hpage, "tutup")
    close.get_by_label(re.compile("^Alasan")).select_option("DECEASED")
    close.get_by_role("button", name="Tutup kasus").click()
    hpage.wait_for_url(client_url + "#tutup")
    assert head.flash() == "Kasus ditutup."
    # registration closes its record on guidance's event, a moment later
    for _ in range(50):
        if hpage.locator("details#hapus").count():
            break
        hpage.wait_for_timeout(200)
        hpage.reload()
    erase = open_form(hpage, "hapus")
    erase.get_by_label(re.compile("^Dasar hukum")).fill("UU 27/2022 Pasal 8")
    erase.get_by_role("button", name="Hapus data pribadi").click()
    hpage.wait_for_url(client_url + "#hapus")
    assert head.flash() == "Data pribadi klien telah dihapus."
    assert hpage.get_by_role("heading", name="Data pribadi dihapus").is_visible()
    assert NAME not in hpage.content() and NIK not in hpage.content()
    assert "Data pribadi dihapus" in hpage.locator("ol.timeline").inner_text()
    head.check("klien-dihapus")
    hpage.get_by_role("link", name="Laporan akses subjek").click()
    hpage.wait_for_url(client_url + "/data-pribadi")
    assert NAME not in hpage.content() and NIK not in hpage.content()
    head.close()

    # ---------------------------------------------------------------- another office
    other = Officer(browser, base, "pk-0001@jaktim", shots)
    response = other.page.goto(client_url)
    assert response is not None and response.status == 404
    assert other.page.get_by_role("heading", name="Tidak ditemukan").is_visible()
    assert NAME not in other.page.content()
    other.check("kantor-lain-ditolak", 404)
    other.close()

    # nor in any log, the console's or a service's
    for path in sorted((up.data / "logs").glob("*.log")):
        text = path.read_text()
        assert NIK not in text and "Wahyuningsih" not in text, path.name
    log = (up.data / "logs" / "console.log").read_text()
    assert '"route": "/klien/{client_id}"' in log
