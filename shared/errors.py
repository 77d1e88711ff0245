"""Errors the kernel and the domains raise, each saying in words what went wrong."""

from __future__ import annotations


class DomainError(Exception):
    """A command broke a rule of the domain.

    `message` is written for an officer ("a litmas must be submitted before tahap awal can
    advance"); `field` names the input at fault when there is one; `rule` is a short stable
    code an integrator can branch on. The HTTP layer answers 422 (or `status`).
    """

    status = 422

    def __init__(self, message: str, *, field: str | None = None, rule: str | None = None,
                 status: int | None = None, extra: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.rule = rule
        if status is not None:
            self.status = status
        self.extra = extra or {}


class DomainConflict(DomainError):
    """The command clashes with the current state of the case (HTTP 409)."""

    status = 409


class NotFound(DomainError):
    """No such case, or none the caller may see (HTTP 404, with no hint of which)."""

    status = 404


class OfficeElsewhere(DomainError):
    """The office keeps its cases on a nats-server of its own (an office leaf) and this
    deployment does not write them (HTTP 421): send the command to that office's services."""

    status = 421

    def __init__(self, office: str) -> None:
        super().__init__(f"office {office!r} keeps its cases on its own office server; this "
                         "deployment does not write them: use that office's services",
                         field="office", rule="office_served_elsewhere")


class KernelError(Exception):
    """Base of the event kernel's own errors."""


class ConcurrencyError(KernelError):
    """The case moved on since it was read: the expected subject sequence did not hold."""

    def __init__(self, subject: str, expected: int, detail: str = "") -> None:
        super().__init__(f"{subject}: expected last sequence {expected} no longer holds"
                         + (f" ({detail})" if detail else ""))
        self.subject = subject
        self.expected = expected


class AppendError(KernelError):
    """The store refused or could not confirm an append, and reading the case did not settle it."""


class EventDecodeError(KernelError):
    """A stored message could not be read as a known event.

    Always names the subject and stream sequence so that an operator can find the message.
    """

    def __init__(self, subject: str, stream_seq: int, reason: str) -> None:
        super().__init__(f"cannot read event at {subject} (stream sequence {stream_seq}): {reason}")
        self.subject = subject
        self.stream_seq = stream_seq
        self.reason = reason


class ProfileError(KernelError):
    """The NATS server or a stream does not hold the durability profile; says what to change."""


class MigrationNeeded(KernelError):
    """What is stored needs a one-off migration before this version may serve; says which."""


class Unavailable(KernelError):
    """A dependency (NATS or PostgreSQL) cannot be reached now: the request may be retried
    (with the same `Idempotency-Key`), it was not applied. Answered as 503 with Retry-After,
    never as a 500 or a 401."""

    retry_after = 2  # seconds

    def __init__(self, dependency: str) -> None:
        super().__init__(f"{dependency} is unreachable at the moment; nothing was stored, "
                         f"try again in a few seconds")
        self.dependency = dependency


def require_connected(nc) -> None:  # noqa: ANN001 - a nats-py Client
    """Fail at once, before publishing, while the NATS connection is down (nats-py would
    buffer the request and the caller would wait for its timeout)."""
    if not nc.is_connected:
        raise Unavailable("nats")
