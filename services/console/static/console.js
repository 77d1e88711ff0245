// The console's only script: it makes pages nicer, never necessary (every form works
// without it). No personal data goes into a URL: the NIK check is a POST.
"use strict";

function csrf() {
  const field = document.querySelector('input[name="csrf_token"]');
  return field ? field.value : "";
}

function nikCheck(input) {
  const status = document.getElementById("nik-status");
  if (!status) return;
  let timer = null;
  let asked = "";
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const value = input.value.trim();
      if (value === asked) return;
      asked = value;
      if (!value) { status.textContent = ""; status.className = "nik-status"; return; }
      try {
        const r = await fetch("/registrasi/nik", {
          method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
          body: JSON.stringify({nik: value}),
        });
        if (!r.ok) return;
        const doc = await r.json();
        if (input.value.trim() !== value) return;
        status.textContent = doc.message;
        status.className = "nik-status " + (doc.valid ? (doc.registered ? "warn" : "ok") : "bad");
        input.setAttribute("aria-invalid", doc.valid ? "false" : "true");
        const birth = document.getElementById("f--person-birth_date");
        if (doc.valid && birth && !birth.value) birth.value = doc.birth_date;
        const sex = document.getElementById("f--person-sex");
        if (doc.valid && sex && !sex.value) sex.value = doc.sex;
      } catch (e) {
        status.textContent = "";
      }
    }, 250);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-nik-check]").forEach(nikCheck);
  document.querySelectorAll("[data-print]").forEach((b) =>
    b.addEventListener("click", () => window.print()));
});
