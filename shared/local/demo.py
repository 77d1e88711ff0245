"""`bapas demo`: fill a running system with a realistic office, through the public HTTP APIs.

Nothing here touches a database or NATS: every fact goes in the way an officer's client
would put it, with development tokens minted from the local platform's secret, so the demo
is also a smoke test of the APIs. What it builds, for `--clients N`:

- the office's officers in the notification directory (eight PKs, the Kasubsi Bimbingan
  Klien, the Kepala Bapas);
- N clients in realistic proportions (mostly PB, some CB, CMB, ASIMILASI and
  PIDANA_BERSYARAT, children under DIVERSI and PIDANA_PENGAWASAN), with plausible names,
  NIKs whose birth date and sex agree with the person, addresses in the office's city,
  family contacts and decision letters; guidance periods that began at various times in the
  past, some already over;
- for each: the litmas, a program per stage, individual sessions, TPP decisions (mostly
  approved, some rejected or deferred) and stage advances up to where the period says the
  case should be; a reporting plan with the reports received (a few remote), home and
  workplace visits; some clients who stopped reporting, so that the missed-report sweeper
  finds three misses in a row and records a KHUSUS violation with a TPP review;
- closures: COMPLETED (only where the period has ended), REVOKED through the whole path
  (violation, TPP recommendation, the head's temporary revocation), DECEASED, and a transfer
  to a neighbouring office; group sessions (KELOMPOK, KLASIKAL) across each PK's caseload.

The generated office is a function of `--seed` (and of today's date: periods are placed
relative to it). Exit code 0 when everything was accepted; 1, naming the endpoint, the
status and the problem detail, when the system is not running or refuses a call.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as clock
from pathlib import Path
from typing import Any

import click
import httpx

from ..settings import SERVICE_PORTS

__all__ = ["run"]

WIB = timezone(timedelta(hours=7), "WIB")
CONCURRENCY = 16            # clients driven at once
WAIT_TIMEOUT = 45.0         # for a case to appear in another service
SWEEP_WAIT = 30.0           # for the missed-report sweeper at the end (it runs every 10 s)
PKS = 8

# ------------------------------------------------------------------------ the office's city


@dataclass(frozen=True)
class District:
    code: int                         # NIK district (kecamatan) code
    name: str
    villages: tuple[tuple[str, str], ...]  # (kelurahan, postal code)
    streets: tuple[str, ...]


@dataclass(frozen=True)
class OfficeInfo:
    name: str
    city: str
    region: str                       # NIK province + regency/city code
    court: str                        # Pengadilan Negeri
    court_abbr: str                   # as in case numbers: PN Jkt.Sel
    prosecutor: str
    police: str
    districts: tuple[District, ...]
    neighbour: str                    # where a client moves to
    kanwil: str = "W10"               # the regional office's letter code (DKI Jakarta)
    prisons_m: tuple[str, ...] = (
        "Lapas Kelas I Cipinang", "Lapas Narkotika Kelas IIA Jakarta",
        "Rutan Kelas I Jakarta Pusat (Salemba)", "Rutan Kelas I Cipinang",
        "Lapas Kelas IIA Salemba")
    prisons_f: tuple[str, ...] = (
        "Lapas Perempuan Kelas IIA Jakarta",
        "Rutan Perempuan Kelas IIA Jakarta Timur (Pondok Bambu)")
    child_prison: str = "LPKA Kelas II Jakarta"


JAKSEL = OfficeInfo(
    name="Bapas Kelas I Jakarta Selatan", city="Jakarta Selatan", region="3171",
    court="Pengadilan Negeri Jakarta Selatan", court_abbr="PN Jkt.Sel",
    prosecutor="Kejaksaan Negeri Jakarta Selatan", police="Polres Metro Jakarta Selatan",
    neighbour="jaktim",
    districts=(
        District(1, "Jagakarsa", (("Jagakarsa", "12620"), ("Srengseng Sawah", "12640"),
                                  ("Ciganjur", "12630"), ("Lenteng Agung", "12610"),
                                  ("Tanjung Barat", "12530"), ("Cipedak", "12630")),
                 ("Jl. Moh. Kahfi II", "Jl. Raya Lenteng Agung", "Jl. Srengseng Sawah Raya",
                  "Jl. Joe", "Jl. Raya Ciganjur", "Jl. Kebagusan Raya")),
        District(2, "Pasar Minggu", (("Pejaten Barat", "12510"), ("Pejaten Timur", "12510"),
                                     ("Pasar Minggu", "12520"), ("Kebagusan", "12520"),
                                     ("Jati Padang", "12540"), ("Ragunan", "12550"),
                                     ("Cilandak Timur", "12560")),
                 ("Jl. Raya Pasar Minggu", "Jl. Pejaten Raya", "Jl. Warung Jati Barat",
                  "Jl. Jati Padang Raya", "Jl. Harsono RM", "Jl. Siaga Raya")),
        District(3, "Cilandak", (("Cipete Selatan", "12410"), ("Gandaria Selatan", "12420"),
                                 ("Cilandak Barat", "12430"), ("Lebak Bulus", "12440"),
                                 ("Pondok Labu", "12450")),
                 ("Jl. RS Fatmawati", "Jl. Pondok Labu Raya", "Jl. Lebak Bulus Raya",
                  "Jl. Cipete Raya", "Jl. Haji Nawi", "Jl. Margasatwa Raya")),
        District(4, "Pesanggrahan", (("Petukangan Utara", "12260"),
                                     ("Petukangan Selatan", "12270"), ("Ulujami", "12250"),
                                     ("Pesanggrahan", "12320"), ("Bintaro", "12330")),
                 ("Jl. Ciledug Raya", "Jl. Ulujami Raya", "Jl. Bintaro Permai",
                  "Jl. Veteran Raya", "Jl. Pesanggrahan Raya")),
        District(5, "Kebayoran Lama", (("Grogol Utara", "12210"), ("Grogol Selatan", "12220"),
                                       ("Cipulir", "12230"), ("Kebayoran Lama Utara", "12240"),
                                       ("Kebayoran Lama Selatan", "12240"),
                                       ("Pondok Pinang", "12310")),
                 ("Jl. Ciputat Raya", "Jl. Kebayoran Lama Raya", "Jl. Pondok Pinang Raya",
                  "Jl. Cipulir Raya", "Jl. Kramat Raya", "Jl. Kesehatan")),
        District(6, "Kebayoran Baru", (("Selong", "12110"), ("Gunung", "12120"),
                                       ("Kramat Pela", "12130"), ("Gandaria Utara", "12140"),
                                       ("Cipete Utara", "12150"), ("Pulo", "12160"),
                                       ("Petogogan", "12170"), ("Rawa Barat", "12180")),
                 ("Jl. Wolter Monginsidi", "Jl. Panglima Polim", "Jl. Kyai Maja",
                  "Jl. Gandaria Tengah", "Jl. Bumi", "Jl. Radio Dalam Raya")),
        District(7, "Mampang Prapatan", (("Kuningan Barat", "12710"), ("Pela Mampang", "12720"),
                                         ("Bangka", "12730"), ("Tegal Parang", "12790"),
                                         ("Mampang Prapatan", "12790")),
                 ("Jl. Mampang Prapatan Raya", "Jl. Kemang Raya", "Jl. Bangka Raya",
                  "Jl. Tegal Parang Utara", "Jl. Kapten Tendean", "Jl. Duren Tiga Selatan")),
        District(8, "Pancoran", (("Kalibata", "12740"), ("Rawajati", "12750"),
                                 ("Duren Tiga", "12760"), ("Pengadegan", "12770"),
                                 ("Cikoko", "12770"), ("Pancoran", "12780")),
                 ("Jl. Kalibata Raya", "Jl. Rawajati Timur", "Jl. Duren Tiga Raya",
                  "Jl. Pengadegan Timur", "Jl. Raya Pasar Minggu", "Jl. Cikoko Barat")),
        District(9, "Tebet", (("Tebet Barat", "12810"), ("Tebet Timur", "12820"),
                              ("Kebon Baru", "12830"), ("Bukit Duri", "12840"),
                              ("Manggarai", "12850"), ("Manggarai Selatan", "12860"),
                              ("Menteng Dalam", "12870")),
                 ("Jl. Tebet Raya", "Jl. Tebet Barat Dalam", "Jl. Dr. Saharjo",
                  "Jl. Casablanca", "Jl. Manggarai Utara", "Jl. Bukit Duri Tanjakan")),
        District(10, "Setiabudi", (("Setiabudi", "12910"), ("Karet", "12920"),
                                   ("Karet Semanggi", "12930"), ("Karet Kuningan", "12940"),
                                   ("Kuningan Timur", "12950"), ("Menteng Atas", "12960"),
                                   ("Pasar Manggis", "12970"), ("Guntur", "12980")),
                 ("Jl. Karet Pasar Baru", "Jl. Menteng Atas Selatan", "Jl. Guntur",
                  "Jl. Setiabudi Tengah", "Jl. Halimun", "Jl. Karet Belakang")),
    ))

JAKTIM = OfficeInfo(
    name="Bapas Kelas I Jakarta Timur-Utara", city="Jakarta Timur", region="3172",
    court="Pengadilan Negeri Jakarta Timur", court_abbr="PN Jkt.Tim",
    prosecutor="Kejaksaan Negeri Jakarta Timur", police="Polres Metro Jakarta Timur",
    neighbour="jaksel",
    districts=(
        District(4, "Kramat Jati", (("Kramat Jati", "13510"), ("Batu Ampar", "13520"),
                                    ("Cililitan", "13640"), ("Cawang", "13630")),
                 ("Jl. Raya Bogor", "Jl. Dewi Sartika", "Jl. Batu Ampar III")),
        District(6, "Jatinegara", (("Bali Mester", "13310"), ("Cipinang Besar Utara", "13410"),
                                   ("Rawa Bunga", "13350"), ("Bidara Cina", "13330")),
                 ("Jl. Jatinegara Barat", "Jl. Otto Iskandardinata", "Jl. Bekasi Timur Raya")),
        District(9, "Duren Sawit", (("Pondok Kopi", "13460"), ("Klender", "13470"),
                                    ("Duren Sawit", "13440"), ("Pondok Bambu", "13430")),
                 ("Jl. Raya Kalimalang", "Jl. Swadaya", "Jl. Pahlawan Revolusi")),
        District(10, "Makasar", (("Halim Perdana Kusuma", "13610"), ("Kebon Pala", "13650"),
                                 ("Pinang Ranti", "13560")),
                 ("Jl. Pondok Gede Raya", "Jl. Raya Pinang Ranti", "Jl. Makasar Raya")),
    ))

JAKPUS = OfficeInfo(
    name="Bapas Kelas I Jakarta Pusat", city="Jakarta Pusat", region="3173",
    court="Pengadilan Negeri Jakarta Pusat", court_abbr="PN Jkt.Pst",
    prosecutor="Kejaksaan Negeri Jakarta Pusat", police="Polres Metro Jakarta Pusat",
    neighbour="jaksel",
    districts=(
        District(2, "Tanah Abang", (("Bendungan Hilir", "10210"), ("Kebon Melati", "10230"),
                                    ("Petamburan", "10260"), ("Kampung Bali", "10250")),
                 ("Jl. KH Mas Mansyur", "Jl. Jati Bunder", "Jl. Petamburan V")),
        District(4, "Senen", (("Kramat", "10450"), ("Kwitang", "10420"), ("Bungur", "10460")),
                 ("Jl. Kramat Raya", "Jl. Kramat Sentiong", "Jl. Kwitang")),
        District(6, "Cempaka Putih", (("Rawasari", "10570"), ("Cempaka Putih Timur", "10510")),
                 ("Jl. Rawasari Selatan", "Jl. Cempaka Putih Raya", "Jl. Percetakan Negara")),
        District(8, "Kemayoran", (("Harapan Mulya", "10640"), ("Sumur Batu", "10640"),
                                  ("Utan Panjang", "10650")),
                 ("Jl. Garuda", "Jl. Utan Panjang Raya", "Jl. Landas Pacu Timur")),
    ))

JAKBAR = OfficeInfo(
    name="Bapas Kelas I Jakarta Barat", city="Jakarta Barat", region="3174",
    court="Pengadilan Negeri Jakarta Barat", court_abbr="PN Jkt.Brt",
    prosecutor="Kejaksaan Negeri Jakarta Barat", police="Polres Metro Jakarta Barat",
    neighbour="jaksel",
    districts=(
        District(1, "Cengkareng", (("Cengkareng Barat", "11730"), ("Kapuk", "11720"),
                                   ("Rawa Buaya", "11740")),
                 ("Jl. Daan Mogot", "Jl. Kamal Raya", "Jl. Bangun Nusa Raya")),
        District(3, "Kalideres", (("Kalideres", "11840"), ("Tegal Alur", "11820"),
                                  ("Pegadungan", "11830")),
                 ("Jl. Peta Selatan", "Jl. Kamal Raya Outer Ring Road", "Jl. Tegal Alur")),
        District(6, "Grogol Petamburan", (("Jelambar", "11460"), ("Tomang", "11440"),
                                          ("Wijaya Kusuma", "11460")),
                 ("Jl. Prof. Dr. Latumenten", "Jl. Tawakal Raya", "Jl. Jelambar Baru")),
        District(8, "Kebon Jeruk", (("Sukabumi Utara", "11540"), ("Kedoya Utara", "11520"),
                                    ("Duri Kepa", "11510")),
                 ("Jl. Panjang", "Jl. Arjuna Selatan", "Jl. Kebon Jeruk Raya")),
    ))

BANDUNG = OfficeInfo(
    name="Bapas Kelas I Bandung", city="Kota Bandung", region="3273",
    court="Pengadilan Negeri Bandung", court_abbr="PN Bdg",
    prosecutor="Kejaksaan Negeri Kota Bandung", police="Polrestabes Bandung",
    neighbour="jaksel", kanwil="W11",
    prisons_m=("Lapas Kelas I Sukamiskin", "Rutan Kelas I Bandung (Kebon Waru)",
               "Lapas Narkotika Kelas IIA Bandung", "Lapas Kelas IIA Banceuy"),
    prisons_f=("Lapas Perempuan Kelas IIA Bandung",), child_prison="LPKA Kelas II Bandung",
    districts=(
        District(1, "Bandung Kulon", (("Cijerah", "40213"), ("Caringin", "40212"),
                                      ("Gempolsari", "40215")),
                 ("Jl. Holis", "Jl. Cijerah", "Jl. Terusan Jakarta")),
        District(6, "Regol", (("Ciseureuh", "40255"), ("Pungkur", "40252"),
                              ("Ancol", "40254")),
                 ("Jl. Moh. Toha", "Jl. Pungkur", "Jl. Dewi Sartika")),
        District(7, "Lengkong", (("Burangrang", "40262"), ("Cijagra", "40265"),
                                 ("Turangga", "40264")),
                 ("Jl. Buah Batu", "Jl. Burangrang", "Jl. Karapitan")),
        District(11, "Kiaracondong", (("Babakan Sari", "40283"), ("Sukapura", "40285")),
                 ("Jl. Kiaracondong", "Jl. Babakan Sari", "Jl. Jakarta")),
    ))

OFFICES = {"jaksel": JAKSEL, "jaktim": JAKTIM, "jakpus": JAKPUS, "jakbar": JAKBAR,
           "bandung": BANDUNG}
GENERIC_DISTRICTS = (
    District(1, "Kota", (("Sukamaju", "10110"), ("Sukajadi", "10120"), ("Mekarsari", "10130")),
             ("Jl. Merdeka", "Jl. Jenderal Sudirman", "Jl. Ahmad Yani", "Jl. Diponegoro")),
    District(2, "Utara", (("Sumbersari", "10210"), ("Karangrejo", "10220")),
             ("Jl. Pahlawan", "Jl. Gatot Subroto", "Jl. Pemuda")),
)


def office_info(code: str) -> OfficeInfo:
    """The office's city. An office we hold no street list for gets plain street and village
    names under its own name (and Jakarta NIK codes)."""
    if code in OFFICES:
        return OFFICES[code]
    town = code.replace("-", " ").replace("_", " ").title()
    return OfficeInfo(
        name=f"Bapas {town}", city=town, region=JAKSEL.region, court=f"Pengadilan Negeri {town}",
        court_abbr=f"PN {town}", prosecutor=f"Kejaksaan Negeri {town}",
        police=f"Polres {town}", districts=GENERIC_DISTRICTS, neighbour="jaksel")


# ------------------------------------------------------------------------------ the people

MEN = ("Agus", "Budi", "Dedi", "Eko", "Hendra", "Joko", "Rudi", "Slamet", "Wahyu", "Yusuf",
       "Ahmad", "Andi", "Bambang", "Dimas", "Fajar", "Galih", "Hadi", "Irfan", "Iwan",
       "Kurniawan", "Lukman", "Muhammad", "Nanang", "Rahmat", "Rizky", "Sugeng", "Taufik",
       "Teguh", "Wawan", "Yoga", "Arif", "Bayu", "Doni", "Fikri", "Gilang", "Haris", "Ilham",
       "Reza", "Sandi", "Tri", "Ujang", "Asep", "Dadang", "Ucok", "Yohanes", "Stefanus",
       "Ketut", "Made", "Putu", "Abdul", "Firman", "Rendy", "Aditya", "Ricky", "Samsul")
WOMEN = ("Siti", "Sri", "Dewi", "Ani", "Rina", "Wati", "Yuni", "Nur", "Lestari", "Fitri",
         "Indah", "Ratna", "Ayu", "Putri", "Rini", "Maya", "Dian", "Novi", "Eka", "Lina",
         "Mega", "Nia", "Sari", "Tuti", "Yanti", "Desi", "Intan", "Kartika", "Nurul", "Rahmawati")
MUHAMMAD = ("Rizky", "Fajar", "Ilham", "Arif", "Yusuf", "Iqbal", "Rafi", "Fikri", "Hafiz",
            "Reza", "Farhan", "Aldi")
MEN_SECOND = ("Setiawan", "Saputra", "Pratama", "Hidayat", "Kurniawan", "Wijaya", "Santoso",
              "Susanto", "Nugroho", "Gunawan", "Permana", "Hermawan", "Firmansyah",
              "Ramadhan", "Hakim", "Prasetyo", "Purnomo", "Syahputra", "Maulana", "Irawan",
              "Suryadi", "Hidayatullah", "Rahman", "Fauzi", "Siswanto")
WOMEN_SECOND = ("Lestari", "Wulandari", "Rahayu", "Handayani", "Puspitasari", "Anggraini",
                "Permatasari", "Kusumawati", "Utami", "Safitri", "Maharani", "Purnamasari",
                "Susanti", "Yulianti", "Oktaviani", "Ningsih")
FAMILIES = ("Simanjuntak", "Siregar", "Nasution", "Harahap", "Lubis", "Hutapea", "Sitompul",
            "Pardede", "Panjaitan", "Sinaga", "Manurung", "Situmorang", "Tampubolon",
            "Wuisan", "Lumenta", "Pattikawa", "Latuconsina", "Matulessy", "Tanjung",
            "Chaniago", "Daulay", "Hasibuan", "Purba", "Rumagit", "Sembiring")
TITLES = ("S.Sos.", "S.H.", "S.Psi.", "S.Tr.Pas.", "A.Md.P.", "S.Kesos.", "M.Si.")

ALLEYS = ("Masjid", "Mawar", "Melati", "Damai", "Haji Saaba", "Sawo", "H. Ridi", "Langgar")
PHONE_PREFIXES = ("811", "812", "813", "821", "822", "823", "852", "853", "814", "815",
                  "856", "857", "858", "817", "818", "819", "859", "877", "878", "895",
                  "896", "897", "881", "882")

ADULT_JOBS = ("pengemudi ojek daring", "buruh bangunan", "pedagang kaki lima", "karyawan swasta",
              "sopir angkutan umum", "montir bengkel", "juru parkir", "petugas keamanan",
              "wiraswasta (warung kelontong)", "buruh harian lepas", "belum bekerja",
              "penjual makanan keliling", "kurir ekspedisi")
CHILD_SCHOOL = ("pelajar SMP kelas 8", "pelajar SMP kelas 9", "pelajar SMA kelas 10",
                "pelajar SMK kelas 11", "putus sekolah sejak kelas 8", "pelajar MTs kelas 9")
ADULT_OFFENCES = (("Pasal 362 KUHP (pencurian)", False), ("Pasal 363 KUHP (pencurian dengan "
                  "pemberatan)", False), ("Pasal 372 KUHP (penggelapan)", False),
                  ("Pasal 378 KUHP (penipuan)", False), ("Pasal 351 KUHP (penganiayaan)", False),
                  ("Pasal 480 KUHP (penadahan)", False),
                  ("Pasal 170 KUHP (pengeroyokan)", False),
                  ("Pasal 112 UU 35/2009 (narkotika)", True),
                  ("Pasal 114 UU 35/2009 (narkotika)", True),
                  ("Pasal 127 UU 35/2009 (penyalahgunaan narkotika)", True))
CHILD_OFFENCES = (("Pasal 362 KUHP (pencurian)", False), ("Pasal 363 KUHP (pencurian dengan "
                  "pemberatan)", False), ("Pasal 351 KUHP (penganiayaan)", False),
                  ("Pasal 170 KUHP (pengeroyokan, tawuran pelajar)", False),
                  ("Pasal 2 UU Darurat 12/1951 (membawa senjata tajam)", False))
NEEDS = ("pekerjaan", "keterampilan kerja", "bimbingan agama", "konseling keluarga",
         "modal usaha", "kesehatan", "tempat tinggal", "pendidikan")
NEW_OFFENCES = ("pencurian sepeda motor", "penganiayaan", "penyalahgunaan narkotika",
                "penipuan daring")
REMOTE_REASONS = ("bekerja sebagai ABK kapal di Pelabuhan Muara Baru, jadwal berlayar",
                  "bekerja di proyek konstruksi di Karawang, pulang dua minggu sekali",
                  "merawat orang tua yang sakit di Bogor",
                  "bekerja shift malam di pabrik di Cikarang")

# (kind, frequency, description); the first of each stage comes always
ACTIVITIES = {
    "AWAL": (("KETERTIBAN", "MONTHLY", "Wajib lapor diri ke Bapas dan orientasi syarat program"),
             ("KEPRIBADIAN_MENTAL", "BIWEEKLY", "Konseling individual dengan PK: penerimaan diri "
              "dan rencana setelah bebas"),
             ("KEPRIBADIAN_MENTAL", "WEEKLY", "Bimbingan rohani (pengajian/ibadah) di lingkungan "
              "tempat tinggal")),
    "LANJUTAN": (("KEMANDIRIAN", "WEEKLY", "Pelatihan keterampilan kerja di BLK {city} "
                  "(las listrik / servis sepeda motor)"),
                 ("KEPRIBADIAN_SOSIAL", "MONTHLY", "Kerja bakti dan kegiatan sosial di "
                  "lingkungan RT"),
                 ("KEMANDIRIAN", "BIWEEKLY", "Pelatihan barista dan wirausaha makanan bersama "
                  "mitra Bapas"),
                 ("SENI_BUDAYA", "MONTHLY", "Sanggar seni budaya Betawi (palang pintu, "
                  "gambang kromong)")),
    "AKHIR": (("KEMANDIRIAN", "MONTHLY", "Pendampingan usaha mikro dan penyaluran kerja"),
              ("KEPRIBADIAN_SOSIAL", "ONCE", "Persiapan akhir pembimbingan: konseling bersama "
               "keluarga dan Ketua RT"),
              ("KESEHATAN", "ONCE", "Pemeriksaan kesehatan di Puskesmas Kecamatan")),
}
CHILD_ACTIVITIES = (("KEPRIBADIAN_SOSIAL", "WEEKLY", "Pendampingan kembali ke sekolah "
                     "bersama wali kelas"),
                    ("KEMANDIRIAN", "WEEKLY", "Kejar Paket B/C di PKBM terdekat"),
                    ("KEPRIBADIAN_MENTAL", "BIWEEKLY", "Konseling keluarga bersama orang tua"))
NARCOTICS_ACTIVITY = ("KESEHATAN", "WEEKLY", "Rehabilitasi rawat jalan di BNNK {city}")

SESSION_NOTES = {
    "KETERTIBAN": ("Klien memahami syarat umum dan khusus program serta jadwal wajib lapor.",
                   "Klien diingatkan kembali larangan meninggalkan wilayah tanpa izin."),
    "KEPRIBADIAN_MENTAL": ("Klien kooperatif; menyampaikan penyesalan dan rencana bekerja.",
                           "Klien rutin mengikuti pengajian di musala dekat rumah.",
                           "Konseling: klien mulai terbuka tentang tekanan ekonomi keluarga."),
    "KEPRIBADIAN_SOSIAL": ("Klien ikut kerja bakti RT; Ketua RT menyatakan klien diterima baik.",
                           "Klien aktif dalam kegiatan karang taruna."),
    "KEMANDIRIAN": ("Klien hadir pelatihan; progres baik, target sertifikat bulan depan.",
                    "Klien mulai berjualan kopi keliling dengan modal dari keluarga.",
                    "Klien diterima bekerja harian di bengkel dekat rumah."),
    "KESEHATAN": ("Hasil tes urine negatif; klien tetap mengikuti rawat jalan.",
                  "Pemeriksaan kesehatan umum di Puskesmas: kondisi baik."),
    "SENI_BUDAYA": ("Klien berlatih di sanggar dua kali sebulan.",),
}

GROUP_SESSIONS = (("KEPRIBADIAN_MENTAL", "KELOMPOK", "Bimbingan rohani bersama di aula Bapas"),
                  ("KEMANDIRIAN", "KELOMPOK", "Pelatihan kewirausahaan bersama mitra UMKM"),
                  ("KEPRIBADIAN_SOSIAL", "KELOMPOK", "Diskusi kelompok: kembali ke masyarakat"),
                  ("KETERTIBAN", "KELOMPOK", "Penyuluhan hukum bersama Pos Bantuan Hukum"))


# ------------------------------------------------------------------------------ the plan

PROGRAM_WEIGHTS = (("PB", 46), ("CB", 10), ("CMB", 9), ("ASIMILASI", 12),
                   ("PIDANA_BERSYARAT", 9), ("DIVERSI", 7), ("PIDANA_PENGAWASAN", 7))
CHILD_PROGRAMS = ("DIVERSI", "PIDANA_PENGAWASAN")
REINTEGRATION = ("PB", "CB", "CMB", "ASIMILASI")
PERIOD_DAYS = {"PB": (240, 900), "CB": (90, 240), "CMB": (45, 180), "ASIMILASI": (90, 365),
               "PIDANA_BERSYARAT": (365, 1095), "DIVERSI": (60, 180),
               "PIDANA_PENGAWASAN": (90, 540)}
STAGES = ("AWAL", "LANJUTAN", "AKHIR")


@dataclass
class Person:
    full_name: str
    nik: str
    birth_date: date
    sex: str
    address: str
    district: str
    village: str
    phone: str | None
    family: dict[str, Any]


@dataclass
class ClientPlan:
    """Everything the demo will do for one client, drawn from the seed."""

    index: int
    seed: int
    program: str
    child: bool
    person: Person
    origin: str
    decision: dict[str, str]
    start: date
    end: date
    officer: str | None
    fate: str            # ACTIVE NEW UNASSIGNED COMPLETE ENDED_OPEN REVOKE REVOKE_PENDING
    #                      DECEASED TRANSFER
    stage: str           # the stage the case should reach
    lagging: bool        # the TPP deferred the last advance
    litmas: bool
    program_now: bool    # a program for the current stage exists
    risk: str
    needs: list[str]
    job: str
    offence: str
    narcotics: bool
    supervision: str     # NONE DEFAULT COMPLIANT REMOTE MISSED TWO_THEN_REPORT
    misses: int          # for MISSED: how many the sweeper should find
    interval: int
    visit: str | None    # None HOME WORK FAMILY MOVED NOT_FOUND
    violation: str | None  # None UMUM KHUSUS_PROGRAM KHUSUS_UNREST
    reassign: str | None = None
    last_day: date | None = None  # last day anything happens (the day before a death)


class Today:
    """The office's calendar (WIB), fixed at the start of the run."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)
        self.date = self.now.astimezone(WIB).date()

    def at(self, day: date, rng: random.Random) -> str:
        """A moment on `day` during office hours, never in the future."""
        if day >= self.date:
            return (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
        moment = datetime.combine(day, clock(rng.randint(8, 15), rng.choice((0, 15, 30, 45))),
                                  WIB)
        return moment.isoformat()


def _weighted(rng: random.Random, pairs) -> str:
    total = sum(w for _, w in pairs)
    x = rng.uniform(0, total)
    for value, w in pairs:
        x -= w
        if x <= 0:
            return value
    return pairs[-1][0]


class Generator:
    def __init__(self, office: str, info: OfficeInfo, seed: int, today: date) -> None:
        self.office, self.info, self.today = office, info, today
        self.rng = random.Random(seed)
        self.niks: set[str] = set()

    # ---------------------------------------------------------------------------- people

    def name(self, sex: str, family: str | None = None) -> str:
        r = self.rng
        given = r.choice(MEN if sex == "M" else WOMEN)
        if family:
            return f"{given} {family}"
        style = r.random()
        if style < 0.15:
            return given if given not in ("Muhammad", "Nur", "Siti", "Sri") else \
                f"{given} {r.choice(MEN_SECOND if sex == 'M' else WOMEN_SECOND)}"
        if style < 0.30 and sex == "M":
            return f"Muhammad {r.choice(MUHAMMAD)} {r.choice(MEN_SECOND)}"
        second = r.choice(MEN_SECOND if sex == "M" else WOMEN_SECOND)
        return given if second == given else f"{given} {second}"

    def phone(self) -> str:
        r = self.rng
        return f"+62{r.choice(PHONE_PREFIXES)}{r.randint(0, 10 ** 8 - 1):08d}"

    def person(self, age_range: tuple[int, int], female_share: float) -> Person:
        r = self.rng
        sex = "F" if r.random() < female_share else "M"
        age_days = r.randint(age_range[0] * 365 + 30, age_range[1] * 365 + 300)
        born = self.today - timedelta(days=age_days)
        if born.day > 28:  # keep clear of month ends and 29 February
            born = born.replace(day=28)
        family = r.choice(FAMILIES) if r.random() < 0.2 else None
        district = r.choice(self.info.districts)
        village, postcode = r.choice(district.villages)
        # most NIKs were issued where the client lives; some elsewhere in Jakarta
        region = self.info.region if r.random() < 0.85 else r.choice(
            ("3171", "3172", "3173", "3174", "3175"))
        dcode = district.code if region == self.info.region else r.randint(1, 10)
        day = born.day + (40 if sex == "F" else 0)
        while True:
            serial = r.randint(1, 2500)
            nik = f"{region}{dcode:02d}{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"
            if nik not in self.niks:
                self.niks.add(nik)
                break
        street = r.choice(district.streets)
        alley = f" Gg. {r.choice(ALLEYS)}" if r.random() < 0.35 else ""
        address = (f"{street}{alley} No. {r.randint(1, 120)}, RT {r.randint(1, 15):03d}/RW "
                   f"{r.randint(1, 12):03d}, Kel. {village}, Kec. {district.name}, "
                   f"{self.info.city} {postcode}")
        return Person(full_name=self.name(sex, family), nik=nik, birth_date=born, sex=sex,
                      address=address, district=district.name, village=village,
                      phone=self.phone() if r.random() < 0.92 else None,
                      family={"family_name": family})

    def family_contact(self, p: Person, child: bool) -> dict[str, Any]:
        r = self.rng
        fam = p.family.get("family_name")
        age = (self.today - p.birth_date).days // 365
        if child:
            sex, relation = r.choice((("F", "ibu kandung"), ("M", "ayah kandung"),
                                      ("F", "ibu kandung"), ("F", "nenek")))
        elif age < 26:
            sex, relation = r.choice((("F", "ibu kandung"), ("M", "ayah kandung"),
                                      ("M", "kakak kandung")))
        elif r.random() < 0.6:
            sex, relation = ("F", "istri") if p.sex == "M" else ("M", "suami")
            fam = None if sex == "F" else fam
        else:
            sex, relation = r.choice((("F", "ibu kandung"), ("M", "kakak kandung"),
                                      ("F", "adik kandung"), ("M", "paman")))
        return {"name": self.name(sex, fam), "relation": relation, "phone": self.phone()}

    # ------------------------------------------------------------------------- decisions

    def decision(self, program: str, origin: str, issued: date, narcotics: bool,
                 child: bool) -> dict[str, str]:
        r, y = self.rng, issued.year
        abbr = self.info.court_abbr
        if program in ("PB", "CB", "CMB"):
            return {"number": f"PAS-{r.randint(100, 9999)}.PK.01.05.06 Tahun {y}",
                    "issued_by": "Direktur Jenderal Pemasyarakatan",
                    "issued_on": issued.isoformat()}
        if program == "ASIMILASI":
            unit = r.choice(("PAS.1", "PAS.2", "PAS.5"))
            return {"number": f"{self.info.kanwil}.{unit}-PK.01.04.06-"
                              f"{r.randint(100, 2999):04d} Tahun {y}",
                    "issued_by": f"Kepala {origin.split(' (')[0]}", "issued_on": issued.isoformat()}
        if program == "DIVERSI":
            return {"number": f"{r.randint(1, 60)}/Pen.Div/{y}/{abbr}",
                    "issued_by": f"Ketua {self.info.court}", "issued_on": issued.isoformat()}
        kind = "Pid.Sus-Anak" if child else ("Pid.Sus" if narcotics else "Pid.B")
        return {"number": f"{r.randint(10, 1800)}/{kind}/{y}/{abbr}",
                "issued_by": self.info.court, "issued_on": issued.isoformat()}

    # ---------------------------------------------------------------------------- plans

    def plans(self, n: int) -> list[ClientPlan]:
        r = self.rng
        fates = self._fates(n)
        programs = [p for p, _ in PROGRAM_WEIGHTS][:n] if n >= len(PROGRAM_WEIGHTS) else []
        programs += [_weighted(r, PROGRAM_WEIGHTS) for _ in range(n - len(programs))]
        r.shuffle(programs)
        # the roles that need an adult on a reintegration program take one
        for i, fate in enumerate(fates):
            if fate in ("REVOKE", "REVOKE_PENDING", "TRANSFER") and \
                    programs[i] not in REINTEGRATION:
                j = next((j for j in range(n) if programs[j] in REINTEGRATION
                          and fates[j] not in ("REVOKE", "REVOKE_PENDING", "TRANSFER")), None)
                if j is not None:
                    programs[i], programs[j] = programs[j], programs[i]
                else:
                    programs[i] = "PB"
        supervision = self._supervision_roles(n, fates)
        plans = [self.plan(i, programs[i], fates[i], supervision[i], n) for i in range(n)]
        self._ensure_stages(plans)
        return plans

    def _fates(self, n: int) -> list[str]:
        # a small office still shows each ending, but keeps most of its clients open
        counts = [("COMPLETE", max(1, round(0.08 * n)) if n >= 2 else 0),
                  ("ENDED_OPEN", round(0.02 * n)),
                  ("REVOKE", 2 if n >= 150 else (1 if n >= 6 else 0)),
                  ("REVOKE_PENDING", 1 if n >= 50 else 0),
                  ("DECEASED", 1 if n >= 10 else 0),
                  ("TRANSFER", 2 if n >= 150 else (1 if n >= 4 else 0)),
                  ("NEW", max(1, round(0.06 * n)) if n >= 4 else 0),
                  ("UNASSIGNED", (2 if n >= 100 else 1) if n >= 20 else 0)]
        fates: list[str] = []
        for fate, k in counts:
            fates += [fate] * k
        fates = fates[:n] + ["ACTIVE"] * max(0, n - len(fates))
        self.rng.shuffle(fates)
        return fates

    def _supervision_roles(self, n: int, fates: list[str]) -> list[tuple[str, int, str | None,
                                                                          str | None]]:
        """(supervision scenario, misses, visit, violation) per client."""
        r = self.rng
        eligible = [i for i, f in enumerate(fates) if f in ("ACTIVE",)]
        r.shuffle(eligible)
        roles: dict[int, list] = {i: ["COMPLIANT", 0, None, None] for i in range(n)}
        for i, f in enumerate(fates):
            if f in ("NEW",):
                roles[i][0] = r.choice(("NONE", "DEFAULT"))
            elif f == "UNASSIGNED":
                roles[i][0] = "NONE"
        take = iter(eligible)

        def assign(k: int, fn: Callable[[list], None]) -> None:
            for _ in range(k):
                i = next(take, None)
                if i is None:
                    return
                fn(roles[i])

        assign(max(1, round(0.05 * n)), lambda x: x.__setitem__(slice(0, 2), ["MISSED", 3]))
        assign(round(0.01 * n), lambda x: x.__setitem__(slice(0, 2), ["MISSED", 4]))
        assign(round(0.04 * n), lambda x: x.__setitem__(slice(0, 2),
                                                        ["MISSED", r.choice((1, 2))]))
        assign(round(0.03 * n) or (1 if n >= 20 else 0),
               lambda x: x.__setitem__(0, "TWO_THEN_REPORT"))
        assign(round(0.06 * n) or (1 if n >= 10 else 0), lambda x: x.__setitem__(0, "REMOTE"))
        assign(2 if n >= 100 else (1 if n >= 10 else 0), lambda x: x.__setitem__(2, "MOVED"))
        assign(2 if n >= 100 else (1 if n >= 30 else 0), lambda x: x.__setitem__(2, "NOT_FOUND"))
        assign(round(0.015 * n), lambda x: x.__setitem__(3, "UMUM"))
        assign(1 if n >= 60 else 0, lambda x: x.__setitem__(3, "KHUSUS_PROGRAM"))
        assign(1 if n >= 120 else 0, lambda x: x.__setitem__(3, "KHUSUS_UNREST"))
        for i, f in enumerate(fates):
            if f in ("REVOKE", "REVOKE_PENDING"):
                roles[i][3] = "UMUM"
            if roles[i][2] is None and f not in ("NEW", "UNASSIGNED") and r.random() < 0.45:
                roles[i][2] = r.choice(("HOME", "HOME", "HOME", "WORK", "FAMILY"))
        return [tuple(roles[i]) for i in range(n)]

    def plan(self, i: int, program: str, fate: str, roles: tuple, n: int) -> ClientPlan:
        r = self.rng
        scenario, misses, visit, violation = roles
        child = program in CHILD_PROGRAMS or (program in ("PB", "ASIMILASI") and r.random() < 0.03)
        if child:
            person = self.person((14, 17) if program != "DIVERSI" else (12, 17), 0.08)
            offence, narcotics = r.choice(CHILD_OFFENCES)
            job = r.choice(CHILD_SCHOOL)
        else:
            person = self.person((19, 58), 0.1)
            offence, narcotics = r.choice(ADULT_OFFENCES)
            job = r.choice(ADULT_JOBS)
        if program in CHILD_PROGRAMS:
            origin = self.info.court if program == "PIDANA_PENGAWASAN" else r.choice(
                (self.info.police, self.info.prosecutor))
        elif program == "PIDANA_BERSYARAT":
            origin = self.info.prosecutor
        elif child:
            origin = self.info.child_prison
        else:
            origin = r.choice(self.info.prisons_f if person.sex == "F" else self.info.prisons_m)
        length = r.randint(*PERIOD_DAYS[program])
        interval = 14 if child or (r.random() < 0.12) else 30
        if fate in ("COMPLETE", "ENDED_OPEN"):
            end = self.today - timedelta(days=r.randint(1, 45 if fate == "COMPLETE" else 12))
            start = end - timedelta(days=length)
        elif fate in ("NEW", "UNASSIGNED"):
            start = self.today - timedelta(days=r.randint(0, 5))
            end = start + timedelta(days=length)
        else:
            low = 0.05
            if scenario == "MISSED":  # room for the reports before and the misses
                need = interval * (misses + 2) + 10
                if need > length * 0.9:
                    length = int(need / 0.9) + 1
                low = need / length
            elif scenario in ("TWO_THEN_REPORT", "REMOTE") or visit == "MOVED":
                need = interval * 3 + 10
                if need > length * 0.9:
                    length = int(need / 0.9) + 1
                low = need / length
            high = 0.95
            if fate == "TRANSFER":  # moves on in tahap lanjutan, with a history to hand over
                low, high = max(low, 0.4), max(low, 0.4) + 0.2
            elapsed = int(length * r.uniform(low, high))
            start = self.today - timedelta(days=max(elapsed, 8))
            end = start + timedelta(days=length)
        issued = min(start - timedelta(days=r.randint(2, 21)), self.today)
        decision = self.decision(program, origin, issued, narcotics, child)
        elapsed = (min(self.today, end) - start).days
        fraction = elapsed / (end - start).days
        stage = STAGES[min(2, int(fraction * 3))]
        lagging = False
        if fate in ("COMPLETE", "ENDED_OPEN"):
            stage = "AKHIR"
        elif fate in ("NEW", "UNASSIGNED"):
            stage = "AWAL"
        elif stage != "AWAL" and r.random() < 0.12:
            stage, lagging = STAGES[STAGES.index(stage) - 1], True
        officer = None if fate == "UNASSIGNED" else f"pk-{1 + r.randrange(PKS):04d}"
        litmas = fate not in ("UNASSIGNED",) and not (fate == "NEW" and r.random() < 0.7)
        program_now = not (fate in ("NEW", "UNASSIGNED") and (not litmas or r.random() < 0.5))
        risk = "TINGGI" if interval == 14 and not child else _weighted(
            r, (("RENDAH", 55), ("SEDANG", 37), ("TINGGI", 8)))
        needs = r.sample(NEEDS, r.randint(1, 3))
        if narcotics:
            needs = ["rehabilitasi narkoba", *needs[:2]]
        if child:
            needs = ["pendidikan", "konseling keluarga"]
        person.family = self.family_contact(person, child)
        last_day = self.today - timedelta(days=r.randint(2, 10)) if fate == "DECEASED" else None
        return ClientPlan(
            index=i, seed=r.getrandbits(48), program=program, child=child, person=person,
            origin=origin, decision=decision, start=start, end=end, officer=officer, fate=fate,
            stage=stage, lagging=lagging, litmas=litmas, program_now=program_now, risk=risk,
            needs=needs, job=job, offence=offence, narcotics=narcotics, supervision=scenario,
            misses=misses, interval=interval, visit=visit, violation=violation,
            last_day=last_day)

    def _ensure_stages(self, plans: list[ClientPlan]) -> None:
        """Every stage has at least one open case (a small office could miss one)."""
        open_ones = [p for p in plans if p.fate == "ACTIVE" and not p.lagging]
        for stage in STAGES:
            if any(p.stage == stage for p in plans if p.fate == "ACTIVE") or not open_ones:
                continue
            p = max(open_ones, key=lambda q: (q.stage != stage, q.index))
            open_ones.remove(p)
            length = (p.end - p.start).days
            fraction = {"AWAL": 0.2, "LANJUTAN": 0.5, "AKHIR": 0.8}[stage]
            need = max(int(length * fraction), p.interval * (p.misses + 2) + 10)
            if need >= length:
                length = int(need / fraction) + 1
            p.start = self.today - timedelta(days=need)
            p.end = p.start + timedelta(days=length)
            p.stage = stage
            issued = min(p.start - timedelta(days=5), self.today)
            p.decision = {**p.decision, "issued_on": issued.isoformat()}


def registration_body(p: ClientPlan) -> dict[str, Any]:
    """The body of POST /v1/clients for a planned client (also what `bapas bench` sends)."""
    person = p.person
    return {
        "program": p.program, "decision": p.decision, "origin_institution": p.origin,
        "period": {"start_on": p.start.isoformat(), "end_on": p.end.isoformat()},
        "person": {"full_name": person.full_name, "nik": person.nik,
                   "birth_date": person.birth_date.isoformat(), "sex": person.sex,
                   "address": person.address, "phone": person.phone},
        "family_contact": person.family, "officer_id": p.officer}


# ------------------------------------------------------------------------------ HTTP


class DemoError(Exception):
    """A call the demo could not make or the system refused: says which and why."""


class Api:
    def __init__(self, urls: dict[str, str], http: httpx.AsyncClient,
                 urls_of: Callable[[str], dict[str, str]] | None = None) -> None:
        self.urls = urls
        self.http = http
        self.urls_of = urls_of  # another office's services (its own leaf, or the hub's)
        self.calls = 0
        self.jitter = random.Random()

    def at(self, office: str) -> Api:
        """The same client, talking to `office`'s services."""
        if self.urls_of is None:
            return self
        other = Api(self.urls_of(office), self.http, self.urls_of)
        other.jitter = self.jitter
        return other

    async def call(self, method: str, service: str, path: str, token: str, *,
                   json: Any = None, ok: tuple[int, ...] = (200,),
                   headers: dict[str, str] | None = None) -> Any:
        url = self.urls[service] + path
        for attempt in range(8):
            try:
                r = await self.http.request(method, url, json=json, headers={
                    "Authorization": f"Bearer {token}", **(headers or {})})
            except httpx.TransportError as exc:
                raise DemoError(f"{method} {url}: no answer ({type(exc).__name__}: {exc}); "
                                f"is the system still running?") from None
            self.calls += 1
            if r.status_code in ok:
                return r.json() if r.content else None
            problem = _problem(r)
            if r.status_code == 409 and problem.get("rule") == "concurrent_change" and attempt < 7:
                await asyncio.sleep(0.05 * (attempt + 1) + self.jitter.uniform(0, 0.1))
                continue  # the API says: try again
            raise DemoError(_describe(method, url, r.status_code, problem, json))
        raise AssertionError("unreachable")

    async def wait(self, service: str, path: str, token: str, *,
                   until: Callable[[Any], bool] = lambda doc: True,
                   timeout: float = WAIT_TIMEOUT, what: str = "") -> Any:
        """GET until it answers 200 with what we wait for (404 meanwhile: the event has not
        reached that service yet)."""
        deadline = time.monotonic() + timeout
        delay = 0.25
        await asyncio.sleep(0.2)  # a reaction takes a moment: do not ask at once
        while True:
            url = self.urls[service] + path
            try:
                r = await self.http.get(url, headers={"Authorization": f"Bearer {token}"})
            except httpx.TransportError as exc:
                raise DemoError(f"GET {url}: no answer ({type(exc).__name__}: {exc}); is the "
                                "system still running?") from None
            self.calls += 1
            if r.status_code == 200 and until(doc := r.json()):
                return doc
            if r.status_code not in (200, 404):
                raise DemoError(_describe("GET", url, r.status_code, _problem(r), None))
            if time.monotonic() > deadline:
                raise DemoError(f"GET {url}: {what or 'not there'} after {timeout:.0f}s "
                                f"(last answer {r.status_code}); is {service} consuming "
                                "events? see `bapas status`")
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 1.3)


