"""Identifiers: time-ordered ids for new facts, deterministic ids for caused facts."""

from __future__ import annotations

import uuid

from uuid_utils.compat import uuid7

__all__ = ["new_id", "derived_id", "BAPAS_NAMESPACE"]

# Fixed namespace for derived (UUIDv5) ids; changing it would change every derived id.
BAPAS_NAMESPACE = uuid.UUID("4f0c2a47-6d0e-5c4e-9a3a-0b3a9a5f1e10")


def new_id() -> str:
    """A new UUIDv7: unique and sortable by creation time."""
    return str(uuid7())


def derived_id(*parts: object) -> str:
    """A deterministic id for a fact caused by another one.

    A reaction that runs twice for the same cause derives the same ids, so its events are
    stored once (`Nats-Msg-Id` and the case's own history both reject the repeat).
    """
    return str(uuid.uuid5(BAPAS_NAMESPACE, "/".join(str(p) for p in parts)))
