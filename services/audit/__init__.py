"""The audit service. Read-only: any case's history as it was on any date, verified."""
