"""Event contracts: frozen pydantic models registered by type and version.

An event type, once published, is a contract. A change in shape is a new version plus an
upcaster that turns the previous version's JSON into the next one; reading always yields the
latest version's model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .privacy import SEALED_PREFIX, KeyRing, open_paths, open_value, personal_paths

__all__ = [
    "Event", "EventRegistry", "EventCatalog", "RecordedEvent", "NewEvent", "Metadata",
    "UnknownEventType", "InvalidEventBody",
]


class Event(BaseModel):
    """Base of every event's data. Subclasses are facts, named in the past tense."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str] = ""
    event_version: ClassVar[int] = 0


E = TypeVar("E", bound=Event)
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    pass


class InvalidEventBody(ValueError):
    pass


class EventRegistry:
    """The event types of one bounded context."""

    def __init__(self, context: str) -> None:
        self.context = context
        self._latest: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def event(self, name: str | None = None, *, version: int = 1) -> Callable[[type[E]], type[E]]:
        """Class decorator: register the latest version of an event type."""

        def register(cls: type[E]) -> type[E]:
            type_name = name or cls.__name__
            if type_name in self._latest:
                raise ValueError(f"event type {type_name} is registered twice")
            cls.event_type = type_name
            cls.event_version = version
            self._latest[type_name] = cls
            return cls

        return register

    def upcaster(self, name: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: a function turning version `from_version` JSON into `from_version + 1`."""

        def register(fn: Upcaster) -> Upcaster:
            self._upcasters[(name, from_version)] = fn
            return fn

        return register

    def types(self) -> Iterable[type[Event]]:
        return self._latest.values()

    def __contains__(self, name: str) -> bool:
        return name in self._latest

    def decode(self, name: str, version: int, body: bytes, *, subject: str = "",
               keys: KeyRing | None = None) -> Event:
        """The event of a stored body. Personal values sealed in it are opened with
        `keys` (the person's key: `subject`, the case's client id); without keys, or once
        the key is destroyed, they read as None (shared.privacy)."""
        cls = self._latest.get(name)
        if cls is None:
            raise UnknownEventType(f"unknown event type {name!r}")
        sealed = SEALED_MARK in body
        try:
            if version == cls.event_version and not sealed:
                return cls.model_validate_json(body)
            if version > cls.event_version:
                raise UnknownEventType(
                    f"{name} version {version} is newer than this service knows "
                    f"(latest {cls.event_version})")
            data = json.loads(body)
            if sealed and version == cls.event_version and isinstance(data, dict):
                data = open_paths(data, personal_paths(cls), subject, keys)
            elif sealed:  # an older version: its personal fields may lie elsewhere
                data = open_value(data, subject, keys)
            if version == cls.event_version:
                return cls.model_validate(data)
            for v in range(version, cls.event_version):
                up = self._upcasters.get((name, v))
                if up is None:
                    raise UnknownEventType(f"no upcaster for {name} from version {v}")
                try:
                    data = up(data)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise InvalidEventBody(
                        f"the upcaster of {name} v{v} cannot read this body: "
                        f"{type(exc).__name__}: {exc}") from exc
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidEventBody(_describe(exc)) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidEventBody(f"body is not JSON: {exc}") from exc


SEALED_MARK = f'"{SEALED_PREFIX}'.encode()  # in a body: some value in it is sealed


class EventCatalog:
    """The union of several contexts' registries: what a consumer can read."""

    def __init__(self, *registries: EventRegistry) -> None:
        self._by_name: dict[str, EventRegistry] = {}
        for reg in registries:
            for cls in reg.types():
                other = self._by_name.get(cls.event_type)
                if other is not None and other is not reg:
                    raise ValueError(f"event type {cls.event_type} is defined by both "
                                     f"{other.context} and {reg.context}")
                self._by_name[cls.event_type] = reg
        self.registries = registries

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def decode(self, name: str, version: int, body: bytes, *, subject: str = "",
               keys: KeyRing | None = None) -> Event:
        reg = self._by_name.get(name)
        if reg is None:
            raise UnknownEventType(f"unknown event type {name!r}")
        return reg.decode(name, version, body, subject=subject, keys=keys)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Metadata:
    """Who and why: travels with every event a command or reaction produces."""

    actor: str
    correlation_id: str
    causation_id: str | None = None
    # the caller's `Idempotency-Key`: a command repeated with it stores nothing new (the
    # key names one command on one case; it is not stored in the events)
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended: its id and time are fixed before the append."""

    id: str
    data: Event
    time: datetime
    meta: Metadata


@dataclass(frozen=True, slots=True)
class RecordedEvent(Generic[E]):
    """An event as stored: envelope, position, the exact body bytes and the decoded data."""

    id: str
    type: str
    version: int
    time: datetime
    time_text: str
    office: str
    context: str
    client_id: str
    sequence: int
    stream: str
    stream_seq: int
    subject: str
    actor: str | None
    correlation_id: str | None
    causation_id: str | None
    prevhash: str
    hash: str
    body: bytes
    data: E
    headers: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def plain_body(self) -> bytes:
        """The body as this reader may see it: the stored bytes, or, where personal values
        are sealed in them, the decoded data's JSON (opened, or None once erased)."""
        if SEALED_MARK not in self.body:
            return self.body
        return self.data.model_dump_json().encode()
