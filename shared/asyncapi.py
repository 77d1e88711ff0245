"""The AsyncAPI 3 document of a service: the subjects it publishes and consumes, with the
payload schemas of the contexts' event modules (`services/<context>/events.py`), so that an
agency's integrator and a consuming context read one contract.

FastStream draws the document from a broker that is declared and never connected: a
publisher per channel the service sends on, a subscriber per channel it receives from, each
typed with the pydantic models of the messages on that channel. The message type travels in
the CloudEvents header `ce-type` (`bapas.<EventType>.v<N>`), not in the body, so each
message's headers schema names the types the channel carries.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Union

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI, get_asyncapi_html
from pydantic import BaseModel

from .access import ACCESS
from .envelope import ce_type
from .events import EventRegistry
from .streams import Topology

__all__ = ["Channel", "Contract", "access_channel", "asyncapi_document", "asyncapi_html",
           "case_channel"]

SERVER_URL = "nats://localhost:4222"
SERVER_NOTE = ("The office's NATS JetStream server (BAPAS_NATS_URL); its address is the "
               "operator's. Agencies read through accounts of their own "
               "(deploy/nats-accounts.conf).")
CASE_HEADERS = ("CloudEvents 1.0 in binary mode: `ce-type` names the event "
                "(`bapas.<EventType>.v<N>`), `ce-subject` the client, `ce-sequence` its "
                "version within the case, `ce-prevhash` and `ce-hash` the case's hash chain.")


@dataclass(frozen=True, slots=True)
class Channel:
    """One subject pattern and the models of the messages published on it."""

    name: str
    address: str  # `{office}`-style parameters stand for one subject token each
    description: str
    messages: tuple[type[BaseModel], ...]
    ce_types: tuple[str, ...]  # the `ce-type` header of each message, in the same order


@dataclass(frozen=True, slots=True)
class Contract:
    """What one service publishes (`sends`) and consumes (`receives`) on NATS."""

    sends: tuple[Channel, ...] = ()
    receives: tuple[Channel, ...] = ()


def case_channel(topology: Topology, registry: EventRegistry,
                 description: str | None = None) -> Channel:
    """A context's events on its case subjects `<root>.<office>.<context>.<client_id>`."""
    types = tuple(registry.types())
    return Channel(
        name=registry.context,
        address=f"{topology.root}.{{office}}.{registry.context}.{{client_id}}",
        description=description or (
            f"The {registry.context} events of one client, in the stream "
            f"{topology.stream(registry.context)}, in the order they happened. "
            + CASE_HEADERS),
        messages=types,
        ce_types=tuple(ce_type(cls.event_type, cls.event_version) for cls in types))


def access_channel(topology: Topology) -> Channel:
    """The record of who read which client (shared/access.py): the services that show a
    client's data publish it, the audit service reads it."""
    return case_channel(topology, ACCESS, description=(
        "Each read of a client's data by a person, published before the answer goes out, "
        f"in the stream {topology.stream('access')}. CloudEvents 1.0 in binary mode, as on "
        "the case subjects, but each record stands alone: `ce-sequence` 0, and `ce-hash` "
        "over its own body only."))


@functools.cache
def asyncapi_document(title: str, version: str, description: str,
                      contract: Contract) -> dict[str, Any]:
    """The AsyncAPI 3 document of a service, as JSON-ready data. Built once per contract;
    the caller must not change it."""
    broker = NatsBroker(SERVER_URL, specification_url=SERVER_URL, description=SERVER_NOTE)
    for channel in contract.sends:
        broker.publisher(channel.address, schema=_payload(channel), title=channel.name,
                         description=channel.description)
    for channel in contract.receives:
        broker.subscriber(channel.address, title=channel.name,
                          description=channel.description)(_handler(channel))
    spec = AsyncAPI(broker, title=title, version=version, description=description,
                    schema_version="3.0.0").to_specification().to_jsonable()
    by_name = {c.name: c for c in (*contract.sends, *contract.receives)}
    for channel_name, channel in spec.get("channels", {}).items():
        for ref in channel.get("messages", {}).values():
            message = spec["components"]["messages"][ref["$ref"].rsplit("/", 1)[-1]]
            _describe_headers(message, by_name[channel_name])
    return spec


def asyncapi_html(spec: dict[str, Any]) -> str:
    """FastStream's page for the document, without its "try it" form (the page would post
    messages into the event streams through the service)."""
    return get_asyncapi_html(_Rendered(spec), try_it_out_path=None)


def _payload(channel: Channel) -> Any:
    return Union[channel.messages]  # noqa: UP007 - a runtime union of a tuple of classes


def _handler(channel: Channel) -> Callable[..., Awaitable[None]]:
    """A subscriber body typed with the channel's models: FastStream reads the payload
    schema from the annotation. It is never called: the broker never connects."""

    async def receive(body: object) -> None:
        raise RuntimeError("the AsyncAPI broker is a description, not a consumer")

    receive.__annotations__ = {"body": _payload(channel), "return": None}
    receive.__name__ = f"receive_{channel.name}".replace(".", "_")
    return receive


def _describe_headers(message: dict[str, Any], channel: Channel) -> None:
    """The type of a message is its `ce-type` header; FastStream knows no headers, and
    would place the correlation id in a header of its own."""
    message["correlationId"] = {"location": "$message.header#/ce-correlationid"}
    message["headers"] = {
        "type": "object",
        "required": ["ce-specversion", "ce-id", "ce-type", "ce-source", "ce-subject",
                     "ce-time"],
        "properties": {
            "ce-specversion": {"type": "string", "const": "1.0"},
            "ce-id": {"type": "string", "description": "the event's id"},
            "ce-type": {"type": "string", "enum": list(channel.ce_types),
                        "description": "which event: bapas.<EventType>.v<N>"},
            "ce-source": {"type": "string", "description": "/bapas/<office>/<context>"},
            "ce-subject": {"type": "string", "description": "the client id"},
            "ce-time": {"type": "string", "format": "date-time"},
            "ce-office": {"type": "string"},
            "ce-sequence": {"type": "string", "description": "the event's version within "
                            "its case and context, from 1"},
            "ce-correlationid": {"type": "string"},
            "ce-causationid": {"type": "string"},
        },
    }


@dataclass(frozen=True, slots=True)
class _Rendered:
    """A finished document in the shape of FastStream's `Specification`, for its page."""

    spec: dict[str, Any]

    @property
    def title(self) -> str:
        return self.spec["info"]["title"]

    def to_jsonable(self) -> dict[str, Any]:
        return self.spec

    def to_json(self) -> str:
        return json.dumps(self.spec)

    def to_yaml(self) -> str:
        raise NotImplementedError("the services serve JSON only")