def _problem(r: httpx.Response) -> dict[str, Any]:
    try:
        doc = r.json()
        return doc if isinstance(doc, dict) else {"detail": str(doc)}
    except ValueError:
        return {"detail": r.text[:300] or r.reason_phrase}


def _describe(method: str, url: str, status: int, problem: dict[str, Any], body: Any) -> str:
    detail = problem.get("detail") or problem.get("title") or ""
    where = ", ".join(f"{k} {problem[k]}" for k in ("rule", "field") if problem.get(k))
    text = f"{method} {url} answered {status}: {detail}" + (f" ({where})" if where else "")
    if problem.get("rule") == "nik_active":
        text += ("\nthe office already holds this person: did a demo with the same --seed run "
                 "against this system before? use another --seed or a fresh --data folder")
    if body is not None:
        text += f"\nrequest body: {_short(body)}"
    return text


def _short(body: Any) -> str:
    import json
    text = json.dumps(body, ensure_ascii=False)
    return text if len(text) < 600 else text[:600] + "..."


# ------------------------------------------------------------------------------ tokens


@dataclass
class Staff:
    office: str
    neighbour: str
    secret: str
    names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ..web.auth import TokenService
        svc = TokenService(self.secret)
        self.pk_tokens = {f"pk-{i:04d}": svc.issue(f"pk-{i:04d}", self.office, ["pk"])
                          for i in range(1, PKS + 1)}
        self.supervisor = svc.issue("kasubsi-bk", self.office, ["supervisor"])
        self.head = svc.issue("kabapas", self.office, ["head"])
        self.tpp = svc.issue("tpp-sekretaris", self.office, ["tpp"])
        self.other_office = svc.issue("kasubsi-bk", self.neighbour, ["supervisor"])

    def pk(self, officer: str | None) -> str:
        return self.pk_tokens[officer] if officer else self.supervisor


