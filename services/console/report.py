"""The monthly office report (laporan bulanan), assembled from the three contexts' own
monthly reports (`GET /v1/reports/monthly?month=YYYY-MM` of registration, guidance and
supervision): each counts the facts it owns. Shown with bar charts, printable on A4, and
downloadable as CSV."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from .words import label

__all__ = ["SERVICES", "Grid", "Report", "Section", "parse_month"]

SERVICES = ("registration", "guidance", "supervision")

# Section titles in the office's words, by the key a context reports under, with the label
# group that names its rows; the order is the report's.
TITLES: dict[str, tuple[str, str]] = {
    "registrations_by_program": ("Klien baru menurut program", "program"),
    "active_clients_by_program": ("Klien aktif menurut program", "program"),
    "active_by_stage": ("Klien aktif menurut tahap", "stage"),
    "closures_by_reason": ("Kasus ditutup menurut alasan", "reason"),
    "reports": ("Wajib lapor", "report"),
    "visits_by_kind": ("Kunjungan dan kontak menurut jenis", "kind"),
    "visits_by_outcome": ("Kunjungan dan kontak menurut hasil", "outcome"),
    "violations_by_category": ("Pelanggaran menurut kategori", "category"),
    "violations_by_code": ("Pelanggaran menurut jenis", "code"),
    "litmas_by_purpose": ("Litmas menurut tujuan", "purpose"),
    "tpp_decisions_by_subject": ("Keputusan TPP menurut perihal", "subject"),
    "tpp_decisions_by_outcome": ("Keputusan TPP menurut hasil", "outcome"),
    "transfers_in_by_program": ("Pindahan masuk menurut program", "program"),
    "transfers_out_by_office": ("Dipindahkan ke kantor", "office"),
}
GRID = ("active_by_program_and_stage", "Klien aktif menurut program dan tahap")
# `active_by_program` repeats registration's `active_clients_by_program` from guidance's
# side; the report shows one of them.
SKIPPED = frozenset({"office", "month", "active_by_program"})
ROW_WORDS = {"due": "Jatuh tempo", "received": "Diterima", "missed": "Terlewat",
             "pending": "Belum jatuh tempo atau belum lapor"}
TOTAL_WORDS = {
    "registrations": "Klien baru", "active_clients": "Klien aktif",
    "active_cases": "Kasus bimbingan aktif", "closures": "Kasus ditutup",
    "revocations": "Pencabutan", "revocations_proposed": "Usulan pencabutan",
    "litmas_submitted": "Litmas selesai", "litmas_submitted_late": "Litmas terlambat",
    "litmas_overdue": "Litmas lewat tenggat", "tpp_decisions": "Keputusan TPP",
    "visits": "Kunjungan dan kontak", "violations": "Pelanggaran",
    "transfers_in": "Pindahan masuk", "transfers_out": "Dipindahkan keluar",
}
MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(value: str | None, today: date) -> date:
    """`2026-12` -> 1 December 2026; none -> this month; ValueError otherwise."""
    if not value:
        return today.replace(day=1)
    m = MONTH.match(value)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError("month must be YYYY-MM")
    return date(int(m.group(1)), int(m.group(2)), 1)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    rows: list[tuple[str, str, int]]  # code, words, count

    @property
    def largest(self) -> int:
        return max((n for _, _, n in self.rows), default=0) or 1


@dataclass(frozen=True)
class Grid:
    """Counts by two codes: active clients by program (rows) and stage (columns)."""

    title: str
    columns: list[tuple[str, str]]              # code, words
    rows: list[tuple[str, str, list[int]]]      # code, words, a count per column


@dataclass(frozen=True)
class Report:
    office: str
    month: date
    totals: list[tuple[str, str, int]]   # key, words, count
    sections: list[Section]
    grid: Grid | None
    missing: list[str]                   # services that gave no report

    @classmethod
    def of(cls, office: str, month: date, parts: dict[str, dict[str, Any] | None]) -> Report:
        """The three answers in one report; a count nobody named yet is shown under its
        own key rather than dropped."""
        doc: dict[str, Any] = {}
        for service in SERVICES:
            for key, value in (parts.get(service) or {}).items():
                doc.setdefault(key, value)
        totals = [(key, TOTAL_WORDS.get(key, key.replace("_", " ")), value)
                  for key, value in doc.items()
                  if isinstance(value, int) and not isinstance(value, bool)
                  and key not in SKIPPED]
        flat = {key: value for key, value in doc.items() if key not in SKIPPED
                and isinstance(value, dict) and all(isinstance(v, int) for v in value.values())}
        order = [*(k for k in TITLES if k in flat), *(k for k in flat if k not in TITLES)]
        sections = []
        for key in order:
            title, group = TITLES.get(key, (key.replace("_", " ").capitalize(), key))
            sections.append(Section(key, title, [
                (code, ROW_WORDS.get(code) or label(group, code), n)
                for code, n in flat[key].items()]))
        grid = None
        nested = doc.get(GRID[0])
        if isinstance(nested, dict) and nested:
            stages = list(next(iter(nested.values())) or {})
            grid = Grid(GRID[1], [(s, label("stage", s)) for s in stages],
                        [(p, label("program", p), [int(by.get(s, 0)) for s in stages])
                         for p, by in nested.items()])
        return cls(office, month, totals, sections, grid,
                   [s for s in SERVICES if parts.get(s) is None])

    def csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["kantor", "bulan", "bagian", "kode", "uraian", "jumlah"])
        month = f"{self.month:%Y-%m}"
        for key, words, n in self.totals:
            w.writerow([self.office, month, "ringkasan", key, words, n])
        if self.grid is not None:
            for code, words, counts in self.grid.rows:
                for (stage, stage_words), n in zip(self.grid.columns, counts, strict=True):
                    w.writerow([self.office, month, self.grid.title, f"{code}/{stage}",
                                f"{words}, {stage_words.lower()}", n])
        for section in self.sections:
            for code, words, n in section.rows:
                w.writerow([self.office, month, section.title, code, words, n])
        return out.getvalue()
