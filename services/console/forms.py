"""From the console's forms to the services' request bodies, and back from their refusals
to messages beside the fields.

Form fields are named by the API's own field paths (`person.nik`, `activities.0.kind`), so
an error the service names lands next to the field that caused it without a mapping table.
An empty field is left out, so that the service, not the console, says what is required.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .backend import Refused

__all__ = [
    "ACTIONS",
    "REGISTRATION_FIELDS",
    "Action",
    "errors_by_field",
    "nest",
    "registration_body",
]

# What the services' rules say, in the office's words; anything else is shown as the
# service wrote it.
RULE_WORDS = {
    "missing": "Wajib diisi.",
    "nik": "NIK tidak valid: 16 angka berisi kode wilayah, tanggal lahir (DDMMYY, tanggal + "
           "40 untuk perempuan), dan nomor urut.",
    "string_pattern_mismatch": "Formatnya tidak sesuai.",
    "string_too_short": "Wajib diisi.",
    "string_too_long": "Terlalu panjang.",
    "too_short": "Isi sedikitnya satu.",
    "too_long": "Terlalu banyak isian.",
    "enum": "Pilih salah satu pilihan.",
    "literal_error": "Pilih salah satu pilihan.",
    "date_from_datetime_parsing": "Tanggal tidak valid.",
    "date_parsing": "Tanggal tidak valid.",
    "datetime_from_date_parsing": "Tanggal dan jam tidak valid.",
    "datetime_parsing": "Tanggal dan jam tidak valid.",
    "int_parsing": "Isi dengan angka.",
    "greater_than_equal": "Angkanya terlalu kecil.",
    "less_than_equal": "Angkanya terlalu besar.",
    "period_order": "Tanggal selesai harus sesudah tanggal mulai.",
    # the guidance context's rules
    "litmas_missing": "Litmas belum dicatat.",
    "program_missing": "Belum ada program bimbingan untuk tahap ini.",
    "tpp_decision_not_approved": "Keputusan TPP ini tidak menyetujui.",
    "tpp_decision_used": "Keputusan TPP ini sudah dipakai.",
    "tpp_decision_subject": "Keputusan TPP ini tentang perihal lain.",
    "stage_order": "Tahap hanya naik satu per satu.",
    "stage_not_final": "Kasus belum di tahap akhir.",
    "date_required": "Tanggal wajib diisi.",
}


def nest(form: dict[str, Any]) -> dict[str, Any]:
    """`{"person.nik": "…"}` -> `{"person": {"nik": "…"}}`; numeric parts make lists;
    empty values are left out."""
    out: dict[str, Any] = {}
    for name, value in form.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        value = value.strip() if isinstance(value, str) else value
        parts = name.split(".")
        node: Any = out
        for part, after in zip(parts, [*parts[1:], None], strict=True):
            key: Any = int(part) if part.isdigit() else part
            if after is None:
                _put(node, key, value)
            else:
                if _get(node, key) is None:
                    _put(node, key, [] if after.isdigit() else {})
                node = _get(node, key)
    return out


def _get(node: Any, key: Any) -> Any:
    if isinstance(node, list):
        return node[key] if key < len(node) else None
    return node.get(key)


def _put(node: Any, key: Any, value: Any) -> None:
    if isinstance(node, list):
        node.extend([None] * (key + 1 - len(node)))
        node[key] = value
    else:
        node[key] = value


def lines(value: Any) -> list[str]:
    """A textarea with one entry per line."""
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [line.strip() for line in str(value or "").splitlines() if line.strip()]


REGISTRATION_FIELDS = (
    "person.full_name", "person.nik", "person.birth_date", "person.sex", "person.address",
    "person.phone", "program", "decision.number", "decision.issued_by", "decision.issued_on",
    "origin_institution", "period.start_on", "period.end_on", "officer_id",
    "family_contact.name", "family_contact.relation", "family_contact.phone")


def registration_body(form: dict[str, Any]) -> dict[str, Any]:
    body = nest(form)
    contact = body.get("family_contact")
    if isinstance(contact, dict) and not contact:
        body.pop("family_contact")
    return body


HOLD_WORDS = {"open_case": "kasus klien masih berjalan",
              "transferred": "klien dipindahkan; datanya dihapus di kantor tujuan",
              "retention": "masa retensi baru berakhir {until}",
              "auditor_hold": "ditahan auditor"}


def holds_words(holds: list[dict[str, Any]]) -> str:
    from .words import tanggal

    parts = []
    for h in holds:
        words = HOLD_WORDS.get(str(h.get("hold")), str(h.get("message") or h.get("hold")))
        parts.append(words.format(until=tanggal(h.get("until"))) if "{until}" in words
                     else words)
    return "Data pribadi belum dapat dihapus: " + "; ".join(parts) + "."


def errors_by_field(refused: Refused, fields: tuple[str, ...] | None = None
                    ) -> dict[str, str]:
    """Field path -> message. An error inside a list field (`needs.0`) goes to the field;
    one that names no field of the form (or none at all) is kept under ``""``, shown at
    the top of the form."""
    out: dict[str, str] = {}
    holds = refused.problem.get("holds")
    if refused.problem.get("rule") == "legal_hold" and isinstance(holds, list):
        return {"": holds_words(holds)}
    for error in refused.errors:
        field = error.get("field") or ""
        field = field.removeprefix("body.")
        if fields is not None and field not in fields:
            # inside a list field (`needs.0`) -> the field; about a group (`period`, from a
            # rule between its parts) -> its last field (`period.end_on`); else the form
            within = [f for f in fields if field and f.startswith(field + ".")]
            field = next((f for f in fields if field.startswith(f + ".")),
                         within[-1] if within else "")
        message = RULE_WORDS.get(error.get("rule") or "") or error.get("message") or ""
        if field in out and not field:
            out[field] += " " + message
        out.setdefault(field, message)
    return out


def _local_instant(value: Any) -> Any:
    """A `datetime-local` field is the office's wall clock (WIB)."""
    text = str(value or "").strip()
    if len(text) == 16:  # 2026-12-05T14:30
        return text + ":00+07:00"
    return text or None