# ------------------------------------------------------------------------------ driving


@dataclass
class Outcome:
    plan: ClientPlan
    client_id: str = ""
    register_number: str = ""
    officer: str | None = None
    stage: str = "AWAL"
    status: str = "OPEN"
    closed: str | None = None
    litmas: bool = False
    decisions: Counter = field(default_factory=Counter)
    sessions: int = 0
    reports: int = 0
    remote: int = 0
    visits: Counter = field(default_factory=Counter)
    transferred_to: tuple[str, str] | None = None
    expected_misses: int = 0
    warnings: list[str] = field(default_factory=list)


class Demo:
    def __init__(self, office: str, info: OfficeInfo, api: Api, staff: Staff, today: Today,
                 run_id: str) -> None:
        self.office, self.info, self.api, self.staff = office, info, api, staff
        self.today = today
        self.run_id = run_id
        self.group_sessions: list[dict[str, Any]] = []
        self.notes: list[str] = []

    # --------------------------------------------------------------------- officers

    async def officers(self, rng: random.Random) -> dict[str, str]:
        people: list[tuple[str, str, str]] = []
        for i in range(1, PKS + 1):
            sex = "F" if rng.random() < 0.5 else "M"
            given = rng.choice(WOMEN if sex == "F" else MEN)
            second = rng.choice(WOMEN_SECOND if sex == "F" else MEN_SECOND)
            people.append((f"pk-{i:04d}", f"{given} {second}, {rng.choice(TITLES)}", "pk"))
        people.append(("kasubsi-bk", f"{rng.choice(MEN)} {rng.choice(MEN_SECOND)}, S.H., M.H.",
                       "supervisor"))
        people.append(("kabapas", f"{rng.choice(WOMEN)} {rng.choice(WOMEN_SECOND)}, "
                       "Bc.IP., S.H., M.Si.", "head"))
        domain = f"{self.office}.bapas.local"
        for officer_id, name, role in people:
            body = {"name": name, "email": f"{officer_id}@{domain}", "role": role}
            try:
                await self.api.call("PUT", "notification", f"/v1/officers/{officer_id}",
                                    self.staff.head, json=body)
            except DemoError as refused:
                if ".local" not in domain or "special-use" not in str(refused):
                    raise
                # The directory refuses special-use domains (.local); say so, and use the
                # documentation domain instead so that officers still get an address.
                self.notes.append(
                    f"PUT /v1/officers refused e-mail {body['email']} (a special-use domain); "
                    f"used @{self.office}.bapas.example instead")
                domain = f"{self.office}.bapas.example"
                body["email"] = f"{officer_id}@{domain}"
                await self.api.call("PUT", "notification", f"/v1/officers/{officer_id}",
                                    self.staff.head, json=body)
        self.staff.names = {officer_id: name for officer_id, name, _ in people}
        self.email_domain = domain
        return self.staff.names

    def members(self, officer: str | None, rng: random.Random) -> list[str]:
        names = self.staff.names
        pks = [names[f"pk-{i:04d}"] for i in rng.sample(range(1, PKS + 1), 2)]
        own = names.get(officer or "", None)
        return [f"{names['kabapas']} (ketua)", f"{names['kasubsi-bk']} (sekretaris)",
                *[f"{n} (anggota)" for n in pks if n != own],
                *([f"{own} (PK klien)"] if own else [])]

    # ----------------------------------------------------------------------- one client

    def registration_body(self, p: ClientPlan) -> dict[str, Any]:
        return registration_body(p)

    async def client(self, p: ClientPlan) -> Outcome:
        api, staff, T = self.api, self.staff, self.today.date
        rng = random.Random(p.seed)
        out = Outcome(plan=p, officer=p.officer, expected_misses=0)
        registrar = staff.pk(p.officer)
        reg = await api.call("POST", "registration", "/v1/clients", registrar,
                             json=self.registration_body(p), ok=(201,),
                             headers={"Idempotency-Key": f"demo-{self.run_id}-{p.index}"})
        cid = out.client_id = reg["client_id"]
        out.register_number = reg["register_number"]
        out.warnings = reg.get("warnings") or []
        me = staff.pk(p.officer)  # the client's PK (children: only they and supervisors see)
        tpp = staff.supervisor if p.child else staff.tpp
        # (the tpp role cannot see a child's case: the TPP's secretary, the Kasubsi, records
        # the panel's decisions on children's cases)
        await api.wait("guidance", f"/v1/cases/{cid}", me, what="the guidance case")
        if p.fate == "UNASSIGNED":
            return out

        async def g(path: str, body: dict, token: str = me) -> Any:
            return await api.call("POST", "guidance", f"/v1/cases/{cid}/{path}", token, json=body)

        async def decide(subject: str, outcome: str, met_on: date, notes: str) -> str:
            doc = await g("tpp-decisions", {"subject": subject, "outcome": outcome,
                                            "met_on": met_on.isoformat(),
                                            "members": self.members(p.officer, rng),
                                            "notes": notes}, tpp)
            out.decisions[outcome] += 1
            return doc["decision_id"]

        # ------------------------------------------------------------- litmas and stages
        if p.litmas:
            await g("litmas", self.litmas(p, rng))
            out.litmas = True
        last = p.last_day or min(T, p.end)
        target = STAGES.index(p.stage)
        bounds = self.boundaries(p, target, last, rng)
        for k in range(target + 1):
            stage = STAGES[k]
            if k == target and not p.program_now:
                break
            await g("programs", {"stage": stage, "activities": self.activities(p, stage, rng)})
            w0 = p.start if k == 0 else bounds[k - 1]
            w1 = bounds[k] if k < target else last
            for held_on, kind, participants, notes in self.sessions(p, stage, w0, w1, rng):
                await g("sessions", {"kind": kind, "approach": "INDIVIDU",
                                     "held_on": held_on.isoformat(),
                                     "participants": participants, "notes": notes})
                out.sessions += 1
            if k < target or (p.lagging and k == target):
                met_on = bounds[k] if k < target else max(w0 + timedelta(days=1),
                                                         last - timedelta(days=rng.randint(3, 20)))
                met_on = min(met_on, last)
                nxt = STAGES[k + 1]
                if k == target:  # lagging: the TPP deferred or refused the advance
                    outcome = rng.choice(("DEFERRED", "DEFERRED", "REJECTED"))
                    await decide("STAGE", outcome, met_on, self.refusal(outcome, nxt))
                    continue
                if rng.random() < 0.12:
                    early = max(w0 + timedelta(days=1),
                                met_on - timedelta(days=rng.randint(14, 30)))
                    outcome = rng.choice(("DEFERRED", "REJECTED"))
                    await decide("STAGE", outcome, min(early, met_on), self.refusal(outcome, nxt))
                did = await decide("STAGE", "APPROVED", met_on,
                                   f"Klien menunjukkan perkembangan baik; disetujui masuk tahap "
                                   f"{nxt.lower()}.")
                await g("stage", {"to_stage": nxt, "tpp_decision_id": did})
                out.stage = nxt
        if target > 0 and rng.random() < 0.25:  # a program review of the current stage
            await decide("PROGRAM", "APPROVED", last - timedelta(days=rng.randint(0, 5)),
                         "Evaluasi program: dilanjutkan dengan penyesuaian jadwal pelatihan.")

        # ------------------------------------------------------------------ supervision
        await api.wait("supervision", f"/v1/supervision/{cid}", me,
                       what="the supervision case")
        await self.supervise(p, out, cid, me, last, rng)

        # ------------------------------------------------------------------- the ending
        if p.fate == "COMPLETE":
            closed_on = min(T, p.end + timedelta(days=rng.randint(0, 7)))
            letter = (f"{self.info.kanwil}.PAS.{self.office.upper()}-PK.01.05.06-"
                      f"{rng.randint(100, 9999):04d} Tahun {closed_on.year}")
            await g("close", {"reason": "COMPLETED", "closed_on": closed_on.isoformat(),
                              "letter_number": letter}, staff.head)
            out.status, out.closed = "CLOSED", "COMPLETED"
        elif p.fate in ("REVOKE", "REVOKE_PENDING"):
            await self.revoke(p, out, cid, me, decide, g, rng)
        elif p.fate == "DECEASED":
            assert p.last_day is not None
            await g("close", {"reason": "DECEASED",
                              "closed_on": (p.last_day + timedelta(days=1)).isoformat()})
            out.status, out.closed = "CLOSED", "DECEASED"
        elif p.fate == "TRANSFER":
            await self.transfer(p, out, cid, decide, rng)
        elif p.reassign:
            await api.call("POST", "registration", f"/v1/clients/{cid}/officer",
                           staff.supervisor, json={"officer_id": p.reassign,
                                                   "reason": "Pemerataan beban kerja PK"})
            out.officer = p.reassign
        return out

    def boundaries(self, p: ClientPlan, target: int, last: date,
                   rng: random.Random) -> list[date]:
        """The days the TPP approved each advance: near 1/3 and 2/3 of the period, before
        `last`, in order."""
        length = (p.end - p.start).days
        steps = target + (1 if p.lagging else 0)
        out: list[date] = []
        for j in range(steps):
            day = p.start + timedelta(days=round(length * (j + 1) / 3) + rng.randint(0, 10))
            room = steps - j
            day = min(day, last - timedelta(days=room))
            day = max(day, (out[-1] if out else p.start) + timedelta(days=1))
            out.append(min(day, last))
        return out

    def litmas(self, p: ClientPlan, rng: random.Random) -> dict[str, Any]:
        person = p.person
        age = (self.today.date - person.birth_date).days // 365
        purpose = {"DIVERSI": "DIVERSI", "PIDANA_BERSYARAT": "PEMBIMBINGAN",
                   "PIDANA_PENGAWASAN": "PEMBIMBINGAN"}.get(p.program, "REINTEGRASI")
        fam = person.family
        welcome = "Keluarga dan Ketua RT bersedia menerima kembali klien."
        doubt = "Lingkungan masih ragu menerima klien; perlu pendekatan kepada Ketua RT."
        lives = (f"tinggal bersama {fam['relation']} ({fam['name']})" if fam else "tinggal sendiri")
        summary = (f"Klien ({age} tahun, {p.job}) {lives} di Kel. {person.village}, Kec. "
                   f"{person.district}. Perkara: {p.offence}. "
                   f"{welcome if rng.random() < 0.85 else doubt} "
                   f"Risiko pengulangan {p.risk.lower()}.")
        recommendation = {
            "REINTEGRASI": f"Klien layak menjalani program {p.program} dengan bimbingan "
                           f"{', '.join(p.needs)} dan wajib lapor tiap {p.interval} hari.",
            "DIVERSI": "Diversi dilanjutkan: anak dikembalikan kepada orang tua dengan "
                       "pendampingan PK dan wajib mengikuti kegiatan sekolah.",
            "PEMBIMBINGAN": f"Pembimbingan dengan fokus {', '.join(p.needs)}; wajib lapor tiap "
                            f"{p.interval} hari.",
        }[purpose]
        return {"purpose": purpose, "risk_level": p.risk, "needs": p.needs,
                "recommendation": recommendation, "summary": summary}

    def activities(self, p: ClientPlan, stage: str, rng: random.Random) -> list[dict[str, str]]:
        pool = list(ACTIVITIES[stage])
        chosen = [pool[0], *rng.sample(pool[1:], rng.randint(1, len(pool) - 1))]
        if p.child:
            chosen.append(rng.choice(CHILD_ACTIVITIES))
        if p.narcotics and stage != "AKHIR":
            chosen.append(NARCOTICS_ACTIVITY)
        return [{"kind": k, "approach": "INDIVIDU", "frequency": f,
                 "description": d.format(city=self.info.city)} for k, f, d in chosen]

    def sessions(self, p: ClientPlan, stage: str, w0: date, w1: date,
                 rng: random.Random) -> list[tuple[date, str, list[str], str]]:
        days = max(0, (w1 - w0).days)
        count = 2 if days > 150 and rng.random() < 0.5 else 1
        out = []
        for _ in range(count):
            held = w0 + timedelta(days=rng.randint(0, days))
            kind = rng.choice(("KEPRIBADIAN_MENTAL", "KEPRIBADIAN_MENTAL", "KETERTIBAN")
                              if stage == "AWAL" else
                              ("KEMANDIRIAN", "KEPRIBADIAN_SOSIAL", "KEPRIBADIAN_MENTAL",
                               "KESEHATAN" if p.narcotics else "SENI_BUDAYA"))
            participants = ["KLIEN", "KELUARGA"] if (p.child or rng.random() < 0.25) else ["KLIEN"]
            out.append((held, kind, participants, rng.choice(SESSION_NOTES[kind])))
        if stage == "AKHIR" and days >= 1 and (p.fate in ("COMPLETE", "ENDED_OPEN")
                                               or rng.random() < 0.3):
            # reintegration: the family, then community counselling with the RT and Puskesmas
            held = w0 + timedelta(days=rng.randint(days // 2, days))
            out.append((held, "KEPRIBADIAN_SOSIAL", ["KLIEN", "KELUARGA", "MASYARAKAT"],
                        f"Konseling masyarakat persiapan akhir pembimbingan bersama Lurah "
                        f"{p.person.village}, Ketua RT dan Puskesmas Kec. {p.person.district}."))
        return sorted(out)

    @staticmethod
    def refusal(outcome: str, nxt: str) -> str:
        if outcome == "DEFERRED":
            return f"Ditunda: menunggu hasil evaluasi program sebelum masuk tahap {nxt.lower()}."
        return ("Ditolak: program tahap ini belum dijalankan sepenuhnya; belum masuk tahap "
                f"{nxt.lower()}.")

    # ---------------------------------------------------------------------- supervision

    async def supervise(self, p: ClientPlan, out: Outcome, cid: str, me: str, last: date,
                        rng: random.Random) -> None:
        api, T = self.api, self.today.date
        grace, interval = 3, p.interval
        path = f"/v1/supervision/{cid}"
        scenario = p.supervision

        async def report(day: date, remote: bool = False) -> None:
            await self.report(out, me, day, rng, remote)

        async def plan(first: date | None, remote: bool = False) -> None:
            body: dict[str, Any] = {"interval_days": interval, "grace_days": grace,
                                    "remote_allowed": remote}
            if first is not None:
                body["first_due_on"] = first.isoformat()
            await api.call("PUT", "supervision", f"{path}/plan", me, json=body)

        def closed(d: date) -> bool:  # a due date whose window has closed
            return d + timedelta(days=grace) < T and d <= p.end

        if scenario == "NONE":
            pass
        elif scenario == "DEFAULT":
            await plan(None)
        elif scenario in ("COMPLIANT", "REMOTE"):
            grid = []
            d = p.start + timedelta(days=interval)
            while d <= p.end and d <= last + timedelta(days=interval):
                grid.append(d)
                d += timedelta(days=interval)
            if grid and grid[0] <= p.end:
                done = [d for d in grid if closed(d) and d <= last]
                # moved over from the paper register: the last few due dates are entered
                first_index = max(0, len(done) - 2)
                first = grid[first_index]
                await plan(first, remote=scenario == "REMOTE")
                for j, d in enumerate(done[first_index:]):
                    day = max(d - timedelta(days=rng.randint(0, min(5, interval - grace - 1))),
                              p.start)
                    await report(min(day, last), remote=scenario == "REMOTE" and j % 2 == 0)
                upcoming = next((d for d in grid if d not in done), None)
                if upcoming is not None and upcoming <= p.end:
                    opens = upcoming - timedelta(days=interval - grace)
                    if opens < last and rng.random() < 0.5:
                        day = last - timedelta(days=rng.randint(0, max(0, min(
                            (last - opens).days - 1, 4))))
                        await report(day, remote=scenario == "REMOTE" and rng.random() < 0.5)
        elif scenario in ("MISSED", "TWO_THEN_REPORT"):
            k = 2 if scenario == "TWO_THEN_REPORT" else p.misses
            # the last missed due date: its window closed, the next one's has not
            last_missed = T - timedelta(days=grace + 1 + rng.randint(0, interval - 1))
            last_missed = min(last_missed, p.end)
            first_missed = last_missed - timedelta(days=interval * (k - 1))
            received = 0
            while received < 2 and first_missed - timedelta(days=interval * (received + 1)) >= \
                    p.start + timedelta(days=interval):
                received += 1
            first = first_missed - timedelta(days=interval * received)
            if first < p.start + timedelta(days=1):
                first = p.start + timedelta(days=1)
            await plan(first)
            for j in range(received):
                d = first + timedelta(days=interval * j)
                await report(d - timedelta(days=rng.randint(0, 2)))
            out.expected_misses = k
            # TWO_THEN_REPORT: the client comes back once the sweeper has found the two
            # misses (see come_back); the report then resets the count

        # -------------------------------------------------------------------- visits
        visit = p.visit
        if visit and (last - p.start).days >= 2:
            day = p.start + timedelta(days=rng.randint(1, (last - p.start).days))
            kinds = {"HOME": ("KUNJUNGAN_RUMAH", "MET_COMPLIED", rng.choice((
                         "Rumah bersih; klien dan keluarga ada di rumah; hubungan dengan "
                         "tetangga baik.", "Bertemu klien dan istri; klien sudah bekerja.",
                         "Klien sedang membantu usaha keluarga."))),
                     "WORK": ("KUNJUNGAN_KERJA", "MET_COMPLIED",
                              "Kunjungan ke tempat kerja; pemberi kerja puas dengan klien."),
                     "FAMILY": ("PERTEMUAN_KELUARGA", "MET_COMPLIED",
                                "Pertemuan dengan orang tua tentang kegiatan dan sekolah klien."),
                     "MOVED": ("KUNJUNGAN_RUMAH", "MOVED_UNREPORTED",
                               "Menurut Ketua RT dan tetangga, klien sudah pindah sejak dua "
                               "minggu lalu tanpa melapor ke Bapas."),
                     "NOT_FOUND": ("KUNJUNGAN_RUMAH", "NOT_FOUND",
                                   "Rumah terkunci; tetangga tidak mengetahui keberadaan klien.")}
            if visit in ("MOVED", "NOT_FOUND"):
                day = max(p.start, last - timedelta(days=rng.randint(0, 6)))
            kind, outcome, notes = kinds[visit]
            await api.call("POST", "supervision", f"{path}/visits", me, json={
                "kind": kind, "occurred_at": self.today.at(day, rng), "outcome": outcome,
                "notes": notes})
            out.visits[outcome if outcome != "MET_COMPLIED" else kind] += 1
            if visit == "MOVED" and p.fate == "ACTIVE" and rng.random() < 0.5:
                # the family tells the PK the new address later
                district = rng.choice(self.info.districts)
                village, postcode = rng.choice(district.villages)
                await api.call("POST", "registration", f"/v1/clients/{cid}/address", me, json={
                    "address": f"{rng.choice(district.streets)} No. {rng.randint(1, 90)}, RT "
                               f"{rng.randint(1, 12):03d}/RW {rng.randint(1, 9):03d}, Kel. "
                               f"{village}, Kec. {district.name}, {self.info.city} {postcode}",
                    "reported_by_client": False})

        # ---------------------------------------------------------------- violations
        if p.violation:
            category, code, notes = {
                "UMUM": ("UMUM", "TERSANGKA",
                         f"Klien ditetapkan sebagai tersangka oleh "
                         f"{rng.choice(('Polsek', 'Polsek Metro'))} {p.person.district} dalam "
                         f"perkara {rng.choice(NEW_OFFENCES)}."),
                "KHUSUS_PROGRAM": ("KHUSUS", "TIDAK_MENGIKUTI_PROGRAM",
                                   "Tidak hadir pelatihan kemandirian tiga kali berturut-turut "
                                   "tanpa alasan."),
                "KHUSUS_UNREST": ("KHUSUS", "MERESAHKAN_MASYARAKAT",
                                  "Laporan Ketua RT: klien terlibat keributan di lingkungan."),
            }[p.violation]
            await api.call("POST", "supervision", f"{path}/violations", me,
                           json={"category": category, "code": code, "notes": notes})

    async def report(self, out: Outcome, token: str, day: date, rng: random.Random,
                     remote: bool = False) -> None:
        body = {"kind": "LAPOR_JARAK_JAUH" if remote else "LAPOR_DIRI",
                "occurred_at": self.today.at(day, rng), "outcome": "MET_COMPLIED",
                "notes": "Lapor via panggilan video." if remote else rng.choice((
                    "Klien lapor diri; kondisi baik.", "Klien hadir tepat waktu.",
                    "Klien lapor diri bersama keluarga.", ""))}
        if remote:
            body["remote_reason"] = rng.choice(REMOTE_REASONS)
        await self.api.call("POST", "supervision", f"/v1/supervision/{out.client_id}/visits",
                            token, json=body)
        out.reports += 1
        out.remote += remote

    async def come_back(self, out: Outcome) -> None:
        """A client who missed two reports reports today: the count goes back to zero.

        Logged only after the sweeper has recorded the two misses. Logged while the sweeper
        records them, the report's own decision (which records the same misses first) fails
        with HTTP 500 "only part of one decision's events is stored" (the store does not
        treat a batch refused for duplicate message ids as a concurrent change).
        """
        await self.report(out, self.staff.pk(out.officer), self.today.date,
                          random.Random(out.plan.seed + 1))

    # ----------------------------------------------------------------------- endings

    async def revoke(self, p: ClientPlan, out: Outcome, cid: str, me: str, decide, g,
                     rng: random.Random) -> None:
        view = await self.api.call("GET", "supervision", f"/v1/supervision/{cid}", me)
        violations = [v["violation_id"] for v in view["violations"]]
        did = await decide("REVOCATION", "APPROVED", self.today.date,
                           f"TPP merekomendasikan pencabutan {p.program} atas pelanggaran "
                           "yang tercatat.")
        await g("revocation", {"action": "PROPOSE", "tpp_decision_id": did,
                               "violation_ids": violations})
        if p.fate == "REVOKE_PENDING":
            return
        await g("revocation", {"action": "IMPOSE"}, self.staff.head)
        await g("close", {"reason": "REVOKED", "closed_on": self.today.date.isoformat()},
                self.staff.head)
        out.status, out.closed = "CLOSED", "REVOKED"

    async def transfer(self, p: ClientPlan, out: Outcome, cid: str, decide,
                       rng: random.Random) -> None:
        to = self.info.neighbour if self.info.neighbour != self.office else "jaktim"
        there = office_info(to)
        did = await decide("TRANSFER", "APPROVED", self.today.date,
                           f"Klien pindah domisili mengikuti keluarga ke wilayah {there.city}; "
                           f"pembimbingan dilimpahkan ke {there.name}.")
        district = rng.choice(there.districts)
        village, postcode = rng.choice(district.villages)
        await self.api.call("POST", "registration", f"/v1/clients/{cid}/address",
                            self.staff.pk(p.officer), json={
                                "address": f"{rng.choice(district.streets)} No. "
                                           f"{rng.randint(1, 90)}, RT {rng.randint(1, 12):03d}/RW "
                                           f"{rng.randint(1, 9):03d}, Kel. {village}, Kec. "
                                           f"{district.name}, {there.city} {postcode}",
                                "reported_by_client": True})
        doc = await self.api.call(
            "POST", "registration", f"/v1/clients/{cid}/transfer", self.staff.head,
            json={"to_office": to, "tpp_decision_id": did, "approved_by": "kabapas"},
            headers={"Idempotency-Key": f"demo-{self.run_id}-transfer-{p.index}"})
        new_id = doc["new_client_id"]
        other = self.staff.other_office if to == self.staff.neighbour else None
        if other:
            there_api = self.api.at(to)
            await there_api.wait("registration", f"/v1/clients/{new_id}", other,
                                 what=f"the transferred client at {to}")
            await there_api.wait("guidance", f"/v1/cases/{new_id}", other,
                                 what=f"the transferred case at {to}")
        out.status, out.closed, out.transferred_to = "CLOSED", "TRANSFERRED", (to, new_id)

    # ---------------------------------------------------------------- group sessions

    async def groups(self, outcomes: list[Outcome], rng: random.Random) -> None:
        T = self.today.date
        by_officer: dict[str, list[Outcome]] = defaultdict(list)
        for o in outcomes:
            if o.status == "OPEN" and o.officer and o.plan.fate == "ACTIVE" and o.plan.litmas:
                by_officer[o.officer].append(o)
        for officer in sorted(by_officer):
            members = sorted(by_officer[officer], key=lambda o: o.plan.index)
            rng.shuffle(members)
            for chunk_start in range(0, min(len(members), 16), 8):
                chunk = members[chunk_start:chunk_start + rng.randint(4, 8)]
                if len(chunk) < 3:
                    continue
                kind, approach, notes = rng.choice(GROUP_SESSIONS)
                latest = max(o.plan.start for o in chunk)
                held = max(latest, T - timedelta(days=rng.randint(0, 20)))
                held = min(held, min(o.plan.end for o in chunk), T)
                await self.group(chunk, kind, approach, held, ["KLIEN", "PK"], notes,
                                 self.staff.pk(officer))
        # clients sharing a problem: narcotics, across the office (the Kasubsi leads it)
        users = [o for group in by_officer.values() for o in group if o.plan.narcotics]
        users.sort(key=lambda o: o.plan.index)
        if len(users) >= 3:
            chunk = users[:12]
            held = max(max(o.plan.start for o in chunk), T - timedelta(days=rng.randint(1, 14)))
            held = min(held, T)
            await self.group(chunk, "KESEHATAN", "KLASIKAL", held,
                             ["KLIEN", "LAINNYA"],
                             "Penyuluhan bahaya narkoba dan pencegahan kekambuhan bersama BNNK.",
                             self.staff.supervisor)

    async def group(self, chunk: list[Outcome], kind: str, approach: str, held: date,
                    participants: list[str], notes: str, token: str) -> None:
        await self.api.call("POST", "guidance", "/v1/group-sessions", token, ok=(201,), json={
            "client_ids": [o.client_id for o in chunk], "kind": kind, "approach": approach,
            "held_on": held.isoformat(), "participants": participants, "notes": notes})
        for o in chunk:
            o.sessions += 1
        self.group_sessions.append({"approach": approach, "size": len(chunk)})


# ------------------------------------------------------------------------------ running


def _urls(data: Path, office: str | None = None) -> dict[str, str]:
    """Each service's URL; with offices on leaves, the office's own services."""
    from .up import read_run_file, service_url
    run = read_run_file(data) or {}
    return {name: service_url(run, name, office) or
            f"http://127.0.0.1:{os.environ.get(f'BAPAS_{name.upper()}_PORT', port)}"
            for name, port in SERVICE_PORTS.items()}


def _secret(data: Path) -> str | None:
    from .up import load_secret
    secret = load_secret(data)
    if secret is None and os.environ.get("BAPAS_ENV") == "development":
        secret = os.environ.get("BAPAS_JWT_SECRET")
    return secret or None


async def _check_running(http: httpx.AsyncClient, urls: dict[str, str], data: Path) -> None:
    for name, url in urls.items():
        try:
            r = await http.get(url + "/readyz", timeout=5)
        except httpx.TransportError as exc:
            raise DemoError(f"the system is not running: {name} does not answer at {url} "
                            f"({type(exc).__name__}); start it with `bapas up --data {data}`"
                            ) from None
        if r.status_code != 200:
            raise DemoError(f"{name} at {url} is not ready (HTTP {r.status_code}: "
                            f"{r.text[:300]}); see `bapas status --data {data}`")


class Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.tty = sys.stdout.isatty()
        self.step = max(1, total // 10)

    def tick(self) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        if self.tty:
            width = 30
            filled = width * self.done // self.total
            click.echo(f"\r  clients [{'#' * filled}{'-' * (width - filled)}] "
                       f"{self.done}/{self.total} {elapsed:5.1f}s", nl=self.done == self.total)
        elif self.done % self.step == 0 or self.done == self.total:
            click.echo(f"  clients {self.done}/{self.total} ({elapsed:.1f}s)")


async def _main(office: str, clients: int, seed: int, data: Path) -> int:
    started = time.monotonic()
    urls = _urls(data, office)
    info = office_info(office)
    today = Today()
    limits = httpx.Limits(max_connections=CONCURRENCY * 2,
                          max_keepalive_connections=CONCURRENCY * 2)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits) as http:
        await _check_running(http, urls, data)
        secret = _secret(data)
        if not secret:
            raise DemoError(f"no development secret in {data}: the demo mints its tokens from "
                            f"the secret of `bapas up --data {data}` (pass the --data of the "
                            "running system)")
        staff = Staff(office, info.neighbour if info.neighbour != office else "jaktim", secret)
        api = Api(urls, http, lambda other: _urls(data, other))
        click.echo(f"bapas demo: {info.name} ({office}), {clients} clients, seed {seed}")
        gen = Generator(office, info, seed, today.date)
        plans = gen.plans(clients)
        reassign = [p for p in plans if p.fate == "ACTIVE" and not p.child and p.officer]
        for p in reassign[:2 if clients >= 50 else 0]:
            p.reassign = f"pk-{(int(p.officer[3:]) % PKS) + 1:04d}"
        demo = Demo(office, info, api, staff, today, uuid.uuid4().hex[:12])
        names = await demo.officers(random.Random(seed))
        click.echo(f"  officers: {len(names)} in the directory (e-mail @{demo.email_domain})")
        # the sweeper's clients first, so that it has found their misses by the end
        order = sorted(plans, key=lambda p: (p.supervision not in ("MISSED", "TWO_THEN_REPORT"),
                                             p.index))
        progress = Progress(len(order))
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(p: ClientPlan) -> Outcome:
            async with gate:
                o = await demo.client(p)
            progress.tick()
            return o

        tasks = [asyncio.create_task(one(p)) for p in order]
        try:
            outcomes = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        outcomes.sort(key=lambda o: o.plan.index)
        await demo.groups(outcomes, random.Random(seed + 1))
        click.echo(f"  group sessions: {len(demo.group_sessions)}")
        await _await_sweeper(api, staff, outcomes)
        await asyncio.gather(*(demo.come_back(o) for o in outcomes
                               if o.plan.supervision == "TWO_THEN_REPORT"))
        views = await _views(api, staff, outcomes)
        _summary(office, info, urls, data, outcomes, views, demo, api, seed,
                 time.monotonic() - started)
    return 0


async def _await_sweeper(api: Api, staff: Staff, outcomes: list[Outcome]) -> None:
    waiting = [o for o in outcomes if o.expected_misses]
    if not waiting:
        return
    back = sum(1 for o in waiting if o.plan.supervision == "TWO_THEN_REPORT")
    click.echo(f"  waiting for the missed-report sweeper ({len(waiting)} clients who stopped "
               f"reporting; {back} of them come back after two misses)")
    deadline = time.monotonic() + SWEEP_WAIT
    while waiting and time.monotonic() < deadline:
        still = []
        for o in waiting:
            view = await api.call("GET", "supervision", f"/v1/supervision/{o.client_id}",
                                  staff.supervisor)
            if len(view["missed_reports"]) < o.expected_misses:
                still.append(o)
        waiting = still
        if waiting:
            await asyncio.sleep(1.0)
    if waiting:
        click.echo(f"  the sweeper has not yet reached {len(waiting)} of them; their misses "
                   "appear within its interval (BAPAS_SUPERVISION_SWEEP_SECONDS, default 10 s)")


async def _views(api: Api, staff: Staff, outcomes: list[Outcome]) -> dict[str, dict]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def view(o: Outcome) -> tuple[str, dict | None]:
        if o.plan.fate == "UNASSIGNED":
            return o.client_id, None
        async with gate:
            return o.client_id, await api.call("GET", "supervision",
                                               f"/v1/supervision/{o.client_id}",
                                               staff.supervisor)

    return dict(await asyncio.gather(*(view(o) for o in outcomes)))


def _summary(office: str, info: OfficeInfo, urls: dict[str, str], data: Path,
             outcomes: list[Outcome], views: dict[str, dict | None], demo: Demo, api: Api,
             seed: int, elapsed: float) -> None:
    echo = click.echo
    echo("")
    echo(f"{info.name}: {len(outcomes)} clients in {elapsed:.1f}s ({api.calls} API calls)")
    programs = [p for p, _ in PROGRAM_WEIGHTS]
    table: dict[str, Counter] = {p: Counter() for p in programs}
    for o in outcomes:
        table[o.plan.program]["closed" if o.status == "CLOSED" else o.stage] += 1
    echo("")
    echo(f"  {'program':<18}{'AWAL':>6}{'LANJUTAN':>10}{'AKHIR':>7}{'closed':>8}{'total':>7}")
    totals: Counter = Counter()
    for p in programs:
        row = table[p]
        totals.update(row)
        echo(f"  {p:<18}{row['AWAL']:>6}{row['LANJUTAN']:>10}{row['AKHIR']:>7}"
             f"{row['closed']:>8}{sum(row.values()):>7}")
    echo(f"  {'all':<18}{totals['AWAL']:>6}{totals['LANJUTAN']:>10}{totals['AKHIR']:>7}"
         f"{totals['closed']:>8}{sum(totals.values()):>7}")
    echo("")
    closures = Counter(o.closed for o in outcomes if o.closed)
    children = sum(1 for o in outcomes if o.plan.child)
    echo(f"  children: {children}; without an officer yet: "
         f"{sum(1 for o in outcomes if not o.officer)}")
    echo("  closures: " + (", ".join(f"{k} {v}" for k, v in sorted(closures.items())) or "none")
         + (f"; revocation awaiting the head: "
            f"{sum(1 for o in outcomes if o.plan.fate == 'REVOKE_PENDING')}"
            if any(o.plan.fate == "REVOKE_PENDING" for o in outcomes) else ""))
    ended = sum(1 for o in outcomes if o.plan.fate == "ENDED_OPEN")
    if ended:
        echo(f"  period ended, closing letter still to sign: {ended}")
    litmas = sum(o.litmas for o in outcomes)
    echo(f"  litmas: {litmas} submitted, {len(outcomes) - litmas} not yet (due 7 days after "
         "the PK is assigned; DIVERSI 72 hours)")
    decisions: Counter = Counter()
    for o in outcomes:
        decisions.update(o.decisions)
    echo(f"  TPP decisions: {sum(decisions.values())} ("
         + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items())) + ")")
    groups = demo.group_sessions
    individual = sum(o.sessions for o in outcomes) - sum(g["size"] for g in groups)
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(Counter(g["approach"] for g in groups).items()))
    echo(f"  guidance sessions: {individual} individual; {len(groups)} group sessions"
         + (f" ({kinds}) with {sum(g['size'] for g in groups)} participants" if groups else ""))
    plans = contacts = reports = remote = missed = 0
    visits: Counter = Counter()
    violations: Counter = Counter()
    khusus_from_misses = reviews = 0
    for view in views.values():
        if not view:
            continue
        plans += view["plan"] is not None
        for c in view["contacts"]:
            contacts += 1
            if c["counts_as_report"]:
                reports += 1
                remote += c["kind"] == "LAPOR_JARAK_JAUH"
            else:
                visits[f"{c['kind']} {c['outcome']}"] += 1
        missed += len(view["missed_reports"])
        reviews += len(view["tpp_reviews"])
        for v in view["violations"]:
            violations[f"{v['category']} {v['code']}"] += 1
            khusus_from_misses += v["source"] == "MISSED_REPORTS"
    echo(f"  supervision: {plans} reporting plans; {reports} reports received ({remote} remote);"
         f" {sum(visits.values())} visits and meetings")
    for k, v in sorted(visits.items()):
        echo(f"    {k}: {v}")
    echo(f"  missed reports: {missed}; TPP reviews requested: {reviews}")
    echo(f"  violations: {sum(violations.values())}")
    for k, v in sorted(violations.items()):
        echo(f"    {k}: {v}")
    for note in demo.notes:
        echo(f"  note: {note}")
    warned = [o for o in outcomes if o.warnings]
    if warned:
        echo(f"  registration warnings: {len(warned)} (e.g. {warned[0].warnings[0]})")

    # ------------------------------------------------------------------ where to look
    data_opt = "" if str(data) == ".bapas" else f" --data {data}"
    # an open case far along, with the most to read
    sample = max(outcomes, key=lambda o: (o.status == "OPEN" and o.officer is not None,
                                          STAGES.index(o.stage), o.sessions + o.reports,
                                          -o.plan.index))
    echo("")

    def curl(url: str, role: str, sub: str | None = None, at: str = office) -> str:
        token = (f"$(bapas token --office {at} --role {role}"
                 + (f" --sub {sub}" if sub else "") + f"{data_opt})")
        return f'curl -s -H "Authorization: Bearer {token}" {url}'

    def show(label: str, text: str) -> None:
        echo(f"  {label:<24}{text}")

    echo("Look at it:")
    pk = sample.officer or "pk-0001"
    show(f"worklist of {pk}", curl(f"{urls['guidance']}/v1/officers/{pk}/worklist", "pk", pk))
    show("compliance board", curl(f"{urls['supervision']}/v1/compliance", "supervisor"))
    show(f"caseload of {pk}", curl(f"{urls['registration']}/v1/officers/{pk}/caseload",
                                   "supervisor"))
    show("a client", curl(f"{urls['registration']}/v1/clients/{sample.client_id}", "supervisor"))
    show("its guidance case", curl(f"{urls['guidance']}/v1/cases/{sample.client_id}",
                                   "supervisor"))
    show("its supervision", curl(f"{urls['supervision']}/v1/supervision/{sample.client_id}",
                                 "supervisor"))
    show("its history", f"bapas history {sample.client_id}{data_opt}")
    khusus = next((o for o in outcomes if views.get(o.client_id) and any(
        v["source"] == "MISSED_REPORTS" for v in views[o.client_id]["violations"])), None)
    if khusus:
        show("three missed reports", f"bapas history {khusus.client_id}{data_opt}")
    for o in outcomes:
        if o.transferred_to:
            to, new_id = o.transferred_to
            show(f"transferred to {to}", f"bapas history {new_id}{data_opt}")
            there = _urls(data, to)["registration"]  # with offices on leaves, maybe the hub's
            show("", curl(f"{there}/v1/clients/{new_id}", "supervisor", at=to))
    show("API documentation", "  ".join(f"{urls[s]}/docs" for s in
                                        ("registration", "guidance", "supervision")))
    show("the same office again", f"bapas demo --office {office} --clients {len(outcomes)} "
         f"--seed {seed} (on a fresh --data)")


def run(office: str, clients: int, seed: int | None, data: Path) -> int:
    """Fill the running system; 0 on success, 1 with the reason otherwise."""
    if clients < 1:
        click.echo("bapas demo: --clients must be at least 1", err=True)
        return 1
    if seed is None:
        seed = random.SystemRandom().randrange(1, 1_000_000)
    try:
        return asyncio.run(_main(office, clients, seed, Path(data)))
    except DemoError as exc:
        click.echo(f"\nbapas demo: failed: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("\nbapas demo: interrupted", err=True)
        return 130
