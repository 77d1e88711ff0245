"""The supervision service. Reporting plans (wajib lapor), visits, missed reports and violations."""