def _flag(value: Any) -> bool:
    return str(value or "").lower() in ("on", "true", "1", "ya")


def _litmas(f: dict[str, Any]) -> dict[str, Any]:
    body = nest({k: f.get(k) for k in ("purpose", "risk_level", "recommendation", "summary")})
    body["needs"] = lines(f.get("needs"))
    return body


def _tpp(f: dict[str, Any]) -> dict[str, Any]:
    body = nest({k: f.get(k) for k in ("subject", "outcome", "met_on", "notes")})
    body["members"] = lines(f.get("members"))
    return body


def _visit(f: dict[str, Any]) -> dict[str, Any]:
    body = nest({k: f.get(k) for k in ("kind", "outcome", "notes", "remote_reason")})
    instant = _local_instant(f.get("occurred_at"))
    if instant:
        body["occurred_at"] = instant
    return body


def _plan(f: dict[str, Any]) -> dict[str, Any]:
    body = nest({k: f.get(k) for k in ("interval_days", "grace_days", "first_due_on")})
    body["remote_allowed"] = _flag(f.get("remote_allowed"))
    return body


@dataclass(frozen=True)
class Action:
    service: str
    method: str
    path: str
    fields: tuple[str, ...]  # the form's fields, by the API's names
    done: str                # said to the officer once the service accepted it
    shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # else: nest the fields

    def body(self, form: dict[str, Any]) -> dict[str, Any]:
        if self.shape is not None:
            return self.shape(form)
        return nest({k: v for k, v in form.items() if k in self.fields})


ACTIONS: dict[str, Action] = {
    "litmas": Action("guidance", "POST", "/v1/cases/{client_id}/litmas",
                     ("purpose", "risk_level", "needs", "recommendation", "summary"),
                     "Litmas tersimpan.", _litmas),
    "tpp": Action("guidance", "POST", "/v1/cases/{client_id}/tpp-decisions",
                  ("subject", "outcome", "met_on", "members", "notes"),
                  "Keputusan TPP tersimpan.", _tpp),
    "program": Action("guidance", "POST", "/v1/cases/{client_id}/programs",
                      ("stage", "activities.0.kind", "activities.0.approach",
                       "activities.0.frequency", "activities.0.description"),
                      "Program bimbingan tersimpan."),
    "tahap": Action("guidance", "POST", "/v1/cases/{client_id}/stage",
                    ("to_stage", "tpp_decision_id"), "Tahap bimbingan dinaikkan."),
    "tutup": Action("guidance", "POST", "/v1/cases/{client_id}/close",
                    ("reason", "letter_number", "closed_on"), "Kasus ditutup."),
    "rencana": Action("supervision", "PUT", "/v1/supervision/{client_id}/plan",
                      ("interval_days", "grace_days", "remote_allowed", "first_due_on"),
                      "Rencana wajib lapor tersimpan.", _plan),
    "kunjungan": Action("supervision", "POST", "/v1/supervision/{client_id}/visits",
                        ("kind", "occurred_at", "outcome", "notes", "remote_reason"),
                        "Kontak tercatat.", _visit),
    "pelanggaran": Action("supervision", "POST", "/v1/supervision/{client_id}/violations",
                          ("category", "code", "notes"), "Pelanggaran tercatat."),
    "hapus": Action("registration", "POST", "/v1/privacy/erasures",
                    ("client_id", "legal_basis"), "Data pribadi klien telah dihapus."),
}
