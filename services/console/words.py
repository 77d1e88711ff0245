"""The office's own words for the API's codes, and dates as an Indonesian reader writes
them (`5 Desember 2026`). Dates and times are shown in the office's zone (WIB)."""

from __future__ import annotations

from datetime import date, datetime

from shared.office_time import WIB

__all__ = ["LABELS", "MONTHS", "label", "tanggal", "waktu"]

MONTHS = ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus",
          "September", "Oktober", "November", "Desember")

LABELS: dict[str, dict[str, str]] = {
    "program": {"PB": "Pembebasan Bersyarat", "CB": "Cuti Bersyarat",
                "CMB": "Cuti Menjelang Bebas", "ASIMILASI": "Asimilasi",
                "DIVERSI": "Diversi (anak)", "PIDANA_BERSYARAT": "Pidana Bersyarat",
                "PIDANA_PENGAWASAN": "Pidana Pengawasan (anak)"},
    "stage": {"AWAL": "Tahap awal", "LANJUTAN": "Tahap lanjutan", "AKHIR": "Tahap akhir"},
    "status": {"NEW": "Baru", "ACTIVE": "Aktif", "OPEN": "Aktif", "TRANSFERRED": "Dipindahkan",
               "CLOSED": "Selesai", "ENDED": "Selesai"},
    "sex": {"F": "Perempuan", "M": "Laki-laki"},
    "purpose": {"REINTEGRASI": "Reintegrasi", "DIVERSI": "Diversi",
                "PEMBIMBINGAN": "Pembimbingan"},
    "risk_level": {"RENDAH": "Rendah", "SEDANG": "Sedang", "TINGGI": "Tinggi"},
    "subject": {"STAGE": "Peralihan tahap", "PROGRAM": "Program bimbingan",
                "REVOCATION": "Pencabutan", "TRANSFER": "Pemindahan"},
    "outcome": {"APPROVED": "Disetujui", "REJECTED": "Ditolak", "DEFERRED": "Ditunda",
                "MET_COMPLIED": "Bertemu, patuh", "MET_FAILED_TO_COMPLY": "Bertemu, tidak patuh",
                "ACCEPTABLE_ABSENCE": "Tidak hadir dengan alasan sah",
                "NOT_FOUND": "Tidak ditemukan", "MOVED_UNREPORTED": "Pindah tanpa lapor"},
    "kind": {"KEPRIBADIAN_MENTAL": "Kepribadian (mental, rohani)",
             "KEPRIBADIAN_SOSIAL": "Kepribadian (sosial)", "KEMANDIRIAN": "Kemandirian",
             "KETERTIBAN": "Ketertiban", "KESEHATAN": "Kesehatan",
             "SENI_BUDAYA": "Seni budaya",
             "LAPOR_DIRI": "Lapor diri di kantor", "LAPOR_JARAK_JAUH": "Lapor jarak jauh",
             "KUNJUNGAN_RUMAH": "Kunjungan rumah", "KUNJUNGAN_KERJA": "Kunjungan tempat kerja",
             "PERTEMUAN_KELUARGA": "Pertemuan keluarga",
             "PERTEMUAN_MASYARAKAT": "Pertemuan masyarakat"},
    "approach": {"INDIVIDU": "Individu", "KELOMPOK": "Kelompok", "KLASIKAL": "Klasikal"},
    "frequency": {"WEEKLY": "Mingguan", "BIWEEKLY": "Dua mingguan", "MONTHLY": "Bulanan",
                  "QUARTERLY": "Triwulanan", "ONCE": "Sekali"},
    "participant": {"KLIEN": "Klien", "KELUARGA": "Keluarga", "MASYARAKAT": "Masyarakat",
                    "PK": "PK", "LAINNYA": "Lainnya"},
    "category": {"UMUM": "Umum", "KHUSUS": "Khusus"},
    "code": {"TERSANGKA": "Menjadi tersangka tindak pidana baru (umum)",
             "TERPIDANA": "Dipidana karena tindak pidana baru (umum)",
             "MERESAHKAN_MASYARAKAT": "Meresahkan masyarakat (khusus)",
             "WAJIB_LAPOR_3X": "Tidak wajib lapor 3 kali berturut-turut (khusus)",
             "PINDAH_TANPA_LAPOR": "Pindah alamat tanpa lapor (khusus)",
             "TIDAK_MENGIKUTI_PROGRAM": "Tidak mengikuti program bimbingan (khusus)"},
    "reason": {"COMPLETED": "Selesai masa bimbingan", "REVOKED": "Dicabut",
               "TRANSFERRED": "Dipindahkan", "DECEASED": "Meninggal dunia"},
    "item": {"LITMAS_DUE": "Litmas jatuh tempo", "LITMAS_OVERDUE": "Litmas terlambat",
             "PROGRAM_MISSING": "Belum ada program untuk tahapnya",
             "REVIEW_DUE": "Sidang TPP evaluasi jatuh tempo",
             "PERIOD_ENDING": "Masa bimbingan segera berakhir",
             "REVOCATION_AWAITING_HEAD": "Usulan pencabutan menunggu Kepala Bapas",
             "OFFICER_MISSING": "Belum ada PK",
             "REPORT_DUE": "Wajib lapor jatuh tempo", "REPORT_MISSED": "Wajib lapor terlewat",
             "VIOLATION_AWAITING_TPP": "Pelanggaran menunggu sidang TPP",
             "PLAN_MISSING": "Belum ada rencana wajib lapor"},
    "event": {"ClientRegistered": "Klien didaftarkan", "OfficerAssigned": "PK ditunjuk",
              "AddressChanged": "Alamat diubah", "ClientDetailsCorrected": "Data dikoreksi",
              "ClientTransferred": "Klien dipindahkan", "RegistrationClosed": "Registrasi ditutup",
              "RegisterNumberIssued": "Nomor register diberikan", "NikClaimed": "NIK dicatat",
              "NikReleased": "NIK dilepas", "GuidanceOpened": "Bimbingan dibuka",
              "CaseOfficerAssigned": "PK bimbingan ditunjuk", "LitmasRequested": "Litmas diminta",
              "LitmasSubmitted": "Litmas dicatat", "LitmasOverdue": "Litmas terlambat",
              "TppDecisionRecorded": "Keputusan TPP dicatat",
              "ProgramDrafted": "Program bimbingan disusun",
              "GuidanceSessionHeld": "Sesi bimbingan", "StageAdvanced": "Tahap dinaikkan",
              "RevocationProposed": "Pencabutan diusulkan",
              "RevocationImposed": "Pencabutan ditetapkan", "GuidanceClosed": "Bimbingan ditutup",
              "SupervisionStarted": "Pengawasan dimulai",
              "SupervisingOfficerAssigned": "PK pengawas ditunjuk",
              "ReportingPlanSet": "Rencana wajib lapor ditetapkan",
              "VisitLogged": "Kontak tercatat",
              "ReportMissed": "Wajib lapor terlewat", "ViolationRecorded": "Pelanggaran dicatat",
              "TppReviewRequested": "Sidang TPP diminta",
              "SupervisionEnded": "Pengawasan berakhir",
              "LegalHoldPlaced": "Penahanan hukum oleh auditor",
              "LegalHoldLifted": "Penahanan hukum dicabut",
              "PersonErased": "Data pribadi dihapus"},
    "context": {"registration": "registrasi", "guidance": "bimbingan",
                "supervision": "pengawasan", "notification": "pemberitahuan",
                "audit": "audit"},
    "role": {"pk": "PK", "supervisor": "Kasubsi Bimbingan Klien", "head": "Kepala Bapas",
             "tpp": "Sekretaris TPP", "auditor": "Auditor", "agency": "Instansi",
             "admin": "Admin"},
}


def label(group: str, code: object) -> str:
    """The office's word for an API code; the code itself when there is none."""
    if code is None:
        return "–"
    return LABELS.get(group, {}).get(str(code), str(code))


def _as_date(value: date | str | None) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(WIB).date()
    if isinstance(value, date):
        return value
    text = str(value)
    if len(text) > 10:
        return datetime.fromisoformat(text).astimezone(WIB).date()
    return date.fromisoformat(text)


def tanggal(value: date | str | None) -> str:
    """`5 Desember 2026` (a date, an ISO date, or an instant shown in WIB)."""
    day = _as_date(value)
    if day is None:
        return "–"
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def waktu(value: datetime | str | None) -> str:
    """`5 Desember 2026 14.30 WIB`: an instant in the office's zone."""
    if value is None or value == "":
        return "–"
    at = value if isinstance(value, datetime) else datetime.fromisoformat(
        str(value))
    local = at.astimezone(WIB)
    return f"{tanggal(local.date())} {local:%H.%M} WIB"


def bulan(year: int, month: int) -> str:
    """`Desember 2026`."""
    return f"{MONTHS[month - 1]} {year}"
